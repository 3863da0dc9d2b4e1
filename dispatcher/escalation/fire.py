"""Firing one planned step: whom it routes to, on which channels, in whose words.

`fire` enqueues the messages of one planned step of an alert's escalation (a
first step as the alert opens, a later one when its timer is due, the
deadline's notice) and records it (`escalation.step`, with who was told, who
was skipped because they acknowledged, channels that fell back, audiences not
reached). People are told on the channels that address a phone; the step's
audiences (villages, groups) on their own channel. A signed acknowledgement
link goes only into a person's own message on a channel that carries links.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.registry import medium_of
from dispatcher import acklinks, audit, logs
from dispatcher.county import County
from dispatcher.escalation.members import changed_at
from dispatcher.escalation.plan import PlannedStep
from dispatcher.messages import append_link
from dispatcher.outbox.rows import QueuedRow, idempotency_key, queue
from dispatcher.roster import Roster
from dispatcher.routing import Recipient, audiences, reaches_people, recipients
from dispatcher.states import AlertKind, TimerKind
from dispatcher.storage import held
from dispatcher.storage.models import Acknowledgement, AlertFacts, Notification

__all__ = ["Firing", "fire"]

log = logging.getLogger("yujing.escalation")


class Firing(Protocol):
    """What firing a step needs of the escalation (`dispatcher.escalation.engine`)."""

    @property
    def county(self) -> County: ...
    @property
    def roster(self) -> Roster: ...
    @property
    def channels(self) -> frozenset[str]: ...
    @property
    def default_channel(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def ack_link(self) -> Callable[[int, str, datetime], str | None] | None: ...

    def channel_for(self, name: str) -> tuple[str, bool]: ...
    def ways(self, names: tuple[str, ...]) -> Ways: ...


#: (name as a step gives it, the channel used, whether that fell back to the default)
Way = tuple[str, str, bool]
#: a step's channels as sent here: those that address people, the others used
Ways = tuple[tuple[Way, ...], tuple[str, ...]]


def resolve_ways(names: Sequence[str], channel_for: Callable[[str], tuple[str, bool]]) -> Ways:
    """The channels `names` are sent on (`channel_for` each, each channel used once):
    those for people, and those that reach no person (`Firing.ways` keeps them)."""
    used_ways: list[Way] = []
    for name in names:
        used, fell_back = channel_for(name)
        if used not in {c for _, c, _ in used_ways}:
            used_ways.append((name, used, fell_back))
    # a person is addressed by phone only: a step naming a robot or the
    # loudspeakers for people would queue a phone number as their address
    return (
        tuple(way for way in used_ways if reaches_people(way[1])),
        tuple(used for _, used, _ in used_ways if not reaches_people(used)),
    )


def fire(
    esc: Firing,
    session: Session,
    alert: AlertFacts,
    planned: PlannedStep,
    now: datetime,
    *,
    extra: Sequence[Recipient] = (),
    fresh: set[str] | None = None,
) -> tuple[list[QueuedRow], list[dict[str, Any]]]:
    """Enqueue one step's messages and record it; people who acknowledged are skipped.

    `fresh` is for an alert opened in this transaction: nobody can have
    acknowledged it yet, and its messages so far are the idempotency keys in
    `fresh` (this firing adds its own), so the database is not asked — an
    alert opening costs no query. None: both are read from the database.
    """
    routed = recipients(
        esc.county,
        esc.roster,
        zone_id=alert.zone_id,
        targets=planned.targets,
        people=planned.people,
        at=now,
    )
    acked = _acknowledged(session, alert) if fresh is None else set()
    people = list(routed.recipients)
    seen = {r.person_id for r in people}
    people.extend(r for r in extra if r.person_id not in seen)
    channels, not_for_people = esc.ways(planned.channels)
    # two steps firing together may name one recipient: one message each way
    already = fresh if fresh is not None else _enqueued(session, alert, planned.transition)
    notes: list[QueuedRow] = []
    told: list[dict[str, Any]] = []
    for person in people:
        if person.person_id in acked:
            continue
        # people told about the alert this one replaces hear of the change by the default
        person_channels = (
            channels if person.role != "notified" else [("", esc.default_channel, False)]
        )
        for _, used, _ in person_channels:
            key = idempotency_key(alert.id, planned.transition, person.person_id, used)
            if key in already:
                continue
            already.add(key)
            body = planned.body_for(medium_of(used))
            if esc.ack_link is not None and acklinks.carries_personal_link(used):
                body = append_link(
                    body, esc.ack_link(alert.id, person.person_id, now), code=alert.code
                )
            notes.append(queue(session, alert, planned.transition, person, used, body, now))
            told.append({"person": person.person_id, "role": person.role, "channel": used})
    unreached: list[str] = []
    for audience in audiences(
        esc.county, zone_id=alert.zone_id, broadcast=planned.broadcast, im=planned.im
    ):
        if audience.channel not in esc.channels:
            unreached.append(f"{audience.key}→{audience.channel}")
            continue
        key = idempotency_key(alert.id, planned.transition, audience.key, audience.channel)
        if key in already:
            continue
        already.add(key)
        # never an acknowledgement link in a group post or on a loudspeaker:
        # the link acknowledges as the person it was signed for, and anyone
        # in the group could follow it
        notes.append(
            queue(
                session,
                alert,
                planned.transition,
                audience,
                audience.channel,
                planned.body_for(medium_of(audience.channel)),
                now,
                audience=audience.key,
                mentions=audience.mentions,
            )
        )
        told.append({"audience": audience.key, "channel": audience.channel})
    for channel in sorted({entry.rsplit("→", 1)[1] for entry in unreached}):
        # once per channel, not per alert: each alert's audit event lists its own
        logs.log_once(
            log,
            "audiences on channel %s are not reached: it is not configured here "
            "(each step's audit event lists them as unreached)",
            channel,
            level=logging.WARNING,
        )
    audit.append(
        session,
        at=now,
        actor=esc.actor,
        action="escalation.step",
        subject=f"alert:{alert.id}",
        data={
            "code": alert.code,
            "policy": planned.policy,
            # the deadline's notice is no step of the policy
            "step": "deadline" if planned.kind is TimerKind.DEADLINE else planned.step,
            "round": planned.round,
            "targets": list(planned.targets),
            "told": told,
            "skipped_acknowledged": sorted(r.person_id for r in people if r.person_id in acked),
            "unrostered": routed.unrostered,
            "channel_fallbacks": [f"{n}→{u}" for n, u, fb in channels if fb],
            **({"not_for_people": list(not_for_people)} if not_for_people else {}),
            **({"unreached": unreached} if unreached else {}),
        },
    )
    return notes, told


def _acknowledged(session: Session, alert: AlertFacts) -> set[str]:
    """Who acknowledged `alert` (an event: since its level last changed)."""
    acknowledged = select(Acknowledgement.person_id).where(Acknowledgement.alert_id == alert.id)
    if alert.kind == AlertKind.EVENT and alert.epoch:
        # an event changed level in place: who acknowledged before hears of it now
        since = changed_at(session, alert)
        if since is not None:
            acknowledged = acknowledged.where(Acknowledgement.at >= since)
    return set(session.scalars(acknowledged))


def _enqueued(session: Session, alert: AlertFacts, transition: str) -> set[str]:
    """The idempotency keys of the messages of `alert`'s `transition` already queued."""
    held.write(session)
    return set(
        session.scalars(
            select(Notification.idempotency_key).where(
                Notification.alert_id == alert.id,
                Notification.transition == transition,
            )
        )
    )
