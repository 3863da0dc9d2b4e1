"""Delivery under a faulty provider: nothing lost, nothing sent twice after success.

A real fake-Twilio server in its own process fails 30% of requests at random —
HTTP 500, HTTP 429 with Retry-After, and hangs that end in a client timeout —
while the real worker and Twilio channel push 2,000 notifications through a
real database.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from bench.fake_twilio import running
from channels.twilio_sms import TwilioSmsChannel
from dispatcher.outbox import DeliveryWorker
from dispatcher.storage.models import AuditEvent, Notification
from tests.processes import ACCOUNT

pytestmark = pytest.mark.slow
MESSAGES = 2000


@pytest.fixture
def faulty_twilio(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    record = tmp_path / "requests.jsonl"
    with running(record, "--fail-rate", "0.3", "--seed", "7", "--hang", "1") as base:
        yield base, record


async def deliver_all(sessions: sessionmaker[Session], base: str) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(0.5)) as http:
        channel = TwilioSmsChannel(
            account_sid=ACCOUNT, auth_token=SecretStr("fault-test-token"),
            from_number="+15005550006", messaging_service_sid=None, http=http, api_base=base,
        )  # fmt: skip
        worker = DeliveryWorker(
            sessions, {"twilio_sms": channel}, lambda: datetime.now(UTC),
            concurrency=32, max_attempts=30, backoff_seconds=0.1, backoff_max_seconds=1.0,
            lease_seconds=30, poll_seconds=0.05,
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(1200):  # two minutes at most
            await asyncio.sleep(0.1)
            with sessions() as session:
                open_rows = session.scalar(
                    select(func.count()).where(Notification.status.in_(("pending", "sending")))
                )
            if open_rows == 0:
                break
        stop.set()
        await task


def test_a_provider_failing_30_percent_of_requests_loses_nothing_and_duplicates_nothing(
    sessions: sessionmaker[Session], faulty_twilio: tuple[str, Path]
) -> None:
    base, record = faulty_twilio
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.execute(
            insert(Notification),
            [
                {
                    "idempotency_key": f"fault:{i}",
                    "transition": "new",
                    "address": f"+86170{i:08d}",
                    "channel": "twilio_sms",
                    "body": f"寒潮黄色预警 #{i}",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for i in range(MESSAGES)
            ],
        )

    asyncio.run(deliver_all(sessions, base))

    requests = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    outcomes = Counter(r["outcome"] for r in requests)
    accepted = Counter(r["body"] for r in requests if r["outcome"] == "ok")
    with sessions() as session:
        statuses = Counter(session.scalars(select(Notification.status)))
        retries = session.scalar(
            select(func.count()).where(AuditEvent.action == "notification.retry")
        )
    # the provider really did fail about 30% of requests, in all three ways
    assert all(outcomes[kind] > 50 for kind in ("500", "429", "hang")), outcomes
    assert 0.2 < 1 - outcomes["ok"] / sum(outcomes.values()) < 0.4
    # every notification ended sent; none lost
    assert statuses == {"sent": MESSAGES}
    # every message was accepted by the provider exactly once: no send after success
    assert len(accepted) == MESSAGES
    assert [body for body, n in accepted.items() if n > 1] == []
    # and every failed request was retried, on the record (a client-side timeout
    # waiting for a pooled connection is a retry that never reached the provider)
    assert retries is not None and retries >= sum(outcomes.values()) - MESSAGES
