"""Acceptance (issue 12): the bundled cold wave is one event per hazard for the bureau.

The real runtime (configuration, rules, pipeline, outbox worker, escalation
timers, the web application's signed Twilio webhook) on the example county,
on SQLite and PostgreSQL, with a simulated clock moved minute by minute:

- the bundled cold front gives one event per hazard (cold wave, road icing),
  every zone alert pointing to its hazard's;
- the leader on duty hears of events only, and at most once per event that
  its zones are overdue;
- the duty officer's SMS reply "1 CODE" acknowledges the event: its reminders
  stop, while each zone's alerts keep their own escalation and acknowledgement.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from dispatcher import audit
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, EscalationTimer, Notification
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState
from tests.support import LIULIN, PUBLIC_URL, TWILIO_TOKEN, Clock, webhook_settings

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
OFFICER = "p-duty-li"  # on duty 2026-01-06 08:30 → 01-07 08:30 (roster.yaml)
LEADER = "p-lead-xue"
TOKEN, PUBLIC = TWILIO_TOKEN, PUBLIC_URL


@pytest.fixture
def runtime(db_url: str) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock(AT)
    settings = webhook_settings(LIULIN, db_url)
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    yield rt, clock
    rt.close_database()


def reply(rt: Runtime, clock: Clock, sender: str, body: str) -> str:
    """An SMS reply POSTed the way Twilio does, signed with the account's auth token."""
    state = AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=clock,
        feed_source=rt.feed.source,
        started_at=AT,
    )
    # each reply its own MessageSid: a replayed one is answered as before (test_ack_authority)
    form = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": f"SM{uuid4().hex}"}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
    with TestClient(create_app(state)) as client:
        response = client.post(
            "/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
        )
    assert response.status_code == 200, response.text
    return str(response.text)


async def run_until(rt: Runtime, clock: Clock, start: int, end: int) -> None:
    """Minute by minute from AT + start to AT + end: due escalation, then delivery."""
    for minute in range(start, end + 1):
        clock.now = AT + timedelta(minutes=minute)
        rt.pipeline.escalate()
        await drain(rt.worker)


def rows_to(rt: Runtime, person_id: str) -> list[Notification]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.person_id == person_id, Notification.status != "cancelled")
            .order_by(Notification.id)
        ).all()
        session.expunge_all()
        return list(rows)


async def test_the_cold_wave_is_one_event_per_hazard_acknowledged_by_1_code(
    runtime: tuple[Runtime, Clock],
) -> None:
    rt, clock = runtime
    await rt.pipeline.poll()
    await drain(rt.worker)

    # one event per hazard, each zone alert in its hazard's
    with rt.sessions() as session:
        events = {e.hazard: e for e in session.scalars(select(Alert).where(Alert.kind == "event"))}
        zone_alerts = session.scalars(select(Alert).where(Alert.kind == "hazard")).all()
        session.expunge_all()
    assert {h: e.level for h, e in events.items()} == {
        "cold_wave": "orange",
        "road_icing": "yellow",
    }
    assert len(zone_alerts) == 80
    assert all(a.event_id == events[a.hazard].id for a in zone_alerts)
    cold, icing = events["cold_wave"], events["road_icing"]

    # twenty minutes nobody acknowledges: the orange deadline (15 min) passes
    await run_until(rt, clock, 1, 20)
    # the duty officer replies with the cold wave's code
    answer = reply(rt, clock, rt.county.people[OFFICER].phone, f"1 {cold.code}")
    assert f"预警事件{cold.code}" in answer and "已确认" in answer
    acked_at = clock.now
    # three hours on: road icing's yellow deadline (90 min) passes too
    await run_until(rt, clock, 21, 180)

    with rt.sessions() as session:
        cold_now = session.get_one(Alert, cold.id)
        assert (cold_now.state, cold_now.acknowledged_by) == ("acknowledged", OFFICER)
        # the bureau's reminders of the cold wave stopped: nothing pending, nothing new
        pending = session.scalars(
            select(EscalationTimer).where(
                EscalationTimer.alert_id == cold.id, EscalationTimer.status == "pending"
            )
        ).all()
        assert pending == []
        after_ack = session.scalars(
            select(Notification).where(
                Notification.alert_id == cold.id,
                Notification.created_at > acked_at,
                Notification.status != "cancelled",
            )
        ).all()
        assert after_ack == []
        # each zone's own alerts are untouched: still firing, still escalating
        zones_now = session.scalars(
            select(Alert).where(Alert.event_id == cold.id, Alert.state == "firing")
        ).all()
        assert len(zones_now) == 40
        later_zone_steps = session.scalars(
            select(Notification).where(
                Notification.alert_id.in_([a.id for a in zones_now]),
                Notification.created_at > acked_at,
            )
        ).all()
        assert later_zone_steps, "the zones' reminders go on after the bureau acknowledged"
        # every zone past its deadline is on record, with its event
        overdue = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.overdue"))
        by_zone = [e for e in overdue if e.data.get("event") is not None]
        assert {e.data["event"] for e in by_zone} == {cold.id, icing.id}
        assert audit.verify(session) == []

    # the leader on duty hears of events only, and once per event that zones are overdue
    leader = rows_to(rt, LEADER)
    assert {n.alert_id for n in leader} <= {cold.id, icing.id}
    overdue_notices = [n for n in leader if n.transition.startswith("esc.overdue")]
    assert Counter(n.alert_id for n in overdue_notices) == {cold.id: 1, icing.id: 1}
    for notice in overdue_notices:
        code = cold.code if notice.alert_id == cold.id else icing.code
        assert re.search(rf"预警：\d+处隐患点超时未确认（超过\d+分钟）（编码{code}）", notice.body)
        assert f"回复“1 {code}”确认" in notice.body
    # and the duty officer too: no message about a single zone
    assert {n.alert_id for n in rows_to(rt, OFFICER)} <= {cold.id, icing.id}

    # a zone's person acknowledges their own zone, by its code; the others wait on
    zone = next(a for a in zone_alerts if a.hazard == "cold_wave" and a.level == "orange")
    assert zone.zone_id is not None
    keeper = next(p for r, p in rt.county.people_of(zone.zone_id) if r == "disaster_prevention")
    assert "已确认" in reply(rt, clock, keeper.phone, f"1 {zone.code}")
    # the event's code is the bureau's: a zone's person cannot acknowledge with it
    assert "由局值班人员确认" in reply(rt, clock, keeper.phone, f"1 {icing.code}")
    with rt.sessions() as session:
        assert session.get_one(Alert, zone.id).state == "acknowledged"
        states = Counter(
            session.scalars(select(Alert.state).where(Alert.event_id == cold.id)).all()
        )
        assert states == {"firing": 39, "acknowledged": 1}
        assert session.get_one(Alert, icing.id).state == "firing"
