"""Events for the report's tests, made by hand until the pipeline makes them.

The real pipeline opens the zone alerts of the recorded cold wave; `group_into_events`
then does what the event core will do: one event (an alert of kind event) per
hazard, its zone alerts pointing to it, its audit trail (alert.new,
alert.upgraded, alert.zones_added) and the bureau's messages about it (one per
duty officer and leader, an overdue notice). When the event core is on main,
this module goes and the tests run `yujing drill … --report`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.lifecycle import new_code
from dispatcher.county import County
from dispatcher.labels import severity
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert, Notification


def group_into_events(session: Session, county: County, at: datetime) -> dict[str, Alert]:
    """Put every hazard alert without an event into its hazard's event (opened at `at`
    if there is none yet); record the event's changes and tell the bureau. Returns
    the events by hazard."""
    events = {
        e.hazard: e
        for e in session.scalars(
            select(Alert).where(
                Alert.kind == AlertKind.EVENT, Alert.state.in_(tuple(OPEN_ALERT_STATES))
            )
        )
    }
    loose: dict[str, list[Alert]] = defaultdict(list)
    for a in session.scalars(
        select(Alert)
        .where(Alert.kind == AlertKind.HAZARD, Alert.event_id.is_(None))
        .order_by(Alert.id)
    ):
        loose[a.hazard].append(a)
    for hazard, alerts in loose.items():
        event = events.get(hazard)
        opened = event is None
        if event is None:
            event = Alert(
                code=new_code(session),
                kind=AlertKind.EVENT,
                zone_id=None,
                hazard=hazard,
                rule_id=alerts[0].rule_id,
                title=alerts[0].title,
                level=alerts[0].level,
                state="firing",
                opened_at=at,
                updated_at=at,
            )
            session.add(event)
            session.flush()
            events[hazard] = event
        before = event.level
        known = {
            a.zone_id for a in session.scalars(select(Alert).where(Alert.event_id == event.id))
        }
        for a in alerts:
            a.event_id = event.id
        top = max((a.level for a in alerts if a.state in OPEN_ALERT_STATES), key=severity)
        if opened or severity(top) > severity(before):
            event.level = top
        added = sorted({a.zone_id for a in alerts if a.zone_id} - known)
        subject = f"alert:{event.id}"
        if opened:
            audit.record(
                session,
                at=at,
                actor="pipeline",
                action="alert.new",
                subject=subject,
                data={"code": event.code, "level": event.level, "zones": added},
            )
            transition = "new"
        elif event.level != before:
            event.epoch += 1
            audit.record(
                session,
                at=at,
                actor="pipeline",
                action="alert.upgraded",
                subject=subject,
                data={"code": event.code, "level": event.level, "from": before},
            )
            transition = f"upgraded.{event.epoch}"
        else:
            transition = ""
        if added and not opened:
            audit.record(
                session,
                at=at,
                actor="pipeline",
                action="alert.zones_added",
                subject=subject,
                data={"code": event.code, "level": event.level, "added": added},
            )
        if transition:
            tell_bureau(session, county, event, transition, at)
    session.flush()
    return events


def tell_bureau(
    session: Session, county: County, event: Alert, transition: str, at: datetime
) -> None:
    """One SMS about the event to each duty officer and leader on duty, delivered."""
    for person in [*county.duty_officers(), *county.leaders_on_duty()]:
        session.add(
            Notification(
                idempotency_key=f"test-event:{event.id}:{transition}:{person.id}",
                alert_id=event.id,
                transition=transition,
                person_id=person.id,
                recipient_name=person.name,
                address=person.phone,
                channel="twilio_sms",
                body=f"{event.title}{event.level}预警（编码{event.code}）",
                status="delivered",
                attempts=1,
                created_at=at,
                sent_at=at,
                finished_at=at,
                next_attempt_at=at,
            )
        )
    session.flush()
