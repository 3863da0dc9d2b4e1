"""Acknowledging from a phone: SMS reply, voice keypress, signed link — and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from dispatcher.acklinks import ack_link, make_token
from dispatcher.settings import Settings
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    Notification,
    Person,
    Zone,
    ZoneRole,
)
from dispatcher.web.acks import AckReply, parse_ack_reply
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState

NOW = datetime(2026, 1, 7, 1, 0, tzinfo=UTC)
TOKEN = "0123456789abcdef0123456789abcdef"
SECRET = "test-secret-key-for-ack-links-0123456789"
PUBLIC = "https://yujing.example.gov.cn"
SMS_URL = f"{PUBLIC}/webhooks/twilio/sms"

ZONE = "LL-MC-001"
ZONE_NAME = "穆村镇冯家沟村黄土滑坡"
WANG = "p-wang"  # the zone's disaster-prevention person
WANG_PHONE = "+8617000000101"
ZHANG = "p-duty-zhang"  # a duty officer
ZHANG_PHONE = "+8617000000001"
STRANGER_PHONE = "+8613900000000"


# --- given ------------------------------------------------------------------------


def settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_auth_token": SecretStr(TOKEN),
        "public_base_url": PUBLIC,
        "secret_key": SecretStr(SECRET),
        **changes,
    }
    return Settings(_env_file=None, **values)


def client(sessions: sessionmaker[Session], config: Settings | None = None) -> TestClient:
    state = AppState(
        sessions=sessions,
        settings=config or settings(),
        clock=lambda: NOW,
        feed_source="open-meteo",
        started_at=NOW,
    )
    return TestClient(create_app(state))


def county(sessions: sessionmaker[Session]) -> None:
    """One zone, its disaster-prevention person and a duty officer."""
    with sessions.begin() as session:
        session.add(
            Zone(
                id=ZONE,
                name=ZONE_NAME,
                kind="landslide",
                township="穆村镇",
                village="冯家沟村",
                latitude=37.4,
                longitude=110.9,
                risk_level="high",
                tags=[],
                point_id="pt-1",
                updated_at=NOW,
            )
        )
        session.add(
            Person(id=WANG, name="王建国", phone=WANG_PHONE, duty_role=None, updated_at=NOW)
        )
        session.add(
            Person(
                id=ZHANG, name="张志强", phone=ZHANG_PHONE, duty_role="duty_officer", updated_at=NOW
            )
        )
        session.flush()
        session.add(ZoneRole(zone_id=ZONE, person_id=WANG, role="disaster_prevention"))


def alert(
    sessions: sessionmaker[Session],
    code: str,
    *,
    level: str = "yellow",
    hazard: str = "cold_wave",
    title: str = "寒潮",
    state: str = "firing",
    told: tuple[str, ...] = (WANG, ZHANG),
    sent_at: datetime = NOW - timedelta(minutes=30),
) -> tuple[int, dict[str, int]]:
    """An alert and one sent SMS per person told; returns (alert id, {person: notification id})."""
    with sessions.begin() as session:
        row = Alert(
            code=code,
            kind="hazard",
            zone_id=ZONE,
            hazard=hazard,
            rule_id="cma-cold-wave",
            title=title,
            level=level,
            state=state,
            onset=NOW + timedelta(hours=6),
            until=NOW + timedelta(hours=30),
            evidence={"tmin_drop_24h": 10.5, "tmin": -6.2},
            opened_at=sent_at,
            updated_at=sent_at,
        )
        session.add(row)
        session.flush()
        notes = {}
        for person in told:
            note = Notification(
                idempotency_key=f"{row.id}:new:{person}:twilio_sms",
                alert_id=row.id,
                transition="new",
                person_id=person,
                recipient_name=person,
                address=WANG_PHONE if person == WANG else ZHANG_PHONE,
                channel="twilio_sms",
                body=f"【柳林县自然资源局】{title}黄色预警：{ZONE_NAME}。回复1确认（编码{code}）",
                status="sent",
                attempts=1,
                next_attempt_at=sent_at,
                created_at=sent_at,
                sent_at=sent_at,
            )
            session.add(note)
            session.flush()
            notes[person] = note.id
        return row.id, notes


def signed(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def sms(sessions: sessionmaker[Session], body: str, sender: str = WANG_PHONE) -> Any:
    form = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": f"SM{uuid4().hex}"}
    return client(sessions).post("/webhooks/twilio/sms", data=form, headers=signed(SMS_URL, form))


def acks(sessions: sessionmaker[Session]) -> list[tuple[int, str | None, str, str | None]]:
    with sessions() as session:
        rows = session.scalars(select(Acknowledgement).order_by(Acknowledgement.id)).all()
        return [(a.alert_id, a.person_id, a.method, a.note) for a in rows]


def audit_actions(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def state_of(sessions: sessionmaker[Session], alert_id: int) -> str:
    with sessions() as session:
        return session.get_one(Alert, alert_id).state


# --- reading replies (pure) ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1", None),
        ("收到", None),
        ("确认", None),
        ("ok", None),
        ("OK", None),
        ("１", None),  # full-width digit
        ("ＯＫ", None),
        (" 收到。", None),
        ("1 K7QA", "K7QA"),
        ("收到K7QA", "K7QA"),
        ("确认 k7qa", "K7QA"),
        ("１　Ｋ７ＱＡ", "K7QA"),  # full-width digit, space and letters
        ("收到，K7QA", "K7QA"),
        ("ok:k7qa", "K7QA"),
    ],
)
def test_every_accepted_reply_form_is_read_with_its_optional_code(
    text: str, code: str | None
) -> None:
    assert parse_ack_reply(text) == AckReply(code)


@pytest.mark.parametrize("text", ["", "2", "好的", "11", "收到了吗", "1 K7QA 2", "stop", "K7QA"])
def test_other_replies_are_not_read_as_acknowledgements(text: str) -> None:
    assert parse_ack_reply(text) is None


# --- SMS replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["1", "收到", "确认", "ok", "OK", "１", "1 K7QA", "收到K7QA", "确认 k7qa"]
)
def test_an_sms_reply_acknowledges_the_alert_and_says_which(
    sessions: sessionmaker[Session], body: str
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = sms(sessions, body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert acks(sessions) == [(alert_id, WANG, "sms", None)]
    assert state_of(sessions, alert_id) == "acknowledged"
    assert "<Response><Message>" in response.text
    assert f"预警K7QA（寒潮黄色预警，{ZONE_NAME}）已确认" in response.text


def test_a_reply_without_a_code_acknowledges_the_senders_latest_alert(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    older, _ = alert(sessions, "AC3D", sent_at=NOW - timedelta(hours=2))
    newer, _ = alert(sessions, "K7QA", hazard="road_icing", title="道路结冰")

    sms(sessions, "收到")

    assert acks(sessions) == [(newer, WANG, "sms", None)]
    assert state_of(sessions, older) == "firing"


def test_a_reply_with_a_code_acknowledges_that_alert_not_the_latest(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    older, _ = alert(sessions, "AC3D", sent_at=NOW - timedelta(hours=2))
    alert(sessions, "K7QA")

    response = sms(sessions, "1 ac3d")

    assert acks(sessions) == [(older, WANG, "sms", None)]
    assert "预警AC3D" in response.text


def test_a_red_warning_acknowledged_by_one_person_says_who_is_still_needed(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA", level="red")

    response = sms(sessions, "1")

    assert acks(sessions) == [(alert_id, WANG, "sms", None)]
    assert state_of(sessions, alert_id) == "firing"
    assert "尚需值班员确认" in response.text


def test_an_unknown_sender_is_told_so_and_acknowledges_nothing(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = sms(sessions, "1 K7QA", sender=STRANGER_PHONE)

    assert response.status_code == 200
    assert "<Message>本号码未登记为预警接收人" in response.text
    assert acks(sessions) == []
    assert state_of(sessions, alert_id) == "firing"
    assert audit_actions(sessions) == ["ack.refused"]


def test_an_unparseable_reply_gets_help_and_acknowledges_nothing(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = sms(sessions, "什么意思？")

    assert response.status_code == 200
    assert "未能识别您的回复“什么意思？”" in response.text
    assert "确认预警请回复1" in response.text
    assert acks(sessions) == []
    assert state_of(sessions, alert_id) == "firing"


def test_a_code_that_matches_no_alert_is_reported(sessions: sessionmaker[Session]) -> None:
    county(sessions)
    alert(sessions, "K7QA")

    response = sms(sessions, "1 XXXX")

    assert "未找到编码为XXXX的预警" in response.text
    assert acks(sessions) == []


def test_a_reply_about_a_resolved_alert_needs_no_acknowledgement(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert(sessions, "K7QA", state="resolved")

    response = sms(sessions, "1 K7QA")

    assert "预警K7QA已解除，无需确认" in response.text
    assert acks(sessions) == []


def test_a_reply_with_nothing_open_says_so(sessions: sessionmaker[Session]) -> None:
    county(sessions)

    response = sms(sessions, "1")

    assert "您目前没有待确认的预警" in response.text
    assert acks(sessions) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        signed(SMS_URL, {"From": WANG_PHONE, "Body": "1"}, token="f" * 32),
        signed(SMS_URL, {"From": WANG_PHONE, "Body": "2"}),  # signed other content
    ],
    ids=["missing", "forged", "wrong-token", "tampered"],
)
def test_an_unsigned_or_forged_sms_acknowledges_nothing(
    sessions: sessionmaker[Session], headers: dict[str, str]
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = client(sessions).post(
        "/webhooks/twilio/sms", data={"From": WANG_PHONE, "Body": "1"}, headers=headers
    )

    assert response.status_code == 403
    assert acks(sessions) == []
    assert state_of(sessions, alert_id) == "firing"
    assert audit_actions(sessions) == []


# --- voice keypress -----------------------------------------------------------------------


def keypress(sessions: sessionmaker[Session], notification: int | str, digits: str) -> Any:
    path = f"/webhooks/twilio/voice/ack?n={notification}"
    form = {"CallSid": "CA" + "c" * 32, "Digits": digits, "From": "+15005550006"}
    return client(sessions).post(path, data=form, headers=signed(PUBLIC + path, form))


def test_pressing_1_on_the_call_acknowledges_for_the_person_called(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert_id, notes = alert(sessions, "K7QA")

    response = keypress(sessions, notes[ZHANG], "1")

    assert response.status_code == 200
    assert '<Say language="cmn-CN" voice="Polly.Zhiyu">已确认，谢谢</Say>' in response.text
    assert acks(sessions) == [(alert_id, ZHANG, "voice", None)]


def test_another_key_repeats_the_message_and_asks_again(sessions: sessionmaker[Session]) -> None:
    county(sessions)
    _, notes = alert(sessions, "K7QA")

    response = keypress(sessions, notes[ZHANG], "2")

    assert response.status_code == 200
    assert "您按的是2" in response.text
    gather_url = f"{PUBLIC}/webhooks/twilio/voice/ack?n={notes[ZHANG]}"
    assert f'<Gather action="{gather_url}"' in response.text
    assert "编码K7QA" in response.text and "确认收到请按1" in response.text
    assert acks(sessions) == []


def test_a_keypress_for_an_unknown_notification_acknowledges_nothing(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert(sessions, "K7QA")

    response = keypress(sessions, 9999, "1")

    assert "未找到对应的预警信息" in response.text
    assert acks(sessions) == []


def test_an_unsigned_keypress_acknowledges_nothing(sessions: sessionmaker[Session]) -> None:
    county(sessions)
    _, notes = alert(sessions, "K7QA")

    response = client(sessions).post(
        f"/webhooks/twilio/voice/ack?n={notes[ZHANG]}",
        data={"Digits": "1"},
        headers=signed(f"{PUBLIC}/webhooks/twilio/voice/ack?n=1", {"Digits": "1"}),
    )

    assert response.status_code == 403
    assert acks(sessions) == []


# --- signed links ---------------------------------------------------------------------------


def link_path(alert_id: int, person: str = WANG, now: datetime = NOW) -> str:
    url = ack_link(settings(), alert_id, person, now)
    assert url is not None and url.startswith(f"{PUBLIC}/ack/")
    return url.removeprefix(PUBLIC)


@pytest.mark.parametrize(
    "user_agent",
    [
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0",
    ],
)
def test_opening_a_link_shows_the_alert_and_acknowledges_nothing(
    sessions: sessionmaker[Session], user_agent: str
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = client(sessions).get(link_path(alert_id), headers={"User-Agent": user_agent})

    assert response.status_code == 200
    page = response.text
    for shown in ("寒潮黄色预警", "K7QA", ZONE_NAME, "2026-01-07 15:00", "tmin_drop_24h", "10.5"):
        assert shown in page
    assert '<form method="post">' in page and 'name="note"' in page
    assert "<script" not in page and "http" not in page.replace(PUBLIC, "")  # no CDN
    assert response.headers["cache-control"] == "no-store"
    # no other site may frame the confirm button (click-jacking)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert acks(sessions) == []
    assert audit_actions(sessions) == []


def test_confirming_on_the_link_page_acknowledges_with_the_note(
    sessions: sessionmaker[Session],
) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")

    response = client(sessions).post(link_path(alert_id), data={"note": "已安排巡查，群众已转移"})

    assert response.status_code == 200
    assert "已确认。谢谢" in response.text
    assert acks(sessions) == [(alert_id, WANG, "link", "已安排巡查，群众已转移")]
    assert state_of(sessions, alert_id) == "acknowledged"


def test_confirming_a_resolved_alert_records_nothing(sessions: sessionmaker[Session]) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA", state="resolved")

    page = client(sessions).get(link_path(alert_id)).text
    response = client(sessions).post(link_path(alert_id), data={})

    assert "无需确认" in page and "<form" not in page
    assert response.status_code == 409
    assert acks(sessions) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_expired_link_acknowledges_nothing(sessions: sessionmaker[Session], method: str) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")
    ttl = timedelta(seconds=settings().ack_link_ttl_seconds)
    path = link_path(alert_id, now=NOW - ttl - timedelta(seconds=1))

    response = client(sessions).request(
        method, path, data={"note": "x"} if method == "POST" else None
    )

    assert response.status_code == 410
    assert "链接已过期" in response.text
    assert acks(sessions) == []
    assert audit_actions(sessions) == []


def altered(token: str) -> list[str]:
    payload, mac = token.split(".")
    other = "A" if payload[0] != "A" else "B"
    return [
        other + payload[1:] + "." + mac,  # payload changed
        payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "Q"),  # signature changed
        payload + "." + mac[:-2],  # truncated
        payload,  # signature removed
        make_token(SecretStr("another key"), 1, WANG, NOW + timedelta(hours=1)),
        "not-a-token",
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_altered_link_acknowledges_nothing(sessions: sessionmaker[Session], method: str) -> None:
    county(sessions)
    alert_id, _ = alert(sessions, "K7QA")
    token = link_path(alert_id).removeprefix("/ack/")

    for bad in altered(token):
        response = client(sessions).request(method, f"/ack/{bad}")
        assert response.status_code == 403, bad
        assert "链接无效" in response.text

    assert acks(sessions) == []
    assert audit_actions(sessions) == []


def test_a_link_for_another_alert_cannot_be_made_from_this_one(
    sessions: sessionmaker[Session],
) -> None:
    # given a link for alert 1, the same signature on a payload naming alert 2 is refused
    county(sessions)
    first, _ = alert(sessions, "K7QA")
    second, _ = alert(sessions, "AC3D")
    token = link_path(first).removeprefix("/ack/")
    forged_payload = link_path(second).removeprefix("/ack/").split(".")[0]

    response = client(sessions).post(f"/ack/{forged_payload}.{token.split('.')[1]}")

    assert response.status_code == 403
    assert acks(sessions) == []
