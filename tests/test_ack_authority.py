"""Acknowledgements are genuine (issue 13): a code is no password, a replay no reply.

Through the real runtime and the web application's signed Twilio webhooks, on
SQLite and PostgreSQL, after a poll of the recorded cold wave:

- another zone's person replying with a zone's code is refused, politely and
  on record, and the warning keeps escalating; bureau staff may acknowledge any;
- a signed SMS reply replayed (the same MessageSid) is answered as before and
  changes nothing; a status callback replayed adds no receipt;
- the alert's short code is not in the public CAP feed.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    EscalationTimer,
    InboundMessage,
    Notification,
    Receipt,
)
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState
from tests.support import LIULIN, PUBLIC_URL, TWILIO_TOKEN, Clock, webhook_settings
from tests.test_cap import published
from tests.test_events_e2e import AT

TOKEN, PUBLIC = TWILIO_TOKEN, PUBLIC_URL


@pytest.fixture
def client(db_url: str) -> Iterator[tuple[Runtime, TestClient]]:
    clock = Clock(AT)
    settings = webhook_settings(LIULIN, db_url)
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)

    async def warn() -> None:
        await rt.pipeline.poll()
        await drain(rt.worker)

    asyncio.run(warn())
    state = AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=clock,
        feed_source=rt.feed.source,
        started_at=AT,
    )
    with TestClient(create_app(state)) as http:
        yield rt, http
    rt.close_database()


def post_signed(http: TestClient, path: str, form: dict[str, str]) -> str:
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}{path}", form)
    response = http.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code in (200, 204), response.text
    return str(response.text)


def sms(http: TestClient, sender: str, body: str, sid: str) -> str:
    form = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": sid}
    return post_signed(http, "/webhooks/twilio/sms", form)


def zone_alert(rt: Runtime, zone_id: str) -> Alert:
    with rt.sessions() as session:
        alert = session.scalars(
            select(Alert).where(
                Alert.zone_id == zone_id, Alert.hazard == "cold_wave", Alert.kind == "hazard"
            )
        ).one()
        session.expunge(alert)
        return alert


def test_another_zones_person_cannot_acknowledge_a_zone_by_its_code(
    client: tuple[Runtime, TestClient],
) -> None:
    rt, http = client
    target, other = zone_alert(rt, "LL-MC-005"), "LL-LL-001"
    assert target.zone_id is not None
    # a mass monitor of another zone, who got no message about this one
    stranger = next(
        p
        for role, p in rt.county.people_of(other)
        if role == "mass_monitor"
        and p.id not in {q.id for _, q in rt.county.people_of(target.zone_id)}
    )

    answer = sms(http, stranger.phone, f"1 {target.code}", "SM" + "a" * 32)

    assert "不属于您负责的隐患点" in answer
    with rt.sessions() as session:
        assert session.get_one(Alert, target.id).state == "firing"
        assert not session.scalars(
            select(Acknowledgement).where(Acknowledgement.alert_id == target.id)
        ).all()
        pending = session.scalar(
            select(func.count(EscalationTimer.id)).where(
                EscalationTimer.alert_id == target.id, EscalationTimer.status == "pending"
            )
        )
        assert pending, "its escalation goes on"
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "ack.refused")
        ).all()
        assert [(e.actor, e.data["reason"]) for e in refused] == [(stranger.id, "not_concerned")]


def test_the_zones_own_people_and_the_bureau_may_acknowledge_it(
    client: tuple[Runtime, TestClient],
) -> None:
    rt, http = client
    own, bureau = zone_alert(rt, "LL-MC-005"), zone_alert(rt, "LL-LL-001")
    assert own.zone_id is not None
    keeper = next(p for r, p in rt.county.people_of(own.zone_id) if r == "disaster_prevention")
    officer = rt.county.people["p-duty-li"]

    assert "已确认" in sms(http, keeper.phone, f"1 {own.code}", "SM" + "b" * 32)
    assert "已确认" in sms(http, officer.phone, f"1 {bureau.code}", "SM" + "c" * 32)
    with rt.sessions() as session:
        assert session.get_one(Alert, own.id).state == "acknowledged"
        assert session.get_one(Alert, bureau.id).state == "acknowledged"


def test_a_replayed_signed_reply_changes_nothing(client: tuple[Runtime, TestClient]) -> None:
    rt, http = client
    alert = zone_alert(rt, "LL-MC-005")
    assert alert.zone_id is not None
    keeper = next(p for r, p in rt.county.people_of(alert.zone_id) if r == "disaster_prevention")
    sid = "SM" + "d" * 32

    first = sms(http, keeper.phone, "1", sid)
    again = sms(http, keeper.phone, "1", sid)  # captured and sent again

    assert again == first and "已确认" in first
    with rt.sessions() as session:
        acks = session.scalar(select(func.count(Acknowledgement.id)))
        recorded = session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action == "alert.ack")
        )
        handled = session.scalars(select(InboundMessage)).all()
    assert (acks, recorded) == (1, 1)
    assert [m.provider_id for m in handled] == [sid]


def test_a_replayed_status_callback_adds_no_receipt(client: tuple[Runtime, TestClient]) -> None:
    rt, http = client
    with rt.sessions() as session:
        sent = session.scalars(
            select(Notification).where(Notification.provider_id.is_not(None)).limit(1)
        ).one()
    form = {"MessageSid": sent.provider_id or "", "MessageStatus": "delivered"}

    for _ in range(3):
        post_signed(http, "/webhooks/twilio/status", form)

    with rt.sessions() as session:
        receipts = session.scalars(
            select(Receipt).where(Receipt.provider_id == sent.provider_id)
        ).all()
        audited = session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == "notification.receipt",
                AuditEvent.subject == f"notification:{sent.id}",
            )
        )
        assert session.get_one(Notification, sent.id).status == "delivered"
    assert len(receipts) == 1 and audited == 1


def test_the_public_cap_feed_carries_no_acknowledgement_code(
    client: tuple[Runtime, TestClient],
) -> None:
    rt, http = client
    with rt.sessions() as session:
        codes = set(session.scalars(select(Alert.code)))
    messages = published(http)
    assert len(messages) == 80  # one per zone alert
    assert not [code for m in messages for code in codes if code in m.xml.decode()]
