"""Events in the database: the bureau's incidents opened, changed and ended each poll.

`update_events` runs in the poll's transaction, after the zone alerts'
transitions are written (`dispatcher.alerts.lifecycle.apply_transitions`):
grouping (`dispatcher.alerts.grouping`, pure) says what changed for each
hazard's event; this module writes it — the event row (an alert of kind
event), its audit events, its zone alerts' `event_id` — and has the
escalation tell the bureau: one message per event change, carrying the
event's code, in place of one per zone.

An event keeps its code from start to end. A level change is made in place:
the event's `epoch` goes up and its escalation restarts at the new level's
bureau share (telling everyone told so far), so a red event gets red's
reminders and deadline. Zones added are told to everyone told so far; an
acknowledged event stays acknowledged for them (the bureau is on it), but a
level up asks for a new acknowledgement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.grouping import EventChange, EventChangeKind, EventState, group, zones_after
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.alerts.reconcile import Transition
from dispatcher.county import County
from dispatcher.escalation import Escalation
from dispatcher.escalation.members import event_text
from dispatcher.outbox.rows import QueuedRow
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState
from dispatcher.storage.models import Alert, AuditEvent
from rules.types import Level

__all__ = ["open_events", "open_hazard_zones", "plan_events", "update_events"]

log = logging.getLogger("yujing.events")


def open_hazard_zones(session: Session) -> dict[str, dict[str, Level]]:
    """Hazard → zone → level of every open hazard alert."""
    out: dict[str, dict[str, Level]] = {}
    rows = session.execute(
        select(Alert.hazard, Alert.zone_id, Alert.level).where(
            Alert.kind == AlertKind.HAZARD, Alert.state.in_(OPEN_ALERT_STATES)
        )
    )
    for hazard, zone_id, level in rows:
        if zone_id is not None:
            out.setdefault(hazard, {})[zone_id] = Level.parse(level)
    return out


def open_events(session: Session) -> dict[str, Alert]:
    """Hazard → its open event (the oldest, should a hazard ever have two)."""
    events: dict[str, Alert] = {}
    for event in session.scalars(
        select(Alert)
        .where(Alert.kind == AlertKind.EVENT, Alert.state.in_(OPEN_ALERT_STATES))
        .order_by(Alert.id)
    ):
        if event.hazard in events:
            log.error(
                "hazard %s has two open events (%s, %s)",
                event.hazard,
                events[event.hazard].code,
                event.code,
            )
            continue
        events[event.hazard] = event
    return events


def plan_events(
    before: Mapping[str, Mapping[str, Level]],
    events: Mapping[str, Alert],
    transitions: Sequence[Transition],
) -> list[EventChange]:
    """What this poll's `transitions` do to each hazard's event (`grouping.group`):
    `before` is `open_hazard_zones` and `events` is `open_events`, both read
    before the transitions are written."""
    states = {
        hazard: EventState(event.id, hazard, Level.parse(event.level), dict(before.get(hazard, {})))
        for hazard, event in events.items()
    }
    return group(states, zones_after(before, transitions))


def update_events(
    session: Session,
    before: Mapping[str, Mapping[str, Level]],
    events: Mapping[str, Alert],
    transitions: Sequence[Transition],
    *,
    now: datetime,
    county: County,
    hazard_name: Callable[[str], str],
    escalation: Escalation,
    forecast_run_id: int | None,
    changes: Sequence[EventChange] | None = None,
    ids: Mapping[str, int] | None = None,
) -> list[QueuedRow]:
    """Open, change and end events for this poll's `transitions`; does not commit.

    `before` is `open_hazard_zones` and `events` is `open_events`, both read
    before the transitions were written; `changes` are their `plan_events`
    when already worked out, and `ids` the ids taken for the new events
    (hazard → id). Returns the notifications enqueued.
    """
    if changes is None:
        changes = plan_events(before, events, transitions)
    notes: list[QueuedRow] = []
    current = dict(events)
    for change in changes:
        if change.kind is EventChangeKind.NEW:
            event, told = _open(
                session,
                change,
                now,
                county,
                hazard_name,
                escalation,
                forecast_run_id,
                (ids or {}).get(change.hazard),
            )
            current[change.hazard] = event
            notes.extend(told)
        elif change.kind is EventChangeKind.ENDED:
            notes.extend(_end(session, current.pop(change.hazard), change, now, county, escalation))
        else:
            notes.extend(_change(session, current[change.hazard], change, now, county, escalation))
    for hazard, event in current.items():
        _adopt(session, hazard, event)
    return notes


def _adopt(session: Session, hazard: str, event: Alert) -> None:
    """The hazard's open zone alerts that have no event yet join `event`."""
    session.execute(
        update(Alert)
        .where(
            Alert.kind == AlertKind.HAZARD,
            Alert.hazard == hazard,
            Alert.state.in_(OPEN_ALERT_STATES),
            Alert.event_id.is_(None),
        )
        .values(event_id=event.id),
        execution_options={"synchronize_session": False},
    )


class _Member(NamedTuple):
    """An open zone alert of an event, as its window and its rule are taken from it."""

    id: int
    level: str
    rule_id: str
    onset: datetime | None
    until: datetime | None


def _members(session: Session, *criteria: ColumnElement[bool]) -> list[_Member]:
    """The open zone alerts meeting `criteria`, in id order: their columns, not objects
    (a province's event has tens of thousands)."""
    table = _ALERTS
    rows = session.execute(
        select(table.c.id, table.c.level, table.c.rule_id, table.c.onset, table.c.until)
        .where(
            table.c.kind == AlertKind.HAZARD,
            table.c.state.in_(OPEN_ALERT_STATES),
            *criteria,
        )
        .order_by(table.c.id)
    )
    return [_Member(*row) for row in rows]


_ALERTS = Alert.metadata.tables[Alert.__tablename__]


def _summary(zones: Mapping[str, Level]) -> dict[str, Any]:
    """The event's `evidence`: how many zones, at which levels."""
    by_level: dict[str, int] = {}
    for level in sorted(zones.values(), reverse=True):
        by_level[level.key] = by_level.get(level.key, 0) + 1
    return {"zones": len(zones), "levels": by_level}


def _window(event: Alert, members: Sequence[_Member]) -> None:
    onsets = [a.onset for a in members if a.onset is not None]
    untils = [a.until for a in members if a.until is not None]
    event.onset = min(onsets) if onsets else None
    event.until = max(untils) if untils else None


def _audit_data(change: EventChange) -> dict[str, Any]:
    return {
        "hazard": change.hazard,
        "level": change.level.key if change.level else None,
        "previous_level": change.previous_level.key if change.previous_level else None,
        "zones": sorted(change.zones),
        **({"added": list(change.added)} if change.added else {}),
    }


def _open(
    session: Session,
    change: EventChange,
    now: datetime,
    county: County,
    hazard_name: Callable[[str], str],
    escalation: Escalation,
    forecast_run_id: int | None,
    id_: int | None,
) -> tuple[Alert, list[QueuedRow]]:
    assert change.level is not None
    session.flush()  # a statement on the table does not flush the session itself
    members = _members(session, _ALERTS.c.hazard == change.hazard)
    # the event's rule (for per-rule escalation overrides): its highest zone alert's
    lead = max(members, key=lambda a: (Level.parse(a.level), -a.id), default=None)
    onsets = [a.onset for a in members if a.onset is not None]
    untils = [a.until for a in members if a.until is not None]
    new = NewAlert(
        kind=AlertKind.EVENT,
        hazard=change.hazard,
        rule_id=lead.rule_id if lead else "",
        title=hazard_name(change.hazard),
        level=change.level.key,
        onset=min(onsets) if onsets else None,
        until=max(untils) if untils else None,
        evidence=_summary(change.zones),
        forecast_run_id=forecast_run_id,
    )
    return open_alert(
        session,
        new,
        escalation=escalation,
        text=lambda event: event_text(
            county, event, "new", change.zones, now=now, default_channel=escalation.default_channel
        ),
        data=_audit_data(change),
        now=now,
        id_=id_,
    )


def _change(
    session: Session,
    event: Alert,
    change: EventChange,
    now: datetime,
    county: County,
    escalation: Escalation,
) -> list[QueuedRow]:
    """A level change (escalation restarted at the new level) or zones added (told)."""
    assert change.level is not None
    _adopt(session, change.hazard, event)
    session.flush()
    _window(event, _members(session, _ALERTS.c.event_id == event.id))
    event.evidence = _summary(change.zones)
    event.updated_at = now
    if change.kind is EventChangeKind.ZONES_ADDED:
        audit.append(
            session,
            at=now,
            actor="system",
            action="alert.zones_added",
            subject=f"alert:{event.id}",
            data={"code": event.code, **_audit_data(change)},
        )
        audit.write_pending(session)
        count = session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == "alert.zones_added", AuditEvent.subject == f"alert:{event.id}"
            )
        )
        text = event_text(
            county,
            event,
            "zones_added",
            change.zones,
            now=now,
            default_channel=escalation.default_channel,
            added=change.added,
        )
        notes = escalation.tell(session, event, transition=f"zones.{count}", text=text, now=now)
        escalation.watch_deadline(session, event, text=text, now=now)
        return notes
    kind = change.kind.value  # upgraded | downgraded
    event.level = change.level.key
    event.epoch += 1
    if change.kind is EventChangeKind.UPGRADED and event.state == AlertState.ACKNOWLEDGED:
        # a higher level is a new warning for the bureau: it is acknowledged anew
        event.state = AlertState.FIRING
        event.acknowledged_at, event.acknowledged_by = None, None
    audit.append(
        session,
        at=now,
        actor="system",
        action=f"alert.{kind}",
        subject=f"alert:{event.id}",
        data={"code": event.code, "epoch": event.epoch, **_audit_data(change)},
    )
    text = event_text(
        county,
        event,
        kind,
        change.zones,
        now=now,
        default_channel=escalation.default_channel,
        added=change.added,
        previous_level=change.previous_level,
    )
    return escalation.start(
        session, event, transition=f"{kind}.{event.epoch}", text=text, now=now, previous=event
    )


def _end(
    session: Session,
    event: Alert,
    change: EventChange,
    now: datetime,
    county: County,
    escalation: Escalation,
) -> list[QueuedRow]:
    text = event_text(
        county, event, "resolved", {}, now=now, default_channel=escalation.default_channel
    )
    return close_alert(
        session,
        event,
        escalation=escalation,
        body=text.body,
        bodies=text.bodies,
        data=_audit_data(change),
        now=now,
    )
