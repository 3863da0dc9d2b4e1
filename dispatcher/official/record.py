"""The record of received official warnings, and the warnings in force.

`receive` reads one CAP message and records it with what became of it, in the
caller's transaction — so a message is applied whole or not at all: an Update
supersedes the messages it references, a Cancel cancels them, an invalid
message is refused with the reason, an expired one does nothing. Every
receipt is audited (`official.received`, `official.refused`).

`warnings_in_force` turns the messages in force into the plain data the rules
read (`rules.types.OfficialWarning`), mapping each `<info>` block's areas onto
the county's zones at the time of the poll (so an edited zones.yaml counts).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.official.areas import covered_zones
from dispatcher.official.capparse import (
    MAX_MESSAGE_BYTES,
    CapArea,
    CapCircle,
    CapInfo,
    CapMessage,
    CapRefused,
    parse_cap,
)
from dispatcher.storage.models import ReceivedWarning
from rules.types import Level, OfficialWarning, ZoneSpec

log = logging.getLogger("yujing.official")

IN_FORCE = "in_force"
SUPERSEDED = "superseded"
CANCELLED = "cancelled"
CANCEL = "cancel"
EXPIRED = "expired"
IGNORED = "ignored"
REFUSED = "refused"
DUPLICATE = "duplicate"  # not stored: the same bytes are already recorded


@dataclass(frozen=True)
class Receipt:
    """What became of one received message."""

    id: int | None  # the row; None for a duplicate of an earlier one (its id in `earlier`)
    state: str
    reason: str | None
    identifier: str | None
    ended: tuple[int, ...] = ()  # rows it superseded or cancelled
    earlier: int | None = None

    @property
    def changes_warnings(self) -> bool:
        """Whether the warnings in force may differ after it (a poll should evaluate)."""
        return self.state == IN_FORCE or bool(self.ended)


def receive(
    session: Session,
    data: bytes,
    *,
    source: str,
    now: datetime,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Receipt:
    """Record one received CAP message and apply it; does not commit."""
    digest = hashlib.sha256(data).hexdigest()
    earlier = session.scalar(select(ReceivedWarning).where(ReceivedWarning.digest == digest))
    if earlier is not None:
        return Receipt(None, DUPLICATE, None, earlier.identifier, earlier=earlier.id)
    body = data.decode("utf-8", errors="replace") if len(data) <= max_bytes else ""
    row = ReceivedWarning(
        digest=digest, source=source[:500], received_at=now, state=REFUSED, body=body
    )
    try:
        message = parse_cap(data, max_bytes)
    except CapRefused as exc:
        row.reason = exc.reason
        return _recorded(session, row, now)
    row.identifier = message.identifier[:255]
    row.sender = message.sender[:255]
    row.sent = message.sent
    row.msg_type = message.msg_type
    row.status = message.status
    row.references = [f"{r.sender},{r.identifier},{r.sent}" for r in message.references]
    row.infos = [_info_data(info) for info in message.infos]
    state, reason = _verdict(session, message, now)
    row.state, row.reason = state, reason
    if state not in (IN_FORCE, CANCEL):
        return _recorded(session, row, now)
    session.add(row)
    session.flush()
    ended = _end_referenced(session, message, row, now)
    return _recorded(session, row, now, ended)


def _verdict(session: Session, message: CapMessage, now: datetime) -> tuple[str, str | None]:
    if message.status != "Actual":
        return IGNORED, f"status {message.status}: not an actual warning"
    if message.msg_type not in ("Alert", "Update", "Cancel"):
        return IGNORED, f"msgType {message.msg_type}: not a warning, an update or a cancel"
    known = session.scalar(
        select(ReceivedWarning.id).where(
            ReceivedWarning.sender == message.sender,
            ReceivedWarning.identifier == message.identifier,
            ReceivedWarning.state != REFUSED,
        )
    )
    if known is not None:
        return REFUSED, (
            f"identifier {message.identifier} from {message.sender} was already received "
            f"(row {known}) with other content; a change comes as an Update with a new identifier"
        )
    if message.msg_type == "Cancel":
        return CANCEL, None
    expiries = [info.expires for info in message.infos]
    if expiries and all(e is not None and e <= now for e in expiries):
        last = max(e for e in expiries if e is not None)
        return EXPIRED, f"expired at {last.isoformat()}, before it was received: nothing applied"
    return IN_FORCE, None


def _end_referenced(
    session: Session, message: CapMessage, row: ReceivedWarning, now: datetime
) -> tuple[int, ...]:
    """Supersede (Update) or cancel (Cancel) the messages in force it references."""
    if message.msg_type not in ("Update", "Cancel") or not message.references:
        return ()
    ended = []
    for ref in message.references:
        for target in session.scalars(
            select(ReceivedWarning).where(
                ReceivedWarning.sender == ref.sender,
                ReceivedWarning.identifier == ref.identifier,
                ReceivedWarning.state == IN_FORCE,
            )
        ):
            target.state = SUPERSEDED if message.msg_type == "Update" else CANCELLED
            target.ended_at = now
            target.ended_by_id = row.id
            ended.append(target.id)
    return tuple(ended)


def _recorded(
    session: Session, row: ReceivedWarning, now: datetime, ended: tuple[int, ...] = ()
) -> Receipt:
    if row.id is None:
        session.add(row)
        session.flush()
    refused = row.state == REFUSED
    audit.record(
        session,
        at=now,
        actor="system",
        action="official.refused" if refused else "official.received",
        subject=f"received_warning:{row.id}",
        data={
            "source": row.source,
            "identifier": row.identifier,
            "sender": row.sender,
            "msg_type": row.msg_type,
            "state": row.state,
            "reason": row.reason,
            "ended": list(ended),
        },
    )
    if refused:
        log.warning("official warning from %s refused: %s", row.source, row.reason)
    else:
        log.info(
            "official warning %s from %s: %s%s",
            row.identifier,
            row.source,
            row.state,
            f" (ends {len(ended)} earlier)" if ended else "",
        )
    return Receipt(row.id, row.state, row.reason, row.identifier, ended)


def _info_data(info: CapInfo) -> dict[str, Any]:
    level = info.level
    return {
        "event": info.event,
        "level": level.key if level is not None else None,
        "severity": info.severity,
        "urgency": info.urgency,
        "certainty": info.certainty,
        "onset": info.onset.isoformat(),
        "expires": info.expires.isoformat() if info.expires else None,
        "sender_name": info.sender_name,
        "headline": info.headline,
        "language": info.language,
        "areas": [
            {
                "description": area.description,
                "polygons": [list(map(list, polygon)) for polygon in area.polygons],
                "circles": [[c.latitude, c.longitude, c.radius_km] for c in area.circles],
                "geocodes": [list(code) for code in area.geocodes],
            }
            for area in info.areas
        ],
    }


def _areas(data: Sequence[Mapping[str, Any]]) -> tuple[CapArea, ...]:
    return tuple(
        CapArea(
            description=area["description"],
            polygons=tuple(tuple((lat, lon) for lat, lon in poly) for poly in area["polygons"]),
            circles=tuple(CapCircle(lat, lon, radius) for lat, lon, radius in area["circles"]),
            geocodes=tuple((name, value) for name, value in area["geocodes"]),
        )
        for area in data
    )


def warnings_in_force(
    session: Session,
    now: datetime,
    zones: Sequence[ZoneSpec],
    county_code: str,
    township_codes: Mapping[str, str] | None = None,
) -> list[OfficialWarning]:
    """The official warnings in force at `now`, one per `<info>` block, on the zones they cover.

    Blocks already expired, without a level (severity Unknown and no signal
    colour) or covering no zone are left out.
    """
    out: list[OfficialWarning] = []
    rows = session.scalars(
        select(ReceivedWarning)
        .where(ReceivedWarning.state == IN_FORCE)
        .order_by(ReceivedWarning.id)
    )
    for row in rows:
        for index, info in enumerate(row.infos):
            expires = datetime.fromisoformat(info["expires"]) if info["expires"] else None
            if info["level"] is None or (expires is not None and expires <= now):
                continue
            if "zone_ids" in info:  # QWeather's, answered per forecast point: the zones there
                covered = frozenset(info["zone_ids"]) & {zone.id for zone in zones}
            else:
                covered = covered_zones(_areas(info["areas"]), zones, county_code, township_codes)
            if not covered:
                continue
            out.append(
                OfficialWarning(
                    id=f"{row.identifier}#{index + 1}",
                    event=info["event"],
                    level=Level.parse(info["level"]),
                    zone_ids=covered,
                    onset=datetime.fromisoformat(info["onset"]),
                    expires=expires,
                    authority=info["sender_name"] or row.sender or "",
                )
            )
    return out
