"""Acknowledging an alert: one service behind every way to say "收到".

SMS replies, voice keypresses, signed links, the console and the CLI all call
`acknowledge()`. It records who, when, how and any note (an `Acknowledgement`
row and an `alert.ack` audit event) and, once the alert is fully acknowledged,
marks it so and cancels the rest of its escalation: pending timers and the
escalation messages not yet sent (`dispatcher.escalation.cancel_escalation`).

A red warning needs two acknowledgements, from two people: the zone's
disaster-prevention person (防灾责任人) and a duty officer (值班员). Either one
alone is recorded and accepted; the alert stays firing — and keeps escalating
— until the other has acknowledged too.

An event (dispatcher.alerts.events) is acknowledged for the bureau by one
person of the bureau (a duty role in people.yaml) or a console user: its own
reminders and overdue notices stop; its zones' alerts keep their own
acknowledgement by each zone's people. A duty officer acknowledging an event
also gives the duty officer's half of each of its red zones' two.

Acknowledging is idempotent: the same person (or, without a person, the same
actor) acknowledging again is accepted and records nothing new. Nothing here
commits; the caller's transaction holds the acknowledgement and everything it
changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.audit import serialise_with_audit
from dispatcher.county import ROLE_LABELS
from dispatcher.escalation import cancel_escalation
from dispatcher.escalation.members import changed_at
from dispatcher.labels import PERSON_ROLE_LABELS, no_ack_needed
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState, NotificationStatus
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    Notification,
    Person,
    ZoneRole,
)

__all__ = [
    "BARE_REPLY_WINDOW",
    "METHODS",
    "NOT_YOURS",
    "PHONE_METHODS",
    "TWO_PERSON_LEVELS",
    "AckOutcome",
    "acknowledge",
    "find_open_alert_by_code",
    "latest_open_alert_for",
]

#: How an acknowledgement arrived.
METHODS: Final = ("sms", "voice", "link", "console", "cli")

#: The ways that name a person by their phone alone: they may acknowledge only
#: what concerns them (a link is signed for its person, the console and the CLI
#: are the bureau's own).
PHONE_METHODS: Final = frozenset({"sms", "voice"})

#: A bare "1" means the latest message the person got, if it is this recent.
BARE_REPLY_WINDOW: Final = timedelta(hours=24)

#: The answer to someone acknowledging by phone an alert that does not concern them.
NOT_YOURS: Final = "该预警不属于您负责的隐患点，无法确认；请回复您收到的短信中的编码"

#: Levels that need both roles in `TWO_PERSON_ROLES` to acknowledge.
TWO_PERSON_LEVELS: Final = frozenset({"red"})
TWO_PERSON_ROLES: Final = ("disaster_prevention", "duty_officer")

# a message that was handed to a provider (or is being) counts as "told"
_TOLD: Final = (
    NotificationStatus.SENDING,
    NotificationStatus.SENT,
    NotificationStatus.DELIVERED,
    NotificationStatus.UNDELIVERED,
)


@dataclass(frozen=True)
class AckOutcome:
    """What became of an acknowledgement.

    `accepted`: it was taken (recorded, or a harmless repeat). `complete`: the
    alert is now fully acknowledged. `reason` is Chinese text fit to send back
    to the person: 已确认, 已由…确认, 已确认，尚需…确认, 未找到…, 预警…已解除.
    """

    accepted: bool
    complete: bool
    alert: Alert | None
    reason: str


def acknowledge(
    session: Session,
    *,
    alert: Alert,
    person_id: str | None,
    actor: str,
    method: str,
    note: str | None,
    at: datetime,
) -> AckOutcome:
    """Record an acknowledgement of `alert` and, when it completes, stop its escalation.

    `person_id` is the acknowledging person when known (a reply from a known
    phone, a link made for that person); `actor` says who acted in words the
    audit log keeps (a person id, `console:wang`, a phone number). `method` is
    one of METHODS. Does not commit.
    """
    if method not in METHODS:
        raise ValueError(f"unknown acknowledgement method {method!r}; expected one of {METHODS}")
    if at.tzinfo is None:
        raise ValueError("acknowledgement time must be timezone-aware (pass UTC)")
    # one acknowledgement of an alert at a time, locks taken in the order every
    # writer takes them (PostgreSQL; SQLite's writers queue anyway)
    serialise_with_audit(session)
    session.refresh(alert, with_for_update=True)
    if alert.state not in OPEN_ALERT_STATES:
        return AckOutcome(False, False, alert, no_ack_needed(alert.code, alert.state))
    event = alert.kind == AlertKind.EVENT
    if event and person_id is not None and _duty_role(session, person_id) is None:
        return AckOutcome(False, False, alert, EVENT_FOR_BUREAU)
    if method in PHONE_METHODS and not _may_acknowledge(session, alert, person_id):
        # a code is no password: only whom the alert concerns acknowledges it by phone
        return AckOutcome(False, False, alert, NOT_YOURS)

    earlier = list(
        session.scalars(
            select(Acknowledgement)
            .where(Acknowledgement.alert_id == alert.id)
            .order_by(Acknowledgement.at, Acknowledgement.id)
        )
    )
    if event:
        # an event raised to a higher level is acknowledged anew: what was said before counts
        # for the record, not for now
        since = changed_at(session, alert, ("alert.upgraded",))
        if since is not None:
            earlier = [a for a in earlier if a.at >= since]
    if any(_same_acknowledger(a, person_id, actor) for a in earlier):
        complete = alert.state == AlertState.ACKNOWLEDGED
        if event:  # red zones that joined since still get the duty officer's half
            _for_red_zones(session, alert, person_id, actor, method, note, at)
        return AckOutcome(True, complete, alert, _repeat_reason(alert))

    roles = _roles_of(session, alert, person_id)
    row = Acknowledgement(
        alert_id=alert.id,
        person_id=person_id,
        actor=actor,
        method=method,
        role=roles[0] if roles else None,
        note=note or None,
        at=at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        at=at,
        actor=actor,
        action="alert.ack",
        subject=f"alert:{alert.id}",
        data={
            "code": alert.code,
            "person": person_id,
            "method": method,
            "role": row.role,
            "note": row.note,
        },
    )
    if event:
        _for_red_zones(session, alert, person_id, actor, method, note, at)
    if alert.state == AlertState.ACKNOWLEDGED:
        first = _name(session, earlier[0]) if earlier else (alert.acknowledged_by or "")
        return AckOutcome(True, True, alert, f"已由{first}确认")

    acks = [*earlier, row]
    missing = _missing_roles(session, alert, acks)
    if missing:
        labels = "、".join(PERSON_ROLE_LABELS[r] for r in missing)
        return AckOutcome(True, False, alert, f"已确认，尚需{labels}确认")

    by = list(dict.fromkeys(a.person_id or a.actor for a in acks if _counts(session, alert, a)))
    alert.state = AlertState.ACKNOWLEDGED
    alert.acknowledged_at = at
    alert.acknowledged_by = ", ".join(by)[:128]
    alert.updated_at = at
    audit.record(
        session,
        at=at,
        actor=actor,
        action="alert.acknowledged",
        subject=f"alert:{alert.id}",
        data={"code": alert.code, "by": by, "method": method},
    )
    cancel_escalation(session, alert, at=at, actor=actor, reason="acknowledged")
    return AckOutcome(True, True, alert, "已确认")


#: The answer to a zone's person replying with an event's code.
EVENT_FOR_BUREAU: Final = (
    "该编码为县局预警事件编码，由局值班人员确认；请回复您所负责隐患点短信中的编码"
)


def _for_red_zones(
    session: Session,
    event: Alert,
    person_id: str | None,
    actor: str,
    method: str,
    note: str | None,
    at: datetime,
) -> None:
    """A duty officer's acknowledgement of `event`, given to each of its open red
    zone alerts still waiting for it (their 防灾责任人 still has to acknowledge)."""
    if person_id is None or _duty_role(session, person_id) != TWO_PERSON_ROLES[1]:
        return
    red = session.scalars(
        select(Alert)
        .where(
            Alert.event_id == event.id,
            Alert.kind == AlertKind.HAZARD,
            Alert.state == AlertState.FIRING,
            Alert.level.in_(TWO_PERSON_LEVELS),
        )
        .order_by(Alert.id)
    ).all()
    said = f"经事件{event.code}确认" + (f"：{note}" if note else "")
    for zone_alert in red:
        acknowledge(
            session,
            alert=zone_alert,
            person_id=person_id,
            actor=actor,
            method=method,
            note=said,
            at=at,
        )


def _may_acknowledge(session: Session, alert: Alert, person_id: str | None) -> bool:
    """Whether this person may acknowledge `alert` by phone: bureau staff, a role
    holder of its zone, or someone a message about it was meant for."""
    if person_id is None:
        return False
    if _duty_role(session, person_id) is not None:
        return True
    if alert.zone_id is not None and session.scalar(
        select(ZoneRole.person_id).where(
            ZoneRole.zone_id == alert.zone_id, ZoneRole.person_id == person_id
        )
    ):
        return True
    return (
        session.scalar(
            select(Notification.id).where(
                Notification.alert_id == alert.id, Notification.person_id == person_id
            )
        )
        is not None
    )


def _duty_role(session: Session, person_id: str) -> str | None:
    return session.scalar(select(Person.duty_role).where(Person.id == person_id))


def find_open_alert_by_code(session: Session, code: str) -> Alert | None:
    """The open alert with this short code (case and surrounding spaces ignored)."""
    wanted = code.strip().upper()
    if not wanted:
        return None
    return session.scalar(
        select(Alert).where(Alert.code == wanted, Alert.state.in_(OPEN_ALERT_STATES))
    )


def latest_open_alert_for(session: Session, person_id: str, now: datetime) -> Alert | None:
    """The open alert this person was most recently sent a message about, within
    `BARE_REPLY_WINDOW` of `now` (a bare "1" days later means nothing any more).

    Only messages that left (handed to a provider, or on their way) count: a
    reply cannot be about a message still waiting in the outbox.
    """
    return session.scalar(
        select(Alert)
        .join(Notification, Notification.alert_id == Alert.id)
        .where(
            Notification.person_id == person_id,
            Notification.status.in_(_TOLD),
            Notification.created_at >= now - BARE_REPLY_WINDOW,
            Alert.state.in_(OPEN_ALERT_STATES),
        )
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(1)
    )


# --- helpers


def _same_acknowledger(ack: Acknowledgement, person_id: str | None, actor: str) -> bool:
    if person_id is not None:
        return ack.person_id == person_id
    return ack.person_id is None and ack.actor == actor


def _roles_of(session: Session, alert: Alert, person_id: str | None) -> list[str]:
    """The roles `person_id` holds for this alert: zone roles first, then the duty role."""
    if person_id is None:
        return []
    roles: list[str] = []
    if alert.zone_id is not None:
        held = set(
            session.scalars(
                select(ZoneRole.role).where(
                    ZoneRole.zone_id == alert.zone_id, ZoneRole.person_id == person_id
                )
            )
        )
        roles.extend(r for r in ROLE_LABELS if r in held)
    duty_role = session.scalar(select(Person.duty_role).where(Person.id == person_id))
    if duty_role:
        roles.append(duty_role)
    return roles


def _missing_roles(session: Session, alert: Alert, acks: list[Acknowledgement]) -> list[str]:
    """The roles still to acknowledge; empty when the alert is fully acknowledged.

    Two-person levels need each role in TWO_PERSON_ROLES acknowledged by a
    different person: one person holding both roles cannot acknowledge alone.
    """
    if alert.level not in TWO_PERSON_LEVELS or alert.kind == AlertKind.EVENT:
        return []  # an event is the bureau's: one of its people acknowledges it
    first, second = TWO_PERSON_ROLES
    roles = {
        a.person_id: set(_roles_of(session, alert, a.person_id))
        for a in acks
        if a.person_id is not None
    }
    firsts = {p for p, held in roles.items() if first in held}
    seconds = {p for p, held in roles.items() if second in held}
    if any(p != q for p in firsts for q in seconds):
        return []
    missing = [r for r, who in ((first, firsts), (second, seconds)) if not who]
    # both roles held, but by one person only: the other one still has to come
    return missing or [second]


def _counts(session: Session, alert: Alert, ack: Acknowledgement) -> bool:
    """Whether `ack` is one of those that complete the alert (for `acknowledged_by`)."""
    if alert.level not in TWO_PERSON_LEVELS or alert.kind == AlertKind.EVENT:
        return True
    return bool(set(_roles_of(session, alert, ack.person_id)) & set(TWO_PERSON_ROLES))


def _name(session: Session, ack: Acknowledgement) -> str:
    if ack.person_id is not None:
        name = session.scalar(select(Person.name).where(Person.id == ack.person_id))
        if name:
            return name
    return ack.actor


def _repeat_reason(alert: Alert) -> str:
    return "已确认" if alert.state == AlertState.ACKNOWLEDGED else "已确认，等待其他人员确认"
