"""Chaos: SIGKILL a daemon while many messages are on their way, start it again.

On SQLite and on PostgreSQL, with a slow fake provider (a real HTTP server on
127.0.0.1) so that many outbox rows are in flight at the instant of the kill:
nothing is lost (every row ends `sent`), a message reaches the provider twice
at most if it was in flight at the kill (its outcome died with the process),
and the audit chain verifies (`yujing audit verify`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.fake_twilio import running
from tests.processes import ACCOUNT, COLDWAVE, daemon_env, outbox, received, start, wait_for

pytestmark = pytest.mark.slow

CONCURRENCY = 8


@pytest.fixture
def slow_provider(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fake Twilio answering after 0.3 s: (base URL, file of accepted messages)."""
    record = tmp_path / "received.jsonl"
    with running(record, "--delay", "0.3") as base:
        yield base, record


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_sigkill_during_delivery_loses_nothing_and_repeats_only_what_was_in_flight(
    db_url: str, tmp_path: Path, slow_provider: tuple[str, Path]
) -> None:
    base, record = slow_provider
    env = daemon_env(
        tmp_path,
        YUJING_DATABASE_URL=db_url,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_TWILIO_ACCOUNT_SID=ACCOUNT,
        YUJING_TWILIO_AUTH_TOKEN="test-token-not-secret",
        YUJING_TWILIO_FROM_NUMBER="+15005550006",
        YUJING_TWILIO_API_BASE=base,
        YUJING_DELIVERY_CONCURRENCY=str(CONCURRENCY),
        YUJING_DELIVERY_LEASE_SECONDS="6",
        YUJING_POLL_INTERVAL_SECONDS="3600",
        YUJING_LEADER_POLL_SECONDS="1",
    )
    log = tmp_path / "daemon.log"

    # given a daemon delivering a cold-wave warning through a slow provider
    first = start(env, log)
    try:
        wait_for(lambda: len(received(record)) >= 20, 90, "the first deliveries")
    finally:
        # when it is killed outright, messages in flight
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    before = outbox(db_url)
    total = sum(before.values())
    in_flight = before.get("sending", 0)
    assert total > 100 and before.get("pending", 0) > 0, f"not mid-delivery: {before}"
    # claimed and not yet recorded: on the wire, next in line, or answered with the
    # outcome still in the batch the worker commits a few ms later (more of those
    # on a busy machine) — a bounded few, never the whole outbox
    assert 0 < in_flight <= 4 * CONCURRENCY, f"{in_flight} rows claimed at the kill"

    # and started again
    second = start(env, log)
    try:
        wait_for(lambda: outbox(db_url).get("sent", 0) == total, 120, f"all {total} sent")
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(30)
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]

    # then nothing was lost, and nothing was queued twice
    assert outbox(db_url) == {"sent": total}
    # every row reached the provider; a message reached it twice only if it was
    # in flight at the kill — at most the rows claimed then
    requests = Counter((m["to"], m["body"]) for m in received(record) if m["sid"])
    messages = Counter(
        (str(address), str(body))
        for address, body in rows(db_url, "SELECT address, body FROM notifications")
    )
    assert set(requests) == set(messages)
    repeated = (requests - messages).total()
    assert repeated <= in_flight, f"{repeated} repeats, {in_flight} in flight at the kill"
    accepted = {m["sid"] for m in received(record) if m["sid"]}
    assert {r[0] for r in rows(db_url, "SELECT provider_id FROM notifications")} <= accepted

    # and the audit chain is whole
    verify = subprocess.run(
        [sys.executable, "-m", "dispatcher", "audit", "verify", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True and report["events"] > total
