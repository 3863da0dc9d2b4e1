"""A message that cannot go out one way goes out another, and the audit says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from channels.base import Addressing, ChannelDeclaration, Medium, SendResult
from channels.registry import DECLARATIONS
from dispatcher.county import County
from dispatcher.directory import sync_directory
from dispatcher.failover import FailoverPlan
from dispatcher.outbox import DeliveryWorker, record_receipt
from dispatcher.storage.models import Alert, AuditEvent, Notification
from tests.support import Clock, ScriptedChannel

NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)


def setup(sessions: sessionmaker[Session], county: County, channel: str, level: str) -> int:
    """One alert at the first zone and one message to its 防灾责任人 on `channel`."""
    zone = county.zones[0]
    person = next(p for role, p in county.people_of(zone.id) if role == "disaster_prevention")
    with sessions.begin() as session:
        sync_directory(session, county, {z.id: "p0" for z in county.zones}, NOW)
        alert = Alert(
            code="KQ7A", kind="hazard", zone_id=zone.id, hazard="cold_wave", rule_id="r",
            level=level, state="firing", opened_at=NOW, updated_at=NOW,
        )  # fmt: skip
        session.add(alert)
        session.flush()
        row = Notification(
            idempotency_key=f"{alert.id}:new:{person.id}:{channel}", alert_id=alert.id,
            transition="new", person_id=person.id, recipient_name=person.name,
            address=person.phone, channel=channel, body="寒潮黄色预警", status="pending",
            attempts=0, next_attempt_at=NOW, created_at=NOW,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def worker(
    sessions: sessionmaker[Session], clock: Clock, county: County, *channels: ScriptedChannel
) -> DeliveryWorker:
    by_name = {c.name: c for c in channels}
    return DeliveryWorker(
        sessions, by_name, clock, max_attempts=5, backoff_seconds=60, jitter_source=lambda: 0.5,
        ttl_seconds={"yellow": 600, "red": 120},
        on_failed=FailoverPlan(county, frozenset(by_name)),
    )  # fmt: skip


def rows(sessions: sessionmaker[Session]) -> list[Notification]:
    with sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def actions(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


async def test_a_rejected_sms_becomes_a_voice_call_to_the_same_person(
    sessions: sessionmaker[Session], county: County
) -> None:
    first = setup(sessions, county, "twilio_sms", "yellow")
    sms = ScriptedChannel(SendResult.permanent("not a mobile", "21614"), name="twilio_sms")
    voice = ScriptedChannel(name="twilio_voice")
    w = worker(sessions, Clock(NOW), county, sms, voice)

    await w.run_once()  # the SMS fails for good
    await w.run_once()  # the call goes out

    failed, call = rows(sessions)
    assert (failed.id, failed.status) == (first, "failed")
    assert (call.channel, call.person_id, call.address, call.failover_of_id, call.status) == (
        "twilio_voice", failed.person_id, failed.address, first, "sent",
    )  # fmt: skip
    assert voice.sent[0].body == "寒潮黄色预警"
    assert "notification.failover" in actions(sessions)


async def test_a_voice_call_that_fails_again_does_not_loop_back_forever(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "twilio_sms", "yellow")
    sms = ScriptedChannel(SendResult.permanent("blocked", "21610"), name="twilio_sms")
    voice = ScriptedChannel(SendResult.permanent("busy for good", "13224"), name="twilio_voice")
    w = worker(sessions, Clock(NOW), county, sms, voice)

    for _ in range(4):
        await w.run_once()

    assert [(r.channel, r.status) for r in rows(sessions)] == [
        ("twilio_sms", "failed"),
        ("twilio_voice", "failed"),
    ]
    assert actions(sessions).count("notification.undeliverable") == 1


async def test_retries_stop_when_the_time_to_live_runs_out_and_the_message_fails_over(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "twilio_sms", "red")  # red: 120 s to live
    clock = Clock(NOW)
    sms = ScriptedChannel(*[SendResult.retryable("HTTP 503")] * 5, name="twilio_sms")
    voice = ScriptedChannel(name="twilio_voice")
    w = worker(sessions, clock, county, sms, voice)

    await w.run_once()  # 503: retry, but the next try is capped at the expiry
    [row] = rows(sessions)
    assert row.next_attempt_at == NOW + timedelta(seconds=60)
    clock.advance(60)
    await w.run_once()  # 503 again: next try would pass the TTL, so it comes at 120 s
    assert rows(sessions)[0].next_attempt_at == NOW + timedelta(seconds=120)
    clock.advance(60)
    await w.run_once()  # 503 at the TTL: failed, over to voice
    failed, call = rows(sessions)
    assert failed.status == "failed" and "time-to-live" in (failed.last_error or "")
    assert call.channel == "twilio_voice" and call.status == "pending"


async def test_an_undelivered_report_from_the_provider_fails_over(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "twilio_sms", "yellow")
    sms = ScriptedChannel(name="twilio_sms")
    w = worker(sessions, Clock(NOW), county, sms, ScriptedChannel(name="twilio_voice"))
    await w.run_once()
    with sessions.begin() as session:
        record_receipt(
            session, provider_id="SM1", status="undelivered", error_code="30003",
            payload={}, at=NOW, on_failed=FailoverPlan(county, {"twilio_sms", "twilio_voice"}),
        )  # fmt: skip
    sent, call = rows(sessions)
    assert (sent.status, sent.error_code) == ("undelivered", "30003")
    assert (call.channel, call.failover_of_id) == ("twilio_voice", sent.id)


async def test_a_broadcast_gateway_that_is_down_becomes_an_sms_to_the_zones_responsible_person(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "broadcast", "yellow")
    gateway = ScriptedChannel(SendResult.permanent("gateway refused the terminal group"),
                              name="broadcast")  # fmt: skip
    w = worker(sessions, Clock(NOW), county, gateway, ScriptedChannel(name="twilio_sms"))
    await w.run_once()
    _, *sms = rows(sessions)
    zone = county.zones[0].id
    responsible = {p.id for role, p in county.people_of(zone) if role == "disaster_prevention"}
    assert {r.person_id for r in sms} == responsible
    assert {r.channel for r in sms} == {"twilio_sms"}


async def test_a_blocked_im_robot_becomes_an_sms_to_the_duty_officers(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "dingtalk", "yellow")
    robot = ScriptedChannel(SendResult.permanent("robot blocked", "130101"), name="dingtalk")
    w = worker(sessions, Clock(NOW), county, robot, ScriptedChannel(name="twilio_sms"))
    await w.run_once()
    _, *sms = rows(sessions)
    assert {r.person_id for r in sms} == {p.id for p in county.duty_officers()}


async def test_with_nowhere_left_to_go_the_failure_is_recorded_loudly(
    sessions: sessionmaker[Session], county: County
) -> None:
    setup(sessions, county, "twilio_sms", "yellow")
    sms = ScriptedChannel(SendResult.permanent("invalid number", "21211"), name="twilio_sms")
    w = worker(sessions, Clock(NOW), county, sms)  # no voice channel configured
    await w.run_once()
    assert [r.status for r in rows(sessions)] == ["failed"]
    assert actions(sessions)[-1] == "notification.undeliverable"


# --- the route follows the failed channel's declaration -------------------------------

ALL_CHANNELS = frozenset(DECLARATIONS)


def failed_row(county: County, channel: str) -> tuple[Notification, Alert]:
    """A failed row on `channel` to the first zone's 防灾责任人, and its alert (not stored)."""
    zone = county.zones[0]
    person = next(p for role, p in county.people_of(zone.id) if role == "disaster_prevention")
    alert = Alert(id=1, code="KQ7A", kind="hazard", zone_id=zone.id, hazard="cold_wave",
                  rule_id="r", level="yellow", state="firing")  # fmt: skip
    row = Notification(alert_id=1, transition="new", person_id=person.id, channel=channel,
                       address=person.phone, recipient_name=person.name, body="预警")  # fmt: skip
    return row, alert


@pytest.mark.parametrize(
    ("failed", "next_channel", "who"),
    [
        ("twilio_sms", "twilio_voice", "same"),
        ("twilio_voice", "twilio_sms", "same"),
        ("broadcast", "twilio_sms", "responsible"),
        ("wecom", "twilio_sms", "duty"),
        ("dingtalk", "twilio_sms", "duty"),
        ("feishu", "twilio_sms", "duty"),
        ("webhook", "twilio_sms", "duty"),
    ],
)
def test_each_declared_channel_fails_over_by_what_it_addresses(
    county: County, failed: str, next_channel: str, who: str
) -> None:
    row, alert = failed_row(county, failed)
    expected = {
        "same": {row.person_id},
        "responsible": {
            p.id
            for role, p in county.people_of(county.zones[0].id)
            if role == "disaster_prevention"
        },
        "duty": {p.id for p in county.duty_officers()},
    }[who]
    targets = FailoverPlan(county, ALL_CHANNELS).targets(row, alert)
    assert {t.channel for t in targets} == {next_channel}
    assert {t.person_id for t in targets} == expected


def test_the_console_is_never_the_other_way_to_reach_someone(county: County) -> None:
    # it prints, reaching nobody: a failover to it would only look delivered
    row, alert = failed_row(county, "wecom")
    assert FailoverPlan(county, {"console", "wecom"}).targets(row, alert) == []
    assert FailoverPlan(county, ALL_CHANNELS).sms == "twilio_sms"


def test_a_new_channel_fails_over_by_its_declaration_alone(county: County) -> None:
    pager = ChannelDeclaration("pager", "寻呼", Medium.IM, Addressing.ROBOT, carries_links=False)
    plan = FailoverPlan(
        county, {"pager", "twilio_sms"}, declarations={**DECLARATIONS, "pager": pager}
    )
    row, alert = failed_row(county, "pager")
    targets = plan.targets(row, alert)
    assert {(t.person_id, t.channel) for t in targets} == {
        (p.id, "twilio_sms") for p in county.duty_officers()
    }


def test_a_channel_nothing_declares_has_no_failover(county: County) -> None:
    row, alert = failed_row(county, "carrier_pigeon")
    assert FailoverPlan(county, ALL_CHANNELS | {"carrier_pigeon"}).targets(row, alert) == []
