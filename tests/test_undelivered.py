"""Nothing is given up silently: warnings that failed every way raise the undelivered
alert, and are sent again when the provider recovers if their warning still stands.

The real runtime (pipeline, database on SQLite and PostgreSQL, outbox and its
worker, failover, escalation with the example roster, the real Twilio SMS and
voice channels); respx stands in only at the network edge, for Twilio's API,
which is down and then up again.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from prometheus_client import generate_latest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.cli import app
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, Notification
from dispatcher.web.app import health, metrics_registry
from dispatcher.web.state import AppState
from dispatcher.web.words import evidence_words
from tests.processes import ACCOUNT, COUNTY
from tests.support import Clock, webhook_settings

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai: orange cold wave
TWILIO = "http://twilio.test"
PROBE = 60.0
# 2026-01-07 00:00 in Shanghai: the roster's duty day 01-06
DUTY_OFFICER, LEADER_ON_DUTY = "李慧敏", "薛文杰"


class Provider:
    """Twilio's Messages and Calls APIs at the edge: down (HTTP 503) or up."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.up = False
        self.accepted: list[dict[str, str]] = []
        base = f"{TWILIO}/2010-04-01/Accounts/{ACCOUNT}"
        router.post(f"{base}/Messages.json").mock(side_effect=self._answer("SM"))
        router.post(f"{base}/Calls.json").mock(side_effect=self._answer("CA"))

    def _answer(self, prefix: str) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            if not self.up:
                return httpx.Response(503, json={"code": 20503, "message": "down"})
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            sid = f"{prefix}{len(self.accepted):032d}"
            self.accepted.append({"sid": sid, "to": form.get("To", ""), "kind": prefix})
            return httpx.Response(201, json={"sid": sid, "status": "queued"})

        return answer


@pytest.fixture
def provider() -> Iterator[Provider]:
    with respx.mock(assert_all_mocked=True) as router:
        yield Provider(router)


@pytest.fixture
async def rt(db_url: str) -> AsyncIterator[tuple[Runtime, Clock]]:
    settings = webhook_settings(
        COUNTY,
        db_url,
        channel="twilio_sms",
        twilio_account_sid=ACCOUNT,
        twilio_from_number="+15005550006",
        twilio_api_base=TWILIO,
        twilio_auth_token=SecretStr("0123456789abcdef0123456789abcdef"),
        # the retry limits: one attempt a way (SMS, then a call)
        delivery_max_attempts=1,
        delivery_backoff_seconds=0,
        delivery_backoff_max_seconds=0,
        delivery_probe_seconds=PROBE,
        rate_limits="twilio_voice=1000/s",  # one call a second is Twilio's; not the test's
    )
    clock = Clock(AT)
    runtime = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    assert {"twilio_sms", "twilio_voice"} <= set(runtime.channels)
    yield runtime, clock
    await runtime.aclose()


def undelivered_alerts(session: Session) -> list[Alert]:
    return list(
        session.scalars(select(Alert).where(Alert.hazard == "undelivered").order_by(Alert.id))
    )


def unreached(session: Session, alert_ids: set[int]) -> set[tuple[int, str, str]]:
    """(alert, transition, person) told by no row that went through."""
    rows = session.scalars(select(Notification).where(Notification.alert_id.in_(alert_ids)))
    reaches: dict[tuple[int, str, str], bool] = {}
    for row in rows:
        if row.person_id is None or row.alert_id is None:
            continue
        key = (row.alert_id, row.transition, row.person_id)
        reaches[key] = reaches.get(key, False) or row.status in ("sent", "delivered")
    return {key for key, reached in reaches.items() if not reached}


def actions(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


async def outage(rt: Runtime) -> set[int]:
    """The cold wave is announced while Twilio is down: every way is tried and fails.
    Returns the ids of the warnings' alerts."""
    result = await rt.pipeline.poll()
    assert result.ok and result.notifications > 0
    await drain(rt.worker)
    with rt.sessions() as session:
        ids = session.scalars(select(Notification.alert_id).distinct())
        return {i for i in ids if i is not None}


async def test_a_warning_that_failed_every_way_raises_one_undelivered_alert_to_the_duty_officer(
    rt: tuple[Runtime, Clock],
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    runtime, _ = rt
    warnings = await outage(runtime)
    with runtime.sessions() as session:
        lost = unreached(session, warnings)
        gave_up = actions(session, "notification.undeliverable")
    assert len(lost) > 20  # SMS and the call that replaced it both failed, for everyone
    assert gave_up and all(e.data["given_up"] for e in gave_up)

    runtime.check_delivery()
    runtime.check_delivery()  # a second look raises no second alert

    with runtime.sessions() as session:
        (alert,) = undelivered_alerts(session)
        assert (alert.kind, alert.state) == ("system", "firing")
        assert alert.evidence["recipients"] == len({p for _, _, p in lost})
        assert alert.evidence["messages"] == len(lost)
        assert alert.evidence["channels"] == ["twilio_sms", "twilio_voice"]
        told = list(session.scalars(select(Notification).where(Notification.alert_id == alert.id)))
        (opened,) = [e for e in actions(session, "alert.new") if e.subject == f"alert:{alert.id}"]
    # to the duty officer and the leader on duty of the roster, by the system policy
    assert {r.recipient_name for r in told} == {DUTY_OFFICER, LEADER_ON_DUTY}
    body = told[0].body
    assert f"{alert.evidence['recipients']}人的{len(lost)}条预警消息" in body
    assert "经短信、语音电话均未送达" in body and "请立即电话通知相关人员" in body
    assert "检查服务商" in body and f"回复1确认（编码{alert.code}）确认：https://" in body
    assert opened.data["hazard"] == "undelivered" and opened.data["messages"] == len(lost)

    # /healthz shows it
    state = AppState(
        sessions=runtime.sessions, settings=runtime.settings, clock=runtime.pipeline.clock,
        feed_source=runtime.feed.source, started_at=AT,
    )  # fmt: skip
    answer = json.loads(bytes(health(state).body))
    # (a person told by SMS and by a call of their own who got neither: two rows)
    assert answer["outbox"]["given_up"] == len(gave_up)
    assert answer["outbox"]["undelivered_alert"] == alert.code
    assert answer["status"] == "degraded" and "messages undelivered" in answer["problems"]
    scraped = generate_latest(metrics_registry(state)).decode()
    gauge = r'yujing_outbox_given_up\{channel="(\w+)"\} (\S+)'
    gauges = {channel: float(value) for channel, value in re.findall(gauge, scraped)}
    assert set(gauges) == {"twilio_sms", "twilio_voice"}
    assert sum(gauges.values()) == len(gave_up)

    # the console says it in words, with whom to call; `yujing alerts list` lists it
    words = evidence_words(alert.evidence)
    assert words[0].startswith(f"{alert.evidence['recipients']}人的{len(lost)}条预警消息未送达")
    some = runtime.county.people[sorted(lost)[0][2]]
    assert any(w.startswith(f"请电话通知：{some.name} {some.phone}") for w in words)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YUJING_DATABASE_URL", runtime.settings.database_url)
    listed = CliRunner().invoke(app, ["alerts", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (item,) = [i for i in json.loads(listed.stdout) if i["code"] == alert.code]
    assert (item["hazard"], item["state"]) == ("undelivered", "firing")

    # and the duty officer acknowledges it like any system alert
    with runtime.sessions.begin() as session:
        duty = next(p for p in runtime.county.duty_officers() if p.name == DUTY_OFFICER)
        outcome = acknowledge(
            session, alert=session.get_one(Alert, alert.id), person_id=duty.id,
            actor=duty.id, method="console", note=None, at=AT,
        )  # fmt: skip
    assert outcome.complete


async def test_after_the_provider_recovers_every_recipient_is_reached_and_the_alert_resolves(
    rt: tuple[Runtime, Clock], provider: Provider
) -> None:
    runtime, clock = rt
    warnings = await outage(runtime)
    runtime.check_delivery()
    await drain(runtime.worker)  # the alert's own messages fail too, and are given up
    with runtime.sessions() as session:
        (alert,) = undelivered_alerts(session)
        lost = unreached(session, warnings)
        keys = {r.id: r.idempotency_key for r in session.scalars(select(Notification))}

    # the provider is back; nothing else is sent, so the channels are probed
    provider.up = True
    runtime.check_delivery()
    assert provider.accepted == []  # not before the probe interval
    clock.advance(PROBE)
    assert runtime.check_delivery() == 2  # one probe per channel
    await drain(runtime.worker)
    assert len(provider.accepted) == 2
    # the probes went through: the channels have recovered, the rest is sent again
    assert runtime.check_delivery() >= len(lost) - 2
    await drain(runtime.worker)

    with runtime.sessions() as session:
        assert unreached(session, warnings | {alert.id}) == set()
        # re-sent rows are the same rows, with the same idempotency keys: no new row
        after = {r.id: r.idempotency_key for r in session.scalars(select(Notification))}
        assert after == keys
        resent = actions(session, "notification.resent")
    reached = {m["to"] for m in provider.accepted}
    with runtime.sessions() as session:
        people = {runtime.county.people[p].phone for _, _, p in lost}
    assert people <= reached
    assert {e.data["why"] for e in resent} == {"probe", "channel recovered"}

    # nothing is left undelivered: the alert resolves, and says so
    runtime.check_delivery()
    with runtime.sessions() as session:
        (alert,) = undelivered_alerts(session)
        assert alert.state == "resolved"
        assert alert.evidence["reached"] == len(lost) + 2  # and its own two messages
        closing = session.scalars(
            select(Notification).where(
                Notification.alert_id == alert.id, Notification.transition == "resolved"
            )
        ).all()
        assert any(e.subject == f"alert:{alert.id}" for e in actions(session, "alert.resolved"))
    assert {r.recipient_name for r in closing} == {DUTY_OFFICER, LEADER_ON_DUTY}
    assert "系统告警解除" in closing[0].body and "已补发送达" in closing[0].body


async def test_a_warning_acknowledged_meanwhile_is_not_sent_again(
    rt: tuple[Runtime, Clock], provider: Provider
) -> None:
    runtime, clock = rt
    warnings = await outage(runtime)
    runtime.check_delivery()
    with runtime.sessions() as session:
        lost = unreached(session, warnings)
        # a warning some of whose recipients were not reached …
        phones = runtime.county.people

        def own_phones(alert_id: int) -> set[str]:
            """Phones told only of this alert: none of their messages may go out."""
            mine = {phones[p].phone for a, _, p in lost if a == alert_id}
            return mine - {phones[p].phone for a, _, p in lost if a != alert_id}

        hazards = [
            a for a in sorted({a for a, _, _ in lost}) if session.get_one(Alert, a).kind == "hazard"
        ]
        acked_id = max(hazards, key=lambda a: len(own_phones(a)))
        phones_of_acked = own_phones(acked_id)
    assert phones_of_acked
    # … is acknowledged while the provider is still down
    with runtime.sessions.begin() as session:
        outcome = acknowledge(
            session, alert=session.get_one(Alert, acked_id), person_id=None, actor="test",
            method="cli", note=None, at=clock(),
        )  # fmt: skip
        assert outcome.complete

    provider.up = True
    clock.advance(PROBE)
    for _ in range(4):
        runtime.check_delivery()
        await drain(runtime.worker)

    with runtime.sessions() as session:
        still = unreached(session, warnings)
        skipped = actions(session, "notification.resend_skipped")
        (alert,) = undelivered_alerts(session)
    # its recipients were not called or texted again; everyone else was reached
    assert {a for a, _, _ in still} == {acked_id}
    assert not phones_of_acked & {m["to"] for m in provider.accepted}
    assert skipped and {e.data["alert_state"] for e in skipped} == {"acknowledged"}
    assert alert.state == "resolved" and alert.evidence["skipped"] == len(
        {(a, t, p) for a, t, p in lost if a == acked_id}
    )
