"""CAP 1.2 publishing over HTTP: `/cap/feed.atom` and `/cap/{identifier}.xml`.

Nothing is stored for CAP: every message is derived from an alert row and the
audit event of its transition (`alert.new`, `alert.upgraded`,
`alert.downgraded`, `alert.resolved`). Audit events are append-only and carry
the alert as it was (level, onset, until, evidence, and the hazard's name and
advice in force), so a message derived today is the message derived after a
restart or next year. Only hazard alerts are published; system alerts (the
forecast feed going down) are the bureau's own business.

The feed is an Atom feed (RFC 4287) of the latest messages, newest first; each
entry links to its message with `rel="alternate"` and type
`application/cap+xml`, the usual way CAP aggregators discover alerts.
"""

from __future__ import annotations

import logging
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import String, cast, literal, select
from sqlalchemy.orm import Session

from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.cap import (
    CAP_MEDIA_TYPE,
    CapAlert,
    CapMessage,
    CapZone,
    MessageRef,
    build_message,
    cap_time,
    message_ref,
    parse_identifier,
    sender_code,
)
from dispatcher.county import County, load_county
from dispatcher.states import AlertKind
from dispatcher.storage.models import Alert, AuditEvent, Zone
from dispatcher.web.ids import in_range
from dispatcher.web.state import AppState
from rules.config import ConfigError
from rules.loader import load_ruleset
from rules.types import Level

log = logging.getLogger("yujing.web.cap")

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
FEED_DEFAULT = 50
FEED_MAX = 500

OPENING = ("alert.new", "alert.upgraded", "alert.downgraded")
PUBLISHED_ACTIONS = (*OPENING, "alert.resolved")


@dataclass(frozen=True)
class CapWording:
    """Hazard names and advice, for events recorded before they were snapshotted."""

    hazard_name: Callable[[str], str]
    advice: Callable[[str, Level], str]


class CapArchive:
    """Reads the published CAP messages out of the alert rows and audit events."""

    def __init__(self, county: County, wording: CapWording, *, exercise: bool = False) -> None:
        self.county = county
        self.wording = wording
        self.exercise = exercise
        self.sender = sender_code(county.area_code)

    def latest(self, session: Session, limit: int = FEED_DEFAULT) -> list[CapMessage]:
        """The newest `limit` messages, newest first."""
        rows = session.execute(
            select(AuditEvent, Alert)
            .join(Alert, AuditEvent.subject == literal("alert:") + cast(Alert.id, String))
            .where(AuditEvent.action.in_(PUBLISHED_ACTIONS), Alert.kind == AlertKind.HAZARD)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(limit)
        ).all()
        return [self._build(session, event, alert) for event, alert in rows]

    def find(self, session: Session, identifier: str) -> CapMessage | None:
        """The message with this identifier, or None when there is none."""
        parsed = parse_identifier(identifier, self.county.timezone)
        if parsed is None or parsed.sender != self.sender or not in_range(parsed.alert_id):
            return None
        alert = session.get(Alert, parsed.alert_id)
        if alert is None or alert.kind != AlertKind.HAZARD:
            return None
        event = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.subject == f"alert:{alert.id}",
                AuditEvent.action.in_(PUBLISHED_ACTIONS),
                AuditEvent.at >= parsed.start,
                AuditEvent.at < parsed.start + timedelta(seconds=1),
            )
            .order_by(AuditEvent.id)
            .limit(1)
        ).first()
        return self._build(session, event, alert) if event is not None else None

    def _build(self, session: Session, event: AuditEvent, alert: Alert) -> CapMessage:
        transition = TransitionKind(event.action.removeprefix("alert."))
        data: dict[str, Any] = dict(event.data)
        level = Level.parse(str(data.get("level") or alert.level))
        previous = data.get("previous_level")
        snapshot = CapAlert(
            id=alert.id,
            code=str(data.get("code") or alert.code),
            hazard=alert.hazard,
            hazard_name=str(data.get("hazard_name") or self.wording.hazard_name(alert.hazard)),
            level=level,
            zone=self._zone(session, alert.zone_id or ""),
            onset=_time(data.get("onset")),
            until=_time(data.get("until")),
            evidence={str(k): float(v) for k, v in (data.get("evidence") or {}).items()},
            advice=str(
                data["advice"] if "advice" in data else self.wording.advice(alert.hazard, level)
            ),
            rule_id=alert.rule_id,
            title=alert.title,
            previous_level=Level.parse(previous) if isinstance(previous, str) else None,
        )
        return build_message(
            snapshot,
            transition,
            self.county,
            event.at,
            self._references(session, event, alert),
            self.exercise,
            sender=self.sender,
        )

    def _references(self, session: Session, event: AuditEvent, alert: Alert) -> list[MessageRef]:
        """Every earlier message of the episode (the chain of superseded rows), oldest first."""
        chain = [alert.id]
        current = alert
        while current.supersedes_id is not None:
            previous = session.get(Alert, current.supersedes_id)
            if previous is None or previous.id in chain:
                break
            chain.append(previous.id)
            current = previous
        earlier = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.subject.in_([f"alert:{alert_id}" for alert_id in chain]),
                AuditEvent.action.in_(PUBLISHED_ACTIONS),
                AuditEvent.id < event.id,
            )
            .order_by(AuditEvent.id)
        ).all()
        tz = self.county.timezone
        return [message_ref(self.sender, _alert_id(e.subject), e.at, tz) for e in earlier]

    def _zone(self, session: Session, zone_id: str) -> CapZone:
        zone = session.get(Zone, zone_id)
        if zone is None:  # zones are never deleted, only deactivated; be safe anyway
            config = self.county.zone(zone_id)
            return CapZone(
                config.id,
                config.name,
                config.township,
                config.village,
                config.latitude,
                config.longitude,
                config.risk,
            )
        return CapZone(
            zone.id,
            zone.name,
            zone.township,
            zone.village,
            zone.latitude,
            zone.longitude,
            zone.risk_level,
        )


def _alert_id(subject: str) -> int:
    return int(subject.removeprefix("alert:"))


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


# --- Atom


def atom_feed(
    messages: Sequence[CapMessage],
    *,
    base_url: str,
    title: str,
    author: str,
    sender: str,
    now: datetime,
    timezone: str,
) -> bytes:
    """An Atom feed (RFC 4287) with one entry per message, in the order given."""
    base = base_url.rstrip("/")
    feed = _atom("feed")
    _atom_sub(feed, "id", _urn(f"cap-feed:{sender}"))
    _atom_sub(feed, "title", title)
    updated = max((m.sent for m in messages), default=now)
    _atom_sub(feed, "updated", cap_time(updated, timezone))
    _atom_sub(_atom_sub(feed, "author"), "name", author)
    link = _atom_sub(feed, "link")
    link.attrib.update(
        {"rel": "self", "type": ATOM_MEDIA_TYPE.split(";")[0], "href": f"{base}/cap/feed.atom"}
    )
    for message in messages:
        entry = _atom_sub(feed, "entry")
        _atom_sub(entry, "id", _urn(f"cap:{message.sender}:{message.identifier}"))
        _atom_sub(entry, "title", message.headline)
        _atom_sub(entry, "updated", cap_time(message.sent, timezone))
        link = _atom_sub(entry, "link")
        link.attrib.update(
            {
                "rel": "alternate",
                "type": CAP_MEDIA_TYPE,
                "href": f"{base}/cap/{message.identifier}.xml",
            }
        )
        _atom_sub(entry, "summary", f"{message.msg_type} {message.identifier}")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def _urn(name: str) -> str:
    # a stable IRI that does not depend on the host name the feed is served under
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'yujing:{name}')}"


def _atom(tag: str) -> ET.Element:
    # Atom as the default namespace, declared by hand: ElementTree's `default_namespace`
    # refuses the unqualified attributes (rel, type, href) Atom uses
    return ET.Element(tag, xmlns=ATOM_NAMESPACE)


def _atom_sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


# --- the router


class _LazyArchive:
    """The county and rule library are read on first use (and again after a failure)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._archive: CapArchive | None = None
        self._lock = threading.Lock()

    def get(self) -> CapArchive:
        with self._lock:
            if self._archive is None:
                config_dir = self.state.settings.config_dir
                county = load_county(config_dir)
                ruleset = load_ruleset(config_dir / "rules")
                self._archive = CapArchive(county, CapWording(ruleset.hazard_name, ruleset.advice))
            return self._archive


def router(state: AppState) -> APIRouter:
    """`/cap/feed.atom` and `/cap/{identifier}.xml`, read from the state's database."""
    api = APIRouter()
    lazy = _LazyArchive(state)

    def archive_or_error() -> CapArchive | Response:
        try:
            return lazy.get()
        except ConfigError as exc:
            log.error("CAP publishing unavailable: configuration problems:\n%s", exc)
            return Response(
                "CAP 发布不可用：县配置或规则库有错误，请查看日志",
                status_code=503,
                media_type="text/plain; charset=utf-8",
            )

    @api.get("/cap/feed.atom")
    def cap_feed(request: Request, limit: int = Query(FEED_DEFAULT, ge=1, le=FEED_MAX)) -> Response:
        archive = archive_or_error()
        if isinstance(archive, Response):
            return archive
        with state.sessions() as session:
            messages = archive.latest(session, limit)
        county = archive.county
        body = atom_feed(
            messages,
            base_url=state.settings.public_base_url or str(request.base_url),
            title=f"{county.sender}预警信息（CAP 1.2）",
            author=county.sender,
            sender=archive.sender,
            now=state.clock(),
            timezone=county.timezone,
        )
        return Response(body, media_type=ATOM_MEDIA_TYPE)

    @api.get("/cap/{identifier}.xml")
    def cap_message(identifier: str) -> Response:
        archive = archive_or_error()
        if isinstance(archive, Response):
            return archive
        with state.sessions() as session:
            message = archive.find(session, identifier)
        if message is None:
            return Response(
                f"没有标识为 {identifier} 的预警信息",
                status_code=404,
                media_type="text/plain; charset=utf-8",
            )
        return Response(message.xml, media_type=CAP_MEDIA_TYPE)

    return api
