"""Events for the report's tests, made by hand until the pipeline makes them.

The real pipeline opens the zone alerts of the recorded cold wave; `group_into_events`
then does what the event core will do: one event (an alert of kind event) per
hazard, its zone alerts pointing to it, its audit trail (alert.new,
alert.upgraded, alert.zones_added) and the bureau's messages about it (one per
duty officer and leader, an overdue notice). When the event core is on main,
this module goes and the tests run `yujing drill … --report`.

`county_sized_event` builds one event over a county of 360 zones in 30
townships, with all the messages, overdue zones and notes a day-long cold wave
brings, to show that an event stays on two pages however large it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.lifecycle import new_code
from dispatcher.county import County, PersonConfig, ZoneConfig
from dispatcher.directory import sync_directory
from dispatcher.labels import severity
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Acknowledgement, Alert, Notification


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


# --- a county-sized event, for the page count at scale

TOWNSHIPS = 30
ZONES_PER_TOWNSHIP = 12
ROLES = ("disaster_prevention", "monitoring", "technical", "mass_monitor")


def big_county(base: County) -> County:
    """`base`'s bureau staff with 360 zones in 30 townships, four people each (fictitious)."""
    people = {p.id: p for p in base.people.values() if p.duty_role}
    zones = []
    for t in range(TOWNSHIPS):
        for z in range(ZONES_PER_TOWNSHIP):
            zone_id = f"BIG-{t:02d}-{z:02d}"
            holders: dict[str, list[str]] = {}
            for r, role in enumerate(ROLES):
                person_id = f"big-{t:02d}-{z:02d}-{r}"
                people[person_id] = PersonConfig(
                    id=person_id,
                    name=f"责任人{t:02d}{z:02d}{r}",
                    phone=f"+86171{t:02d}{z:02d}{r:04d}",
                )
                holders[role] = [person_id]
            zones.append(
                ZoneConfig.model_validate(
                    {
                        "id": zone_id,
                        "name": f"第{t + 1}乡镇第{z + 1}号黄土滑坡隐患点",
                        "kind": "landslide",
                        "township": f"第{t + 1}乡镇",
                        "village": f"第{z + 1}村",
                        "location": {"lat": 37.4 + t * 0.01, "lon": 110.8 + z * 0.01},
                        "risk": "high",
                        "threatened": {"households": 10 + z, "people": 30 + 3 * z},
                        "people": holders,
                    }
                )
            )
    return replace(base, people=people, zones=zones, townships={}, groups={})


def county_sized_event(session: Session, county: County, at: datetime, *, hours: int = 30) -> Alert:
    """One cold wave event over every zone of `county`, joined zone by zone over `hours`:
    hourly level changes and zones added, every zone's four people and its township's
    group told, 300 zones overdue, 50 acknowledgements with notes, the bureau told of
    every change; resolved at the end."""
    sync_directory(session, county, {z.id: "p0" for z in county.zones}, at)
    end = at + timedelta(hours=hours)
    event = Alert(
        code=new_code(session),
        kind=AlertKind.EVENT,
        hazard="cold_wave",
        rule_id="cma-cold-wave-signal",
        title="寒潮",
        level="yellow",
        state="resolved",
        opened_at=at,
        updated_at=end,
        closed_at=end,
    )
    session.add(event)
    session.flush()
    subject = f"alert:{event.id}"
    levels = ("yellow", "orange", "red", "orange")
    per_hour = len(county.zones) // hours + 1
    staff = [p for p in county.people.values() if p.duty_role]
    for i, zone in enumerate(county.zones):
        hour = i // per_hour
        opened = at + timedelta(hours=hour, minutes=i % 60)
        level = levels[hour % len(levels)] if i % 3 else "yellow"
        alert = Alert(
            code=new_code(session),
            kind=AlertKind.HAZARD,
            zone_id=zone.id,
            hazard="cold_wave",
            rule_id="cma-cold-wave-signal",
            title="寒潮",
            level=level,
            state="resolved",
            opened_at=opened,
            updated_at=end,
            closed_at=end,
            event_id=event.id,
        )
        session.add(alert)
        session.flush()
        for role, person_id in [(r, ids[0]) for r, ids in zone.people.items()]:
            for channel in ("twilio_sms", "twilio_voice"):
                person = county.people[person_id]
                session.add(
                    _sent(
                        alert.id,
                        f"{channel}:{person_id}",
                        person.id,
                        person.name,
                        person.phone,
                        channel,
                        opened,
                        failed=role == "technical",
                    )
                )
        session.add(
            _sent(alert.id, "group", None, f"{zone.township}应急群", "township", "wecom", opened)
        )
        if i < 300:
            audit.record(
                session,
                at=opened + timedelta(minutes=30),
                actor="scheduler",
                action="alert.overdue",
                subject=f"alert:{alert.id}",
                data={"code": alert.code},
            )
        elif i < 350:
            prevention = zone.people["disaster_prevention"][0]
            session.add(
                Acknowledgement(
                    alert_id=alert.id,
                    person_id=prevention,
                    actor=prevention,
                    method="sms",
                    role="disaster_prevention",
                    note=f"已组织{zone.village}群众转移避险，巡查无异常",
                    at=opened + timedelta(minutes=10),
                )
            )
    for hour in range(hours):
        moment = at + timedelta(hours=hour)
        action = (
            "alert.new"
            if hour == 0
            else ("alert.upgraded" if hour % 4 in (1, 2) else "alert.downgraded")
        )
        data = {
            "code": event.code,
            "level": levels[hour % len(levels)],
            "zones": per_hour if hour == 0 else None,
        }
        audit.record(
            session, at=moment, actor="pipeline", action=action, subject=subject, data=data
        )
        if hour:
            audit.record(
                session,
                at=moment,
                actor="pipeline",
                action="alert.zones_added",
                subject=subject,
                data={"code": event.code, "added": per_hour},
            )
        for person in staff:
            session.add(
                _sent(
                    event.id,
                    f"{hour}:{person.id}",
                    person.id,
                    person.name,
                    person.phone,
                    "twilio_sms",
                    moment,
                )
            )
    event.level = "red"
    audit.record(
        session,
        at=end,
        actor="pipeline",
        action="alert.resolved",
        subject=subject,
        data={"code": event.code, "level": "red"},
    )
    session.flush()
    return event


def _sent(
    alert_id: int,
    key: str,
    person_id: str | None,
    name: str,
    address: str,
    channel: str,
    at: datetime,
    *,
    failed: bool = False,
) -> Notification:
    return Notification(
        idempotency_key=f"test-big:{alert_id}:{key}",
        alert_id=alert_id,
        transition="new",
        person_id=person_id,
        recipient_name=name,
        address=address,
        channel=channel,
        body="寒潮预警",
        status="failed" if failed else "delivered",
        attempts=3 if failed else 1,
        created_at=at,
        sent_at=None if failed else at,
        finished_at=at,
        next_attempt_at=at,
    )
