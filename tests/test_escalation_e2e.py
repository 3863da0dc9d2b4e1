"""Acceptance: an unacknowledged yellow cold-wave warning escalates until an SMS reply stops it.

The real runtime (configuration, rules, pipeline, outbox worker, escalation
timers, the web application's Twilio webhook) on the example county, on SQLite
and PostgreSQL, with a simulated clock. The county is copied without its
road-icing rules (which warn every zone in this scenario too), so each person
of the chosen zone hears of exactly one warning and a bare "收到" can only
mean that one.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from dispatcher import audit
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, Notification
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState
from tests.support import Clock, replay_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "liulin"
COLDWAVE = EXAMPLE / "scenarios" / "coldwave-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
OFFICER_ON_DUTY = "p-duty-li"  # duty day 2026-01-06 in roster.yaml
LEADER_ON_DUTY = "p-lead-xue"
TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://yujing.example.gov.cn"


@pytest.fixture
def county_dir(tmp_path: Path) -> Path:
    config = tmp_path / "liulin"
    shutil.copytree(EXAMPLE, config, ignore=shutil.ignore_patterns("scenarios"))
    (config / "rules" / "road_icing.yaml").unlink()
    return config


@pytest.fixture
def runtime(db_url: str, county_dir: Path) -> Iterator[tuple[Runtime, Clock, io.StringIO]]:
    clock = Clock(AT)
    console = io.StringIO()
    settings = replay_settings(
        county_dir,
        db_url,
        twilio_auth_token=SecretStr(TOKEN),
        public_base_url=PUBLIC,
        secret_key=SecretStr("e2e-secret-key-0123456789abcdef"),
    )
    rt = open_runtime(settings, clock=clock, console=console, wake=lambda: None)
    yield rt, clock, console
    rt.close_database()


def sms_reply(client: TestClient, sender: str, body: str) -> str:
    """POST a reply the way Twilio does, signed with the account's auth token."""
    form = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": f"SM{uuid4().hex}"}
    url = f"{PUBLIC}/webhooks/twilio/sms"
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    response = client.post(
        "/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200, response.text
    return str(response.text)


def sent_to(rt: Runtime, alert_id: int) -> dict[str, set[str]]:
    """transition → people a message about the alert was sent to."""
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification).where(
                Notification.alert_id == alert_id, Notification.status == "sent"
            )
        ).all()
    out: dict[str, set[str]] = {}
    for n in rows:
        out.setdefault(n.transition, set()).add(n.person_id or "")
    return out


def trail(rt: Runtime, alert_id: int) -> list[tuple[str, dict[str, Any]]]:
    with rt.sessions() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == f"alert:{alert_id}")
            .order_by(AuditEvent.id)
        ).all()
        return [(e.action, e.data) for e in events]


async def tick(rt: Runtime, clock: Clock, minutes: float) -> None:
    """Move the clock to AT + minutes, run due escalation and deliver what it queued."""
    clock.now = AT + timedelta(minutes=minutes)
    rt.pipeline.escalate()
    await drain(rt.worker)


async def test_escalation_fires_step_by_step_until_an_sms_reply_stops_it(
    runtime: tuple[Runtime, Clock, io.StringIO],
) -> None:
    rt, clock, console = runtime
    # given a yellow cold-wave warning at a zone whose people serve no other zone
    await rt.pipeline.poll()
    await drain(rt.worker)
    with rt.sessions() as session:
        yellow = session.scalars(
            select(Alert)
            .where(Alert.hazard == "cold_wave", Alert.level == "yellow", Alert.kind == "hazard")
            .order_by(Alert.zone_id)
        ).all()
    local = ("disaster_prevention", "monitoring", "mass_monitor")
    served: dict[str, int] = {}
    for z in rt.county.zones:
        for person_id in {p for role in local for p in z.people.get(role, [])}:
            served[person_id] = served.get(person_id, 0) + 1

    def roles_of(zone_id: str) -> dict[str, set[str]]:
        people = rt.county.people_of(zone_id)
        return {role: {p.id for r, p in people if r == role} for role in local}

    alert = next(
        a
        for a in yellow
        if a.zone_id and all(served[p] == 1 for ids in roles_of(a.zone_id).values() for p in ids)
    )
    assert alert.zone_id is not None
    roles = roles_of(alert.zone_id)
    (keeper,) = roles["disaster_prevention"]
    keeper_phone = rt.county.people[keeper].phone

    # then the monitors hear of it at once, and nobody else yet
    assert sent_to(rt, alert.id) == {"new": roles["monitoring"] | roles["mass_monitor"]}

    # when nobody acknowledges: 29 minutes on, still nobody else
    await tick(rt, clock, 29)
    assert set(sent_to(rt, alert.id)) == {"new"}
    # at 30 minutes, the disaster-prevention person
    await tick(rt, clock, 30)
    assert sent_to(rt, alert.id)["esc1"] == {keeper}
    assert rt.county.people[keeper].name in console.getvalue()
    # meanwhile the bureau heard of the cold wave's event (orange: ten of its zones
    # are), not of each zone: the officer and the leader on duty at once, the
    # officer reminded, the leader told once that zones are past their deadline
    assert alert.event_id is not None
    await tick(rt, clock, 60)
    assert "esc2" not in sent_to(rt, alert.id)
    bureau = sent_to(rt, alert.event_id)
    assert bureau["new"] == {OFFICER_ON_DUTY, LEADER_ON_DUTY}
    assert bureau["esc.overdue"] == {LEADER_ON_DUTY}
    assert {p for t, ps in bureau.items() if t.startswith("esc1") for p in ps} == {OFFICER_ON_DUTY}

    # when the disaster-prevention person replies 收到 (signed by Twilio)
    clock.now = AT + timedelta(minutes=75)
    state = AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=clock,
        feed_source=rt.feed.source,
        started_at=AT,
    )
    with TestClient(create_app(state)) as client:
        answer = sms_reply(client, keeper_phone, "收到")
    assert f"预警{alert.code}" in answer and "已确认" in answer

    # then the steps to come never fire: no reminder, no deadline, no overdue
    await tick(rt, clock, 90)
    await tick(rt, clock, 180)
    assert set(sent_to(rt, alert.id)) == {"new", "esc1"}
    with rt.sessions() as session:
        acknowledged = session.get_one(Alert, alert.id)
        assert (acknowledged.state, acknowledged.acknowledged_by) == ("acknowledged", keeper)
        # while a warning nobody acknowledged went on to its deadline and the leader
        overdue = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.overdue"))
        assert f"alert:{alert.id}" not in {e.subject for e in overdue}
        assert session.scalars(
            select(Notification).where(Notification.transition == "esc.overdue")
        ).first()

    # and the audit trail shows every step, who was told, and who stopped it, intact
    events = trail(rt, alert.id)
    assert [action for action, _ in events] == [
        "alert.new",
        "escalation.step",
        "escalation.started",
        "escalation.step",
        "alert.ack",
        "alert.acknowledged",
        "escalation.cancelled",
    ]
    steps = [data for action, data in events if action == "escalation.step"]
    assert [(s["step"], {t["person"] for t in s["told"]}) for s in steps] == [
        (0, roles["monitoring"] | roles["mass_monitor"]),
        (1, {keeper}),
    ]
    ack = dict(events)["alert.ack"]
    assert (ack["person"], ack["method"], ack["role"]) == (keeper, "sms", "disaster_prevention")
    cancelled = dict(events)["escalation.cancelled"]
    assert cancelled["reason"] == "acknowledged" and len(cancelled["timers"]) == 1  # deadline
    with rt.sessions() as session:
        assert audit.verify(session) == []
