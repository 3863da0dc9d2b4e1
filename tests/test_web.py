"""HTTP side: health and the Twilio status webhook (signature-checked)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, AuditEvent, Notification, Receipt
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState, RulesStatus

NOW = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://yujing.example.gov.cn"
STATUS_URL = f"{PUBLIC}/webhooks/twilio/status"


def make_client(sessions: sessionmaker[Session], **settings: object) -> TestClient:
    config = Settings(
        _env_file=None,
        twilio_auth_token=SecretStr(TOKEN),
        public_base_url=PUBLIC,
        **settings,  # type: ignore[arg-type]
    )
    state = AppState(
        sessions=sessions,
        settings=config,
        clock=lambda: NOW,
        feed_source="open-meteo",
        started_at=NOW,
        rules=RulesStatus(loaded_at=NOW, content_hash="abc", rules=5),
    )
    return TestClient(create_app(state))


def sent_notification(sessions: sessionmaker[Session], sid: str) -> int:
    with sessions.begin() as session:
        alert = Alert(
            code="KQ7A",
            kind="system",
            hazard="feed_down",
            rule_id="feed:x",
            level="orange",
            state="firing",
            opened_at=NOW,
            updated_at=NOW,
        )
        session.add(alert)
        session.flush()
        row = Notification(
            idempotency_key=f"{alert.id}:new:p1:twilio_sms",
            alert_id=alert.id,
            transition="new",
            address="+8617000000001",
            channel="twilio_sms",
            body="测试",
            status="sent",
            attempts=1,
            next_attempt_at=NOW,
            created_at=NOW,
            sent_at=NOW,
            provider_id=sid,
        )
        session.add(row)
        session.flush()
        return row.id


def signed(params: dict[str, str], url: str = STATUS_URL, token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


SID = "SM" + "a" * 32


def test_a_correctly_signed_delivery_report_is_recorded(sessions: sessionmaker[Session]) -> None:
    note_id = sent_notification(sessions, SID)
    form = {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    response = make_client(sessions).post(
        "/webhooks/twilio/status", data=form, headers=signed(form)
    )
    assert response.status_code == 204
    with sessions() as session:
        assert session.get_one(Notification, note_id).status == "delivered"
        [receipt] = session.scalars(select(Receipt)).all()
        assert (receipt.provider_id, receipt.status, receipt.notification_id) == (
            SID,
            "delivered",
            note_id,
        )


def test_an_undelivered_report_keeps_the_error_code(sessions: sessionmaker[Session]) -> None:
    note_id = sent_notification(sessions, SID)
    form = {"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert (
        make_client(sessions)
        .post("/webhooks/twilio/status", data=form, headers=signed(form))
        .status_code
        == 204
    )
    with sessions() as session:
        row = session.get_one(Notification, note_id)
        assert (row.status, row.error_code) == ("undelivered", "30003")


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature at all
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},  # forged
        signed({"MessageSid": SID, "MessageStatus": "delivered"}, token="f" * 32),  # wrong key
        signed({"MessageSid": SID, "MessageStatus": "failed"}),  # signed other content
    ],
    ids=["missing", "forged", "wrong-token", "tampered"],
)
def test_an_unsigned_or_forged_report_is_refused_and_changes_nothing(
    sessions: sessionmaker[Session], headers: dict[str, str]
) -> None:
    note_id = sent_notification(sessions, SID)
    form = {"MessageSid": SID, "MessageStatus": "delivered"}
    response = make_client(sessions).post("/webhooks/twilio/status", data=form, headers=headers)
    assert response.status_code == 403
    with sessions() as session:
        assert session.get_one(Notification, note_id).status == "sent"
        assert session.scalars(select(Receipt)).all() == []
        assert (
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "notification.receipt")
            ).all()
            == []
        )


def test_health_reports_database_feed_rules_and_outbox(sessions: sessionmaker[Session]) -> None:
    sent_notification(sessions, SID)
    body = make_client(sessions).get("/healthz").json()
    assert body["database"] == {"ok": True, "read": True, "write": True}
    assert body["feed"]["source"] == "open-meteo"
    assert body["feed"]["last_success"] is None
    assert body["rules"]["rules"] == 5
    assert body["outbox"]["sent"] == 1
