"""A duty officer gets one digest for a burst of warnings; zone people get their own."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from channels.sms_text import sms_segments
from dispatcher.county import County
from dispatcher.digest import DIGEST_MAX_SEGMENTS, DigestPolicy
from dispatcher.directory import sync_directory
from dispatcher.outbox import DeliveryWorker
from dispatcher.storage.models import Alert, Notification
from tests.support import Clock, ScriptedChannel

NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)


def burst(sessions: sessionmaker[Session], county: County, zones: int) -> tuple[str, list[str]]:
    """A yellow cold wave at `zones` zones: each tells its 防灾责任人 and the duty officer."""
    officer = county.duty_officers()[0]
    responsible: list[str] = []
    with sessions.begin() as session:
        sync_directory(session, county, {z.id: "p0" for z in county.zones}, NOW)
        for index, zone in enumerate(county.zones[:zones]):
            alert = Alert(
                code=f"C{index:03d}", kind="hazard", zone_id=zone.id, hazard="cold_wave",
                rule_id="r", title="寒潮", level="yellow", state="firing", opened_at=NOW,
                updated_at=NOW,
            )  # fmt: skip
            session.add(alert)
            session.flush()
            person = next(p for r, p in county.people_of(zone.id) if r == "disaster_prevention")
            responsible.append(person.id)
            for who in (person, officer):
                session.add(
                    Notification(
                        idempotency_key=f"{alert.id}:new:{who.id}:console",
                        alert_id=alert.id,
                        transition="new",
                        person_id=who.id,
                        recipient_name=who.name,
                        address=who.phone,
                        channel="console",
                        body=f"【柳林县自然资源局】寒潮黄色预警：{zone.name}（编码{alert.code}）",
                        status="pending",
                        attempts=0,
                        next_attempt_at=NOW,
                        created_at=NOW,
                    )
                )
    return officer.id, responsible


def worker(
    sessions: sessionmaker[Session], clock: Clock, channel: ScriptedChannel
) -> DeliveryWorker:
    return DeliveryWorker(
        sessions, {"console": channel}, clock, concurrency=50,
        digest=DigestPolicy(60, "柳林县自然资源局"),
    )  # fmt: skip


async def test_the_duty_officer_gets_one_digest_and_each_zone_person_their_own_message(
    sessions: sessionmaker[Session], county: County
) -> None:
    officer, responsible = burst(sessions, county, 12)
    clock = Clock(NOW)
    channel = ScriptedChannel(name="console")
    w = worker(sessions, clock, channel)

    await w.run_once()  # at once: the zone people; the duty officer's messages wait
    officer_phone = county.people[officer].phone
    assert [m.address for m in channel.sent if m.address == officer_phone] == []
    assert {m.address for m in channel.sent} == {county.people[p].phone for p in responsible}

    clock.advance(60)  # the digest window has passed
    await w.run_once()
    digests = [m for m in channel.sent if m.address == officer_phone]
    assert len(digests) == 1
    text = digests[0].body
    assert text.startswith("【柳林县自然资源局】预警汇总（12条）：寒潮黄色预警12处。")
    assert county.zones[0].name in text
    assert sms_segments(text) <= DIGEST_MAX_SEGMENTS

    with sessions() as session:
        rows = session.scalars(select(Notification).where(Notification.person_id == officer)).all()
    assert {r.status for r in rows} == {"sent"}
    assert len({r.provider_id for r in rows}) == 1  # they all went out as that one message


async def test_a_lone_message_to_the_duty_officer_goes_out_unchanged_after_the_window(
    sessions: sessionmaker[Session], county: County
) -> None:
    officer, _ = burst(sessions, county, 1)
    clock = Clock(NOW)
    channel = ScriptedChannel(name="console")
    w = worker(sessions, clock, channel)
    await w.run_once()
    clock.advance(60)
    await w.run_once()
    phone = county.people[officer].phone
    [alone] = [m for m in channel.sent if m.address == phone]
    assert alone.body.startswith("【柳林县自然资源局】寒潮黄色预警：")


async def test_a_digest_that_fails_retries_all_of_its_rows_together(
    sessions: sessionmaker[Session], county: County
) -> None:
    from channels.base import SendResult

    officer, responsible = burst(sessions, county, 3)
    clock = Clock(NOW)
    channel = ScriptedChannel(
        *[SendResult.ok(f"SMz{i}") for i in range(len(set(responsible)))],
        SendResult.retryable("HTTP 503"),
        name="console",
    )
    w = worker(sessions, clock, channel)
    await w.run_once()
    clock.advance(60)
    await w.run_once()
    with sessions() as session:
        rows = session.scalars(select(Notification).where(Notification.person_id == officer)).all()
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
