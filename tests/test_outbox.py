"""The outbox worker: claim due rows, send them, record what happened — durably.

Every test runs on SQLite and PostgreSQL (the `sessions` fixture) against a real
database. The only double is at the channel edge: `ScriptedChannel` records what
it was asked to send and answers with scripted `SendResult`s.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from channels.base import Channel, ChannelLimits, OutgoingMessage, SendResult
from dispatcher import audit
from dispatcher.outbox import Claimed, DeliveryWorker, backoff_delay, record_receipt
from dispatcher.settings import Settings
from dispatcher.storage.models import (
    Alert,
    AuditEvent,
    Notification,
    Person,
    Receipt,
    Zone,
)
from tests.support import Clock, MonotonicClock, ScriptedChannel

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
CALLBACK = "https://yujing.example.cn/webhooks/twilio/status"


# --- test doubles and helpers ------------------------------------------------------


class GatedChannel(ScriptedChannel):
    """A channel whose send waits, mid-flight, until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.started.set()
        await self.gate.wait()
        return await super().send(message)


class MidSendChannel(ScriptedChannel):
    """A channel that runs `during` while the message is on the wire, then answers."""

    def __init__(self, *results: SendResult, during: Callable[[], Awaitable[None]]) -> None:
        super().__init__(*results)
        self.during = during

    async def send(self, message: OutgoingMessage) -> SendResult:
        await self.during()
        return await super().send(message)


class RaisingChannel(ScriptedChannel):
    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        raise ConnectionResetError("peer went away")


class CountingChannel(ScriptedChannel):
    """Tracks how many sends are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.02)
        self.in_flight -= 1
        return await super().send(message)


def add_notifications(
    sessions: sessionmaker[Session], count: int = 1, *, channel: str = "sms", due: datetime = NOW
) -> list[int]:
    """Insert `count` pending outbox rows (with the zone, person and alert they need)."""
    with sessions.begin() as session:
        if session.get(Zone, "Z1") is None:
            session.add(
                Zone(
                    id="Z1",
                    name="王家沟滑坡",
                    kind="landslide",
                    township="柳林镇",
                    latitude=37.43,
                    longitude=110.89,
                    risk_level="high",
                    point_id="P1",
                    updated_at=NOW,
                )
            )
            session.add(
                Person(id="p1", name="张三", phone="+8613800000001", duty_role=None, updated_at=NOW)
            )
            session.flush()  # the alert refers to the zone
            session.add(
                Alert(
                    code="A1",
                    zone_id="Z1",
                    hazard="road_icing",
                    rule_id="icing",
                    level="yellow",
                    state="firing",
                    opened_at=NOW,
                    updated_at=NOW,
                )
            )
            session.flush()
        alert_id = session.scalars(select(Alert.id).where(Alert.code == "A1")).one()
        start = session.scalar(select(func.count()).select_from(Notification)) or 0
        rows = [
            Notification(
                idempotency_key=f"{alert_id}:new:p{start + i}:{channel}",
                alert_id=alert_id,
                transition="new",
                person_id="p1",
                recipient_name="张三",
                address="+8613800000001",
                channel=channel,
                body="【预警】王家沟滑坡 道路结冰黄色预警",
                next_attempt_at=due,
                created_at=due,
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def make_worker(
    sessions: sessionmaker[Session], clock: Clock, *channels: Channel, **overrides: Any
) -> DeliveryWorker:
    options: dict[str, Any] = {
        "concurrency": 4,
        "max_attempts": 3,
        "backoff_seconds": 10.0,
        "backoff_max_seconds": 600.0,
        "lease_seconds": 60.0,
        "poll_seconds": 0.05,
        "status_callback_url": CALLBACK,
        "jitter_source": lambda: 0.5,  # no spread: delays are exact
    }
    options.update(overrides)
    return DeliveryWorker(sessions, {c.name: c for c in channels}, clock, **options)


def row(sessions: sessionmaker[Session], notification_id: int) -> Notification:
    with sessions() as session:
        found = session.get(Notification, notification_id)
        assert found is not None
        return found


def audit_trail(sessions: sessionmaker[Session], notification_id: int) -> list[AuditEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject == f"notification:{notification_id}")
                .order_by(AuditEvent.id)
            )
        )


def receive(
    sessions: sessionmaker[Session], provider_id: str, status: str, error_code: str | None = None
) -> Notification | None:
    with sessions.begin() as session:
        return record_receipt(
            session,
            provider_id=provider_id,
            status=status,
            error_code=error_code,
            payload={"MessageSid": provider_id, "MessageStatus": status},
            at=NOW + timedelta(seconds=30),
        )


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# --- sending -----------------------------------------------------------------------


async def test_a_due_pending_row_is_sent_and_marked_sent_with_the_provider_id(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel(SendResult.ok("SM0001"))
    worker = make_worker(sessions, Clock(NOW), channel)

    processed = await worker.run_once()

    assert processed == 1
    sent = row(sessions, nid)
    assert (sent.status, sent.provider_id, sent.attempts) == ("sent", "SM0001", 1)
    assert sent.sent_at == NOW
    assert sent.lease_until is None
    [event] = audit_trail(sessions, nid)
    assert event.action == "notification.sent"
    assert event.data["channel"] == "sms"
    assert event.data["attempt"] == 1


async def test_the_channel_gets_the_stored_message_with_its_key_id_and_callback(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel()

    await make_worker(sessions, Clock(NOW), channel).run_once()

    stored = row(sessions, nid)
    assert channel.sent == [
        OutgoingMessage(
            idempotency_key=stored.idempotency_key,
            address="+8613800000001",
            body="【预警】王家沟滑坡 道路结冰黄色预警",
            recipient_name="张三",
            status_callback_url=CALLBACK,
            notification_id=nid,
        )
    ]


async def test_a_row_not_yet_due_is_left_alone(sessions: sessionmaker[Session]) -> None:
    [nid] = add_notifications(sessions, due=NOW + timedelta(seconds=1))
    channel = ScriptedChannel()

    processed = await make_worker(sessions, Clock(NOW), channel).run_once()

    assert processed == 0
    assert channel.sent == []
    assert row(sessions, nid).status == "pending"


async def test_due_rows_are_claimed_oldest_first(sessions: sessionmaker[Session]) -> None:
    [late] = add_notifications(sessions, due=NOW - timedelta(seconds=10))
    [early] = add_notifications(sessions, due=NOW - timedelta(seconds=20))
    worker = make_worker(sessions, Clock(NOW), ScriptedChannel())

    claimed = worker.claim(2)

    assert [c.id for c in claimed] == [early, late]


# --- retries -----------------------------------------------------------------------


async def test_a_retryable_failure_puts_the_row_back_with_a_doubling_backoff(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    channel = ScriptedChannel(
        SendResult.retryable("HTTP 503 from Twilio", error_code="503"),
        SendResult.retryable("HTTP 503 from Twilio", error_code="503"),
    )
    worker = make_worker(sessions, clock, channel, backoff_seconds=10.0)

    await worker.run_once()

    first = row(sessions, nid)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.next_attempt_at == NOW + timedelta(seconds=10)
    assert (first.error_code, first.last_error) == ("503", "HTTP 503 from Twilio")
    assert first.lease_until is None

    clock.advance(9)
    assert await worker.run_once() == 0  # not due yet

    clock.advance(1)
    await worker.run_once()

    second = row(sessions, nid)
    assert (second.status, second.attempts) == ("pending", 2)
    assert second.next_attempt_at == clock.now + timedelta(seconds=20)
    assert [e.action for e in audit_trail(sessions, nid)] == [
        "notification.retry",
        "notification.retry",
    ]


def test_backoff_doubles_per_attempt_and_stops_at_the_cap() -> None:
    delays = [backoff_delay(n, base=5.0, cap=600.0, jitter=0.5) for n in range(1, 10)]

    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]


def test_backoff_jitter_spreads_the_delay_by_twenty_percent_either_way() -> None:
    assert backoff_delay(3, base=10.0, cap=600.0, jitter=0.0) == pytest.approx(32.0)
    assert backoff_delay(3, base=10.0, cap=600.0, jitter=0.5) == pytest.approx(40.0)
    assert backoff_delay(3, base=10.0, cap=600.0, jitter=0.999999) == pytest.approx(48.0, abs=1e-3)


def test_backoff_never_exceeds_the_cap_even_with_jitter_or_huge_attempt_counts() -> None:
    assert backoff_delay(8, base=5.0, cap=600.0, jitter=0.999) == 600.0
    assert backoff_delay(10_000, base=5.0, cap=600.0, jitter=0.5) == 600.0


async def test_the_jitter_source_spreads_the_next_attempt(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel(SendResult.retryable("timeout"))
    worker = make_worker(
        sessions, Clock(NOW), channel, backoff_seconds=10.0, jitter_source=lambda: 0.0
    )

    await worker.run_once()

    assert row(sessions, nid).next_attempt_at == NOW + timedelta(seconds=8)


async def test_retry_after_from_the_provider_wins_when_longer_than_the_backoff(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel(SendResult.retryable("HTTP 429", error_code="429", retry_after=300))
    worker = make_worker(sessions, Clock(NOW), channel, backoff_seconds=10.0)

    await worker.run_once()

    assert row(sessions, nid).next_attempt_at == NOW + timedelta(seconds=300)


async def test_retry_after_shorter_than_the_backoff_does_not_shorten_it(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel(SendResult.retryable("HTTP 429", error_code="429", retry_after=1))
    worker = make_worker(sessions, Clock(NOW), channel, backoff_seconds=10.0)

    await worker.run_once()

    assert row(sessions, nid).next_attempt_at == NOW + timedelta(seconds=10)


async def test_the_worker_gives_up_after_max_attempts_and_records_why(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    channel = ScriptedChannel(*[SendResult.retryable("HTTP 503", error_code="503")] * 3)
    worker = make_worker(sessions, clock, channel, max_attempts=3, backoff_max_seconds=60.0)

    for _ in range(3):
        await worker.run_once()
        clock.advance(60)
    assert await worker.run_once() == 0

    failed = row(sessions, nid)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.last_error == "gave up after 3 attempts: HTTP 503"
    assert failed.error_code == "503"
    assert failed.finished_at == NOW + timedelta(seconds=120)
    assert len(channel.sent) == 3
    assert [e.action for e in audit_trail(sessions, nid)][-1] == "notification.failed"


async def test_a_permanent_failure_fails_the_row_with_the_error_code_and_is_not_retried(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    channel = ScriptedChannel(
        SendResult.permanent("The 'To' number is not a valid phone number", error_code="21211")
    )
    worker = make_worker(sessions, clock, channel)

    await worker.run_once()
    clock.advance(3600)
    await worker.run_once()

    failed = row(sessions, nid)
    assert (failed.status, failed.error_code) == ("failed", "21211")
    assert failed.last_error == "The 'To' number is not a valid phone number"
    assert failed.finished_at == NOW
    assert len(channel.sent) == 1
    [event] = audit_trail(sessions, nid)
    assert (event.action, event.data["error_code"]) == ("notification.failed", "21211")
    assert event.data["reason"] == "The 'To' number is not a valid phone number"


async def test_an_unknown_channel_fails_the_row_naming_the_channel(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions, channel="wecom")
    worker = make_worker(sessions, Clock(NOW), ScriptedChannel(name="sms"))

    await worker.run_once()

    failed = row(sessions, nid)
    assert (failed.status, failed.error_code) == ("failed", "unknown_channel")
    assert failed.last_error is not None
    assert "'wecom' is not configured" in failed.last_error
    assert "configured: sms" in failed.last_error


async def test_a_channel_that_raises_is_retried_not_lost(sessions: sessionmaker[Session]) -> None:
    [nid] = add_notifications(sessions)
    worker = make_worker(sessions, Clock(NOW), RaisingChannel())

    await worker.run_once()

    retried = row(sessions, nid)
    assert (retried.status, retried.error_code) == ("pending", "channel_error")
    assert retried.last_error == "sms raised ConnectionResetError: peer went away"


# --- leases, restarts and several workers --------------------------------------------


async def test_a_row_left_sending_by_a_crashed_worker_is_claimed_again_after_its_lease(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    crashed = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)
    crashed.claim(1)  # … and never delivers
    restarted = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)

    clock.advance(61)
    [claimed] = restarted.claim(10)

    assert (claimed.id, claimed.attempt) == (nid, 2)
    assert claimed.lease_until == clock.now + timedelta(seconds=60)


async def test_a_row_sending_under_a_live_lease_is_not_claimed(
    sessions: sessionmaker[Session],
) -> None:
    add_notifications(sessions)
    clock = Clock(NOW)
    busy = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)
    busy.claim(1)
    other = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)

    clock.advance(59)

    assert other.claim(10) == []


async def test_a_row_that_waited_out_its_lease_before_sending_is_not_sent_but_retried(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    channel = ScriptedChannel()
    worker = make_worker(sessions, clock, channel, lease_seconds=60.0)
    [claimed] = worker.claim(1)
    clock.advance(59.5)  # queued behind a rate limit nearly all of its lease

    await worker.deliver(claimed)

    assert channel.sent == []  # another worker may claim it any moment: not sent twice
    waited = row(sessions, nid)
    assert (waited.status, waited.error_code) == ("pending", "lease_used_up")
    assert "lease" in (waited.last_error or "")


async def test_an_expired_lease_on_the_last_allowed_attempt_fails_the_row(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    worker = make_worker(sessions, clock, ScriptedChannel(), max_attempts=1, lease_seconds=60)
    worker.claim(1)

    clock.advance(61)

    assert worker.claim(10) == []
    failed = row(sessions, nid)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "lease_expired", 1)
    assert failed.last_error is not None
    assert failed.last_error.startswith("gave up after 1 attempts")


def test_two_workers_claiming_at_once_never_get_the_same_row(
    sessions: sessionmaker[Session],
) -> None:
    ids = add_notifications(sessions, 60)
    clock = Clock(NOW)
    workers = [make_worker(sessions, clock, ScriptedChannel()) for _ in range(2)]
    start = threading.Barrier(len(workers))

    def claim_until_empty(worker: DeliveryWorker) -> list[Claimed]:
        start.wait()
        mine: list[Claimed] = []
        while batch := worker.claim(3):
            mine.extend(batch)
        return mine

    with ThreadPoolExecutor(len(workers)) as pool:
        results = list(pool.map(claim_until_empty, workers))

    claimed_ids = [c.id for claims in results for c in claims]
    assert len(claimed_ids) == len(set(claimed_ids)), "a row was claimed twice"
    assert sorted(claimed_ids) == ids


# row locks are PostgreSQL's; SQLite serialises whole transactions
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_row_another_instance_is_claiming_is_skipped_not_waited_for(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    locked, *free = add_notifications(sessions, 3)
    worker = make_worker(sessions, Clock(NOW), ScriptedChannel())

    pool = ThreadPoolExecutor(1)
    try:
        with engine.connect() as other_instance, other_instance.begin():
            other_instance.execute(
                select(Notification.id).where(Notification.id == locked).with_for_update()
            )
            claiming = pool.submit(worker.claim, 10)
            try:
                claimed = claiming.result(timeout=5)
            except TimeoutError:
                # leaving this block ends the other transaction, which frees the claim
                pytest.fail("the claim waited for another instance's row lock")
    finally:
        pool.shutdown()

    assert [c.id for c in claimed] == free


async def test_a_stale_workers_outcome_does_not_overwrite_the_newer_attempt(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    fresh = make_worker(sessions, clock, ScriptedChannel(SendResult.ok("SM-new")))
    fresh_claims: list[Claimed] = []

    async def lease_runs_out() -> None:  # mid-send; another worker claims the row again
        clock.advance(61)
        fresh_claims.extend(fresh.claim(1))

    slow = make_worker(
        sessions, clock, MidSendChannel(SendResult.ok("SM-late"), during=lease_runs_out)
    )
    [stale_claim] = slow.claim(1)

    await slow.deliver(stale_claim)

    still = row(sessions, nid)
    assert (still.status, still.attempts, still.provider_id) == ("sending", 2, None)

    await fresh.deliver(*fresh_claims)

    done = row(sessions, nid)
    assert (done.status, done.provider_id) == ("sent", "SM-new")
    stale_event, sent_event = audit_trail(sessions, nid)
    assert stale_event.action == "notification.stale"
    assert (stale_event.data["attempt"], stale_event.data["provider_id"]) == (1, "SM-late")
    assert (sent_event.action, sent_event.data["attempt"]) == ("notification.sent", 2)


async def test_a_stale_failure_does_not_fail_a_row_that_was_sent_meanwhile(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    fresh = make_worker(sessions, clock, ScriptedChannel(SendResult.ok("SM-new")))

    async def another_worker_sends_it() -> None:  # while this send is still on the wire
        clock.advance(61)
        await fresh.deliver(*fresh.claim(1))

    slow = make_worker(
        sessions,
        clock,
        MidSendChannel(SendResult.permanent("bad", "21211"), during=another_worker_sends_it),
    )

    await slow.deliver(*slow.claim(1))

    done = row(sessions, nid)
    assert (done.status, done.provider_id, done.error_code) == ("sent", "SM-new", None)


async def test_every_outcome_is_appended_to_an_intact_audit_chain(
    sessions: sessionmaker[Session],
) -> None:
    add_notifications(sessions, 3)
    channel = ScriptedChannel(
        SendResult.ok("SM1"), SendResult.retryable("503"), SendResult.permanent("bad", "21211")
    )
    worker = make_worker(sessions, Clock(NOW), channel, concurrency=1)

    for _ in range(3):
        await worker.run_once()

    with sessions() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["notification.sent", "notification.retry", "notification.failed"]
        assert audit.verify(session) == []


# --- receipts ----------------------------------------------------------------------


async def sent_notification(sessions: sessionmaker[Session], provider_id: str = "SM42") -> int:
    [nid] = add_notifications(sessions)
    await make_worker(sessions, Clock(NOW), ScriptedChannel(SendResult.ok(provider_id))).run_once()
    return nid


async def test_a_delivered_receipt_moves_a_sent_row_to_delivered(
    sessions: sessionmaker[Session],
) -> None:
    nid = await sent_notification(sessions, "SM42")

    found = receive(sessions, "SM42", "delivered")

    assert found is not None and found.id == nid
    delivered = row(sessions, nid)
    assert (delivered.status, delivered.finished_at) == ("delivered", NOW + timedelta(seconds=30))
    with sessions() as session:
        [receipt] = session.scalars(select(Receipt)).all()
        assert (receipt.notification_id, receipt.status) == (nid, "delivered")
        assert receipt.payload == {"MessageSid": "SM42", "MessageStatus": "delivered"}
    receipt_event = audit_trail(sessions, nid)[-1]
    assert receipt_event.action == "notification.receipt"
    assert (receipt_event.data["from"], receipt_event.data["to"]) == ("sent", "delivered")


async def test_an_undelivered_receipt_records_the_carrier_error(
    sessions: sessionmaker[Session],
) -> None:
    nid = await sent_notification(sessions, "SM42")

    receive(sessions, "SM42", "undelivered", error_code="30005")

    undelivered = row(sessions, nid)
    assert (undelivered.status, undelivered.error_code) == ("undelivered", "30005")
    assert undelivered.last_error == "provider reported undelivered (error 30005)"


async def test_a_late_sent_receipt_does_not_move_a_delivered_row_back(
    sessions: sessionmaker[Session],
) -> None:
    nid = await sent_notification(sessions, "SM42")
    receive(sessions, "SM42", "delivered")

    receive(sessions, "SM42", "sent")

    assert row(sessions, nid).status == "delivered"
    with sessions() as session:
        assert session.scalars(select(Receipt.status).order_by(Receipt.id)).all() == [
            "delivered",
            "sent",
        ]


async def test_the_first_final_receipt_wins_over_a_conflicting_later_one(
    sessions: sessionmaker[Session],
) -> None:
    nid = await sent_notification(sessions, "SM42")
    receive(sessions, "SM42", "delivered")

    receive(sessions, "SM42", "failed", error_code="30008")

    kept = row(sessions, nid)
    assert (kept.status, kept.error_code) == ("delivered", None)


async def test_a_progress_receipt_leaves_a_sent_row_sent(sessions: sessionmaker[Session]) -> None:
    nid = await sent_notification(sessions, "SM42")

    receive(sessions, "SM42", "queued")

    assert row(sessions, nid).status == "sent"


async def test_a_receipt_for_an_unknown_provider_id_is_kept_without_a_notification(
    sessions: sessionmaker[Session],
) -> None:
    found = receive(sessions, "SMunknown", "delivered")

    assert found is None
    with sessions() as session:
        [receipt] = session.scalars(select(Receipt)).all()
        assert (receipt.provider_id, receipt.notification_id) == ("SMunknown", None)
        [event] = session.scalars(select(AuditEvent)).all()
        assert (event.action, event.subject) == (
            "notification.receipt",
            "provider_message:SMunknown",
        )


async def test_a_receipt_that_beats_the_outcome_to_the_database_is_applied_when_sent(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    worker = make_worker(sessions, Clock(NOW), ScriptedChannel(SendResult.ok("SM42")))
    [claimed] = worker.claim(1)
    receive(sessions, "SM42", "delivered")  # the provider called back first

    await worker.deliver(claimed)

    delivered = row(sessions, nid)
    assert (delivered.status, delivered.provider_id) == ("delivered", "SM42")
    with sessions() as session:
        assert session.scalars(select(Receipt.notification_id)).all() == [nid]


async def test_early_receipts_for_several_rows_of_one_batch_are_all_applied(
    sessions: sessionmaker[Session],
) -> None:
    ids = add_notifications(sessions, 3)
    channel = ScriptedChannel(SendResult.ok("SMa"), SendResult.ok("SMb"), SendResult.ok("SMc"))
    worker = make_worker(sessions, Clock(NOW), channel, concurrency=3)
    claimed = worker.claim(3)
    receive(sessions, "SMa", "delivered")
    receive(sessions, "SMc", "undelivered")

    # the three outcomes are recorded together, in one transaction
    await asyncio.gather(*(worker.deliver(c) for c in claimed))

    assert [row(sessions, nid).status for nid in ids] == ["delivered", "sent", "undelivered"]
    with sessions() as session:
        linked = session.execute(
            select(Receipt.provider_id, Receipt.notification_id).order_by(Receipt.id)
        ).all()
        assert [tuple(r) for r in linked] == [("SMa", ids[0]), ("SMc", ids[2])]
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        # the receipts as they came in, then the sends, then the receipts linked to them
        assert (
            actions
            == ["notification.receipt"] * 2
            + ["notification.sent"] * 3
            + ["notification.receipt"] * 2
        )
        assert audit.verify(session) == []


# --- running -----------------------------------------------------------------------


async def test_stop_lets_the_send_in_flight_finish_and_be_recorded(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    channel = GatedChannel()
    worker = make_worker(sessions, Clock(NOW), channel)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(channel.started.wait(), timeout=5)

    stop.set()
    await asyncio.sleep(0.1)
    assert not running.done(), "run() returned with a send still in flight"
    channel.gate.set()
    await asyncio.wait_for(running, timeout=5)

    assert row(sessions, nid).status == "sent"


async def test_run_returns_promptly_when_stopped_while_idle(
    sessions: sessionmaker[Session],
) -> None:
    worker = make_worker(sessions, Clock(NOW), ScriptedChannel(), poll_seconds=60)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.05)

    stop.set()

    await asyncio.wait_for(running, timeout=1)


async def test_wake_starts_delivery_without_waiting_for_the_poll(
    sessions: sessionmaker[Session],
) -> None:
    channel = ScriptedChannel()
    worker = make_worker(sessions, Clock(NOW), channel, poll_seconds=60)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.05)  # idle: nothing was due

    [nid] = add_notifications(sessions)
    worker.wake()

    await eventually(lambda: row(sessions, nid).status == "sent", timeout=2)
    stop.set()
    await asyncio.wait_for(running, timeout=5)


async def test_run_delivers_everything_due_with_at_most_concurrency_sends_in_flight(
    sessions: sessionmaker[Session],
) -> None:
    ids = add_notifications(sessions, 7)
    channel = CountingChannel()
    worker = make_worker(sessions, Clock(NOW), channel, concurrency=2, poll_seconds=60)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    await eventually(lambda: len(channel.sent) == 7)
    stop.set()
    await asyncio.wait_for(running, timeout=5)

    assert channel.most_in_flight == 2
    assert {row(sessions, i).status for i in ids} == {"sent"}


async def test_run_until_idle_also_sends_what_earlier_outcomes_made_due(
    sessions: sessionmaker[Session],
) -> None:
    # given a row whose first send fails with a retry due at once
    [nid] = add_notifications(sessions)
    channel = ScriptedChannel(SendResult.retryable("HTTP 503", error_code="503"))
    worker = make_worker(sessions, Clock(NOW), channel, backoff_seconds=0.0, poll_seconds=60)

    # when the worker runs until idle
    sent = await asyncio.wait_for(worker.run_until_idle(), timeout=5)

    # then it sent the retry too, and returned without waiting for a poll
    assert sent == 2
    assert (row(sessions, nid).status, len(channel.sent)) == ("sent", 2)


async def test_a_channel_rate_limit_spaces_its_sends(sessions: sessionmaker[Session]) -> None:
    add_notifications(sessions, 3)
    channel = ScriptedChannel(limits=ChannelLimits(per_second=20))
    worker = make_worker(sessions, Clock(NOW), channel)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await worker.run_once()

    assert len(channel.sent) == 3
    assert loop.time() - started >= 2 / 20 * 0.9  # three sends: two gaps of 1/20 s


async def test_a_robot_waiting_for_its_rate_limit_does_not_hold_up_other_channels(
    sessions: sessionmaker[Session],
) -> None:
    # given ten messages queued first for one robot that takes one every 3 s
    # (DingTalk: 20 a minute), and then one SMS
    robot = ScriptedChannel(name="robot", limits=ChannelLimits(per_minute=20, rate_scope="address"))
    sms = ScriptedChannel(name="sms")
    robot_ids = add_notifications(sessions, 10, channel="robot", due=NOW - timedelta(minutes=1))
    [sms_id] = add_notifications(sessions, 1, channel="sms")
    worker = make_worker(sessions, Clock(NOW), robot, sms, concurrency=4)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    # then the SMS goes out at once, not after the robot's 27 s of waiting
    await eventually(lambda: row(sessions, sms_id).status == "sent", timeout=1.5)
    # and the robot's rows wait their turn in the outbox, not leased to a sender
    assert len(robot.sent) == 1
    statuses = [row(sessions, i).status for i in robot_ids]
    assert statuses.count("sent") == 1
    assert statuses.count("pending") >= 8
    stop.set()
    await asyncio.wait_for(running, timeout=5)
    # and a stopped worker leaves no row leased behind
    assert {row(sessions, i).status for i in robot_ids} <= {"sent", "pending"}


@pytest.mark.parametrize(("lease_seconds", "claimed"), [(60.0, 3), (4.0, 2)])
def test_a_claim_takes_the_slots_within_two_seconds_or_a_quarter_of_the_lease(
    sessions: sessionmaker[Session], lease_seconds: float, claimed: int
) -> None:
    # given five due messages on a channel that takes one a second
    ids = add_notifications(sessions, 5)
    channel = ScriptedChannel(limits=ChannelLimits(per_second=1))
    worker = make_worker(sessions, Clock(NOW), channel, lease_seconds=lease_seconds)

    got = worker.claim(5)

    # then the rows whose slots are near are leased (slots at 0, 1, 2 s: within
    # 2 s; with a 4 s lease, within 1 s) and the rest stay pending
    assert [c.id for c in got] == ids[:claimed]
    assert [row(sessions, i).status for i in ids] == ["sending"] * claimed + ["pending"] * (
        5 - claimed
    )


def test_pacing_decisions_follow_the_injected_monotonic_clock(
    sessions: sessionmaker[Session],
) -> None:
    # given five due messages on a channel that takes one a second, and a
    # monotonic clock that stands still until the test moves it
    ids = add_notifications(sessions, 5)
    channel = ScriptedChannel(limits=ChannelLimits(per_second=1))
    ticks = MonotonicClock()
    worker = make_worker(sessions, Clock(NOW), channel, monotonic=ticks)

    # when it claims, claims again at the same instant, and again 3 s later
    first = worker.claim(5)
    second = worker.claim(5)
    ticks.advance(3.0)
    third = worker.claim(5)

    # then the slots are read off that clock: 0, 1 and 2 s ahead at first,
    # none while it stands still, and the next two once it has moved on
    assert [(c.id, c.send_at) for c in first] == [(ids[0], 100.0), (ids[1], 101.0), (ids[2], 102.0)]
    assert second == []
    assert [(c.id, c.send_at) for c in third] == [(ids[3], 103.0), (ids[4], 104.0)]


async def test_a_paced_channel_keeps_its_rate_through_run(sessions: sessionmaker[Session]) -> None:
    ids = add_notifications(sessions, 6)
    channel = ScriptedChannel(limits=ChannelLimits(per_second=10))
    worker = make_worker(sessions, Clock(NOW), channel, poll_seconds=60)
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    send = channel.send

    async def timed(message: OutgoingMessage) -> SendResult:
        sent_at.append(loop.time())
        return await send(message)

    channel.send = timed  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await eventually(lambda: len(sent_at) == 6)
    stop.set()
    await asyncio.wait_for(running, timeout=5)

    # a token bucket's promise, which a send made late by a loaded machine keeps:
    # never more than 1 + L × rate sends in any L seconds (so six span ≥ 0.4 s;
    # a send late by a few ms may be followed by one on time, closer than 0.1 s)
    for (i, a), (j, b) in itertools.combinations(enumerate(sent_at), 2):
        assert b - a >= (j - i - 1) * 0.1 * 0.9, (i, j, b - a)
    assert sent_at[-1] - sent_at[0] >= 4 * 0.1 * 0.9
    assert {row(sessions, i).status for i in ids} == {"sent"}


async def test_sends_made_late_by_a_pause_never_exceed_the_rate_in_any_second(
    sessions: sessionmaker[Session],
) -> None:
    # given six messages on a channel that takes 4 a second (slots 0, 0.25 … 1.25)
    # and a first send that stalls the whole event loop for 0.3 s, as a long
    # commit or a garbage collection would: the second then leaves late, at 0.3
    add_notifications(sessions, 6)
    channel = ScriptedChannel(limits=ChannelLimits(per_second=4))
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    send = channel.send

    async def stalling(message: OutgoingMessage) -> SendResult:
        sent_at.append(loop.time())
        if len(sent_at) == 1:
            time.sleep(0.3)  # blocks the loop
        return await send(message)

    channel.send = stalling  # type: ignore[method-assign]
    worker = make_worker(sessions, Clock(NOW), channel, poll_seconds=60)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await eventually(lambda: len(sent_at) == 6)
    stop.set()
    await asyncio.wait_for(running, timeout=5)

    # then no second-long window holds more than four sends (the one from the
    # late second send would hold five if the sixth left at its slot, 1.25)
    assert sent_at[1] - sent_at[0] >= 0.3
    for i, first in enumerate(sent_at):
        assert sum(1 for t in sent_at[i:] if t < first + 1.0) <= 4, sent_at


def test_the_worker_takes_its_limits_from_the_delivery_settings(
    sessions: sessionmaker[Session],
) -> None:
    settings = Settings(
        delivery_concurrency=3,
        delivery_max_attempts=5,
        delivery_backoff_seconds=2.0,
        delivery_backoff_max_seconds=30.0,
        delivery_lease_seconds=45.0,
        delivery_poll_seconds=0.5,
    )

    worker = DeliveryWorker.from_settings(
        settings, sessions=sessions, channels={}, clock=Clock(NOW)
    )

    assert (worker.concurrency, worker.max_attempts, worker.lease_seconds) == (3, 5, 45.0)
    assert (worker.backoff_seconds, worker.backoff_max_seconds, worker.poll_seconds) == (
        2.0,
        30.0,
        0.5,
    )
