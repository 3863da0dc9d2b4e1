"""An event's zone alerts: which are open, which wait, and the event's words from them.

An event (an alert of kind event) is told about from what its zone alerts say
at the moment a message is written: the open zones and their levels when it
starts or changes, how many still wait for an acknowledgement when the bureau
is reminded, how many are past their deadline when the leader on duty is told
it is overdue. `event_text` turns those facts into the texts of every medium
(`dispatcher.eventtext`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from channels.registry import medium_of
from dispatcher import audit
from dispatcher.county import County
from dispatcher.escalation.plan import AlertText, PlannedStep
from dispatcher.eventtext import EventFacts, EventZone, render_event_all
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState, TimerKind
from dispatcher.storage.models import Alert, AlertFacts, AuditEvent
from rules.types import Level

__all__ = [
    "changed_at",
    "event_reminder",
    "event_text",
    "event_zones",
    "member_levels",
    "open_members",
    "waiting_members",
]


def changed_at(
    session: Session,
    event: AlertFacts,
    actions: tuple[str, ...] = ("alert.upgraded", "alert.downgraded"),
) -> datetime | None:
    """When the event's level last changed (by one of `actions`); None: never.

    An event changes level in place: what was acknowledged before a change is
    on record, but does not stand for the new level.
    """
    audit.write_pending(session)
    return session.scalar(
        select(func.max(AuditEvent.at)).where(
            AuditEvent.subject == f"alert:{event.id}", AuditEvent.action.in_(actions)
        )
    )


def open_members(session: Session, event: Alert) -> list[Alert]:
    """The event's open zone alerts, in id order."""
    return list(
        session.scalars(
            select(Alert)
            .where(
                Alert.event_id == event.id,
                Alert.kind == AlertKind.HAZARD,
                Alert.state.in_(OPEN_ALERT_STATES),
            )
            .order_by(Alert.id)
        )
    )


def waiting_members(
    members: Sequence[Alert], *, now: datetime, deadline: Callable[[str], timedelta] | None = None
) -> list[Alert]:
    """The members still unacknowledged; with `deadline` (level → its length), only
    those past it at `now`."""
    firing = [a for a in members if a.state == AlertState.FIRING]
    if deadline is None:
        return firing
    return [a for a in firing if a.opened_at + deadline(a.level) <= now]


def event_zones(county: County, zones: Mapping[str, Level]) -> list[EventZone]:
    """The zones as the event's texts name them: highest level first, then by
    township and name (a zone gone from the configuration keeps its id)."""
    out: list[EventZone] = []
    for zone_id, level in zones.items():
        try:
            zone = county.zone(zone_id)
            out.append(EventZone(zone_id, zone.name, zone.township, level))
        except KeyError:
            out.append(EventZone(zone_id, zone_id, "", level))
    return sorted(out, key=lambda z: (-z.level, z.township, z.name, z.zone_id))


def member_levels(members: Sequence[Alert]) -> dict[str, Level]:
    """Zone → level of open zone alerts."""
    return {a.zone_id: Level.parse(a.level) for a in members if a.zone_id}


def event_text(
    county: County,
    event: AlertFacts,
    kind: str,
    zones: Mapping[str, Level],
    *,
    now: datetime,
    default_channel: str,
    added: Sequence[str] = (),
    previous_level: Level | None = None,
    waiting: int = 0,
    minutes: int | None = None,
) -> AlertText:
    """The event's message of `kind` (dispatcher.eventtext) in every medium's words."""
    listed = event_zones(county, zones)
    by_id = {z.zone_id: z for z in listed}
    facts = EventFacts(
        kind=kind,
        sender=county.sender,
        code=event.code,
        hazard=event.title or event.hazard,
        level=Level.parse(event.level),
        zones=listed,
        now=now,
        onset=event.onset,
        previous_level=previous_level,
        added=[by_id[z] for z in added if z in by_id],
        waiting=waiting,
        minutes=minutes,
    )
    bodies = render_event_all(facts, county.timezone)
    summary = f"{facts.hazard}{facts.level.zh}预警（{len(listed)}处隐患点）"
    return AlertText(bodies[medium_of(default_channel)], summary, bodies)


def event_reminder(
    session: Session,
    county: County,
    event: Alert,
    planned: PlannedStep,
    now: datetime,
    *,
    default_channel: str,
    deadline: Callable[[str], timedelta],
) -> PlannedStep | None:
    """`planned` (a reminder step or the deadline's notice of an event) with the words
    of now: how many of its zones still wait (past their deadline, for the notice).

    None when none waits: every zone's people acknowledged, so nobody needs reminding.
    """
    members = open_members(session, event)
    overdue = planned.kind is TimerKind.DEADLINE
    waiting = waiting_members(members, now=now, deadline=deadline if overdue else None)
    if not waiting:
        return None
    text = event_text(
        county,
        event,
        "overdue" if overdue else "reminder",
        member_levels(members),
        now=now,
        default_channel=default_channel,
        waiting=len(waiting),
        minutes=planned.minutes,
    )
    return replace(planned, body=text.body, bodies=dict(text.bodies))
