# Long module: the report's one read of the database: alerts, messages, receipts, acks, audit
"""What the report reads: every alert of the period with its messages, receipts,
acknowledgements and audit events, grouped into episodes (one zone's warning
across its level changes, or one event).

`load_detail` is one read-only pass over the database (nothing is written).
An alert is in the period when it was open at any time in [start, end); the
episode's other alerts (those it superseded, those that superseded it), an
event's zone alerts and a zone alert's event come with it, so an event is
always reported whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dispatcher.county import ROLE_LABELS
from dispatcher.labels import PERSON_ROLE_LABELS, alert_state_label, level_label
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    Notification,
    Person,
    Receipt,
    Zone,
    ZoneRole,
)

__all__ = [
    "AckLine",
    "AlertPart",
    "AuditLine",
    "Delivery",
    "Detail",
    "Episode",
    "ReceiptLine",
    "load_detail",
]

#: The audit actions the report reads about an alert (subject alert:{id}).
AUDITED: Final = (
    "alert.new",
    "alert.upgraded",
    "alert.downgraded",
    "alert.zones_added",
    "alert.resolved",
    "alert.acknowledged",
    "alert.overdue",
)
_CHUNK: Final = 500  # ids per IN (…) list


@dataclass(frozen=True)
class ReceiptLine:
    at: datetime
    status: str
    error_code: str | None


@dataclass(frozen=True)
class Delivery:
    """One message to one person (or group) on one channel, and how it ended."""

    id: int
    transition: str
    person_id: str | None
    name: str
    role: str  # the zone roles and duty role, in Chinese ("" for a group)
    duty_role: str | None  # the person's bureau duty role key, if any
    channel: str
    address: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    provider_id: str | None
    error_code: str | None
    last_error: str | None
    receipts: tuple[ReceiptLine, ...]

    @property
    def at(self) -> datetime:
        """When it left (or was queued, if it never did)."""
        return self.sent_at or self.created_at


@dataclass(frozen=True)
class AckLine:
    """One acknowledgement: who, when, how, and the note."""

    at: datetime
    person_id: str | None
    name: str
    actor: str
    method: str
    role: str
    note: str | None


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    action: str
    data: dict[str, Any]


@dataclass(frozen=True)
class AlertPart:
    """One alert row of an episode (a level change of a zone alert starts a new part)."""

    id: int
    code: str
    kind: str
    level: str
    state: str
    opened_at: datetime
    closed_at: datetime | None
    onset: datetime | None
    until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    supersedes_code: str | None
    event_id: int | None
    overdue_at: tuple[datetime, ...]
    deliveries: tuple[Delivery, ...]
    acks: tuple[AckLine, ...]
    audit: tuple[AuditLine, ...]

    @property
    def level_zh(self) -> str:
        return level_label(self.level)

    @property
    def state_zh(self) -> str:
        return alert_state_label(self.state)


@dataclass(frozen=True)
class Episode:
    """One warning at one zone, from first issue to resolution, across level changes
    (or one event, or one system condition)."""

    kind: str
    zone_id: str | None
    zone_name: str
    township: str
    hazard: str
    hazard_name: str
    parts: tuple[AlertPart, ...]

    @property
    def code(self) -> str:
        """The episode's first code (CSV `episode` column)."""
        return self.parts[0].code

    @property
    def opened_at(self) -> datetime:
        return self.parts[0].opened_at

    @property
    def closed_at(self) -> datetime | None:
        return self.parts[-1].closed_at

    @property
    def event_id(self) -> int | None:
        return next((p.event_id for p in self.parts if p.event_id is not None), None)

    @property
    def levels(self) -> list[str]:
        return [p.level for p in self.parts]

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for p in self.parts for d in p.deliveries]

    @property
    def acks(self) -> list[AckLine]:
        return [a for p in self.parts for a in p.acks]

    @property
    def overdue(self) -> bool:
        return any(p.overdue_at for p in self.parts)

    @property
    def acknowledged(self) -> bool:
        return any(p.acknowledged_at is not None or p.acks for p in self.parts)

    @property
    def unacknowledged(self) -> bool:
        """Some part of it was never acknowledged (a missed report unless resolved quickly)."""
        return any(p.acknowledged_at is None and not p.acks for p in self.parts)


@dataclass(frozen=True)
class Detail:
    """Every episode of the period, events first in the order they opened."""

    episodes: tuple[Episode, ...]
    phones: frozenset[str]  # every phone number of the people in the directory


def load_detail(session: Session, start: datetime, end: datetime) -> Detail:
    """Everything about the alerts open at any time in [start, end), grouped by episode."""
    alerts = _episode_alerts(session, start, end)
    ids = list(alerts)
    notes = _in(session, Notification, Notification.alert_id, ids, Notification.id)
    receipts = _in(
        session, Receipt, Receipt.notification_id, [n.id for n in notes], Receipt.received_at
    )
    acks = _in(session, Acknowledgement, Acknowledgement.alert_id, ids, Acknowledgement.at)
    events = [
        e
        for chunk in _chunks([f"alert:{i}" for i in ids])
        for e in session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(AUDITED), AuditEvent.subject.in_(chunk))
            .order_by(AuditEvent.id)
        )
    ]
    zone_ids = sorted({a.zone_id for a in alerts.values() if a.zone_id})
    zones = {z.id: z for z in _in(session, Zone, Zone.id, zone_ids, Zone.id)}
    roles: dict[tuple[str, str], list[str]] = defaultdict(list)
    for zr in _in(session, ZoneRole, ZoneRole.zone_id, zone_ids, ZoneRole.person_id):
        roles[(zr.zone_id, zr.person_id)].append(zr.role)
    people = {p.id: p for p in session.scalars(select(Person))}

    def role_of(alert: Alert, person_id: str | None) -> str:
        if person_id is None:
            return ""
        held = [
            PERSON_ROLE_LABELS[r]
            for r in ROLE_LABELS
            if r in roles.get((alert.zone_id or "", person_id), [])
        ]
        person = people.get(person_id)
        if person is not None and person.duty_role:
            held.append(PERSON_ROLE_LABELS.get(person.duty_role, person.duty_role))
        return "、".join(held)

    receipts_of: dict[int, list[Receipt]] = defaultdict(list)
    for r in receipts:
        if r.notification_id is not None:
            receipts_of[r.notification_id].append(r)
    notes_of: dict[int, list[Notification]] = defaultdict(list)
    for n in notes:
        if n.alert_id is not None:
            notes_of[n.alert_id].append(n)
    acks_of: dict[int, list[Acknowledgement]] = defaultdict(list)
    for a in acks:
        acks_of[a.alert_id].append(a)
    events_of: dict[int, list[AuditEvent]] = defaultdict(list)
    for e in events:
        events_of[int(e.subject.removeprefix("alert:"))].append(e)

    parts: dict[int, AlertPart] = {}
    for alert in alerts.values():
        audited = events_of[alert.id]
        previous = alerts.get(alert.supersedes_id) if alert.supersedes_id else None
        parts[alert.id] = AlertPart(
            id=alert.id,
            code=alert.code,
            kind=alert.kind,
            level=alert.level,
            state=alert.state,
            opened_at=alert.opened_at,
            closed_at=alert.closed_at,
            onset=alert.onset,
            until=alert.until,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by="、".join(_name(people, p, p) for p in _split(alert.acknowledged_by))
            or None,
            supersedes_code=previous.code if previous is not None else None,
            event_id=alert.event_id,
            overdue_at=tuple(e.at for e in audited if e.action == "alert.overdue"),
            deliveries=tuple(
                _delivery(n, receipts_of[n.id], people, role_of(alert, n.person_id))
                for n in notes_of[alert.id]
            ),
            acks=tuple(
                AckLine(
                    at=a.at,
                    person_id=a.person_id,
                    name=_name(people, a.person_id, a.actor),
                    actor=a.actor,
                    method=a.method,
                    role=PERSON_ROLE_LABELS.get(a.role or "", a.role or "")
                    or role_of(alert, a.person_id),
                    note=a.note,
                )
                for a in acks_of[alert.id]
            ),
            audit=tuple(AuditLine(e.at, e.action, dict(e.data or {})) for e in audited),
        )

    episodes = []
    for chain in _chains(alerts):
        first = alerts[chain[0]]
        zone = zones.get(first.zone_id or "")
        episodes.append(
            Episode(
                kind=first.kind,
                zone_id=first.zone_id,
                zone_name=zone.name
                if zone is not None
                else ("" if first.zone_id is None else first.zone_id),
                township=zone.township if zone is not None else "",
                hazard=first.hazard,
                hazard_name=first.title or first.hazard,
                parts=tuple(parts[i] for i in chain),
            )
        )
    episodes.sort(key=lambda e: (e.opened_at, e.kind != "event", e.zone_id or "", e.hazard))
    return Detail(episodes=tuple(episodes), phones=frozenset(p.phone for p in people.values()))


def _episode_alerts(session: Session, start: datetime, end: datetime) -> dict[int, Alert]:
    """Alerts open at any time in [start, end), with every alert of their episodes and events."""
    found = {
        a.id: a
        for a in session.scalars(
            select(Alert).where(
                Alert.opened_at < end, or_(Alert.closed_at.is_(None), Alert.closed_at >= start)
            )
        )
    }
    frontier = set(found)
    while frontier:
        current = [found[i] for i in frontier]
        back = {a.supersedes_id for a in current if a.supersedes_id}
        back |= {a.event_id for a in current if a.event_id}
        back -= set(found)
        new = _in(session, Alert, Alert.id, sorted(back), Alert.id)
        ids = sorted(frontier)
        for column in (Alert.supersedes_id, Alert.event_id):
            new += [a for a in _in(session, Alert, column, ids, Alert.id) if a.id not in found]
        frontier = {a.id for a in new}
        found.update({a.id: a for a in new})
    return found


def _chains(alerts: dict[int, Alert]) -> list[list[int]]:
    """Alert ids grouped by episode, each oldest first (follows `supersedes_id`)."""
    successors: dict[int, list[int]] = defaultdict(list)
    for a in alerts.values():
        if a.supersedes_id in alerts:
            successors[a.supersedes_id].append(a.id)
    chains = []
    for a in sorted(alerts.values(), key=lambda a: a.id):
        if a.supersedes_id in alerts:
            continue  # not a root
        chain, todo = [], [a.id]
        while todo:
            current = todo.pop(0)
            chain.append(current)
            todo.extend(sorted(successors[current]))
        chains.append(chain)
    return chains


def _delivery(
    n: Notification, receipts: Sequence[Receipt], people: dict[str, Person], role: str
) -> Delivery:
    person = people.get(n.person_id or "")
    return Delivery(
        id=n.id,
        transition=n.transition,
        person_id=n.person_id,
        name=n.recipient_name or _name(people, n.person_id, n.address),
        role=role,
        duty_role=person.duty_role if person is not None else None,
        channel=n.channel,
        address=n.address,
        status=n.status,
        attempts=n.attempts,
        created_at=n.created_at,
        sent_at=n.sent_at,
        finished_at=n.finished_at,
        provider_id=n.provider_id,
        error_code=n.error_code,
        last_error=n.last_error,
        receipts=tuple(ReceiptLine(r.received_at, r.status, r.error_code) for r in receipts),
    )


def _split(acknowledged_by: str | None) -> list[str]:
    """`Alert.acknowledged_by` is a comma-separated list of person ids (or actors)."""
    return [p.strip() for p in (acknowledged_by or "").split(",") if p.strip()]


def _name(people: dict[str, Person], person_id: str | None, fallback: str) -> str:
    person = people.get(person_id or "")
    return person.name if person is not None else fallback


_T = TypeVar("_T")


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _in(
    session: Session, model: type[_T], column: Any, values: Sequence[Any], order: Any
) -> list[_T]:
    rows: list[_T] = []
    for chunk in _chunks(values):
        rows.extend(session.scalars(select(model).where(column.in_(chunk)).order_by(order)))
    return rows
