"""Two `yujing run` processes on one PostgreSQL database.

Both deliver (claiming outbox rows with SKIP LOCKED); only the instance holding
the leader lease schedules polls. Each notification must reach the provider
exactly once; when the leader dies or freezes the other instance takes over,
and a frozen leader that resumes sends nothing twice and no longer leads.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.fake_twilio import running
from tests.processes import (
    ACCOUNT,
    COLDWAVE,
    daemon_env,
    fake_twilio,
    free_port,
    outbox,
    received,
    start,
    wait_for,
)

__all__ = ["fake_twilio"]  # a fixture, used by name

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def forecast_runs(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM forecast_runs")).scalar_one())
    except Exception:  # not migrated yet
        return 0
    finally:
        engine.dispose()


def leads(log: Path) -> bool:
    return log.exists() and "this instance leads" in log.read_text(encoding="utf-8")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_instances_send_each_message_once_and_a_standby_takes_over(
    db_url: str, tmp_path: Path, fake_twilio: tuple[int, Path]
) -> None:
    port, record = fake_twilio
    env = daemon_env(
        tmp_path,
        YUJING_DATABASE_URL=db_url,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_REPLAY_AT="2026-01-07T00:00:00+08:00",
        YUJING_TWILIO_ACCOUNT_SID=ACCOUNT,
        YUJING_TWILIO_AUTH_TOKEN="test-token-not-secret",
        YUJING_TWILIO_FROM_NUMBER="+15005550006",
        YUJING_TWILIO_API_BASE=f"http://127.0.0.1:{port}",
        YUJING_DELIVERY_CONCURRENCY="4",
        YUJING_POLL_INTERVAL_SECONDS="3",
        YUJING_LEADER_POLL_SECONDS="1",
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    log_a, log_b = tmp_path / "a" / "daemon.log", tmp_path / "b" / "daemon.log"

    # given a leader that has evaluated the cold wave, and a second instance
    first = start(env, log_a)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: forecast_runs(db_url) >= 1, 60, "the first poll")
        second = start({**env, "YUJING_HTTP_PORT": str(int(env["YUJING_HTTP_PORT"]) + 1)}, log_b)
        total = sum(outbox(db_url).values())
        assert total > 100
        # when both deliver
        wait_for(lambda: outbox(db_url).get("sent", 0) == total, 120, f"all {total} sent")
        # then every message reached the provider exactly once: each accepted
        # request is one row's provider id, and none is missing
        accepted = [m["sid"] for m in received(record) if m["sid"]]
        engine = create_engine(db_url)
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT provider_id FROM notifications"))]
        engine.dispose()
        assert set(ids) <= set(accepted)
        assert len(accepted) == len(set(ids)), "a message was sent twice"
        assert leads(log_a) and not leads(log_b)

        # and when the leader dies, the standby takes over scheduling
        runs_before = forecast_runs(db_url)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        wait_for(lambda: leads(log_b), 30, "the standby to take over")
        wait_for(lambda: forecast_runs(db_url) > runs_before, 30, "a poll by the new leader")
        assert sum(outbox(db_url).values()) == total, "the same forecast must not warn again"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def leader_of(port: int) -> dict[str, Any]:
    """What an instance's /healthz says of leadership ({} while it does not answer)."""
    try:
        leader = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).json().get("leader")
    except (httpx.HTTPError, ValueError):
        return {}
    return dict(leader or {})


def query(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


def unrecorded_sends(url: str, record: Path, before: float) -> set[str]:
    """Provider ids the fake accepted before `before` that no outbox row holds yet."""
    accepted = {m["sid"] for m in received(record) if m["sid"] and float(m["t"]) < before}
    recorded = {r[0] for r in query(url, "SELECT provider_id FROM notifications")}
    return accepted - recorded


LEADER_POLL = 2.0  # seconds; the lease is twice that


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_frozen_leader_is_replaced_and_on_resuming_sends_nothing_twice(
    db_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "received.jsonl"
    with running(record, "--delay", "0") as base:
        env = daemon_env(
            tmp_path,
            YUJING_DATABASE_URL=db_url,
            YUJING_FEED="replay",
            YUJING_REPLAY_FILE=str(COLDWAVE),
            # a fixed recorded instant: what the polls warn of does not depend on
            # the time of day the test runs
            YUJING_REPLAY_AT="2026-01-07T00:00:00+08:00",
            YUJING_TWILIO_ACCOUNT_SID=ACCOUNT,
            YUJING_TWILIO_AUTH_TOKEN="test-token-not-secret",
            YUJING_TWILIO_FROM_NUMBER="+15005550006",
            YUJING_TWILIO_API_BASE=base,
            YUJING_DELIVERY_CONCURRENCY="4",
            # an outbox lease that runs out during the freeze; a slow rate limit
            # for the leader, so it always holds claimed rows waiting their turn
            # (and seldom has one on the wire), a fast one for the standby
            YUJING_DELIVERY_LEASE_SECONDS="10",
            YUJING_RATE_LIMITS="twilio_sms=4/s",
            YUJING_POLL_INTERVAL_SECONDS="3",
            YUJING_LEADER_POLL_SECONDS=str(LEADER_POLL),
        )
        port_a, port_b = int(env["YUJING_HTTP_PORT"]), free_port()
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        log_a, log_b = tmp_path / "a" / "daemon.log", tmp_path / "b" / "daemon.log"

        # given a leader delivering the cold wave, and a standby delivering too
        first = start(env, log_a)
        second: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: forecast_runs(db_url) >= 1, 60, "the first poll")
            second = start(
                {**env, "YUJING_HTTP_PORT": str(port_b), "YUJING_RATE_LIMITS": "twilio_sms=30/s"},
                log_b,
            )
            wait_for(lambda: leader_of(port_b).get("leading") is False, 30, "the standby")
            wait_for(lambda: leader_of(port_a).get("leading") is True, 10, "the leader")
            total = sum(outbox(db_url).values())
            assert total > 100
            assert outbox(db_url).get("pending", 0) > 50, "not mid-delivery"

            # when the leader is frozen (at an instant none of its sends is on the
            # wire: one there reaches the provider, and with its outcome never
            # recorded it is sent again after its lease — at least once, which is
            # what the SIGKILL chaos test bounds, not what this one is about)
            for _ in range(12):
                first.send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                time.sleep(0.5)
                if not unrecorded_sends(db_url, record, before=time.time() - 0.2):
                    break
                first.send_signal(signal.SIGCONT)
                time.sleep(0.6)
            else:
                pytest.fail("could not freeze the leader between two sends")

            # then the standby leads within 3 × the leader poll interval
            wait_for(lambda: leader_of(port_b).get("leading") is True, 10, "the takeover")
            took = time.monotonic() - stopped_at
            assert took <= 3 * LEADER_POLL, f"took over {took:.1f} s after the freeze"
            new_epoch = leader_of(port_b)["epoch"]
            assert new_epoch >= 2
            # and delivers every row, those the frozen leader had claimed included
            # (the new leader's own polls and escalation may add rows: every row counts)
            try:
                wait_for(lambda: set(outbox(db_url)) == {"sent"}, 90, "every row sent")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the outbox: {outbox(db_url)}") from None
            total = sum(outbox(db_url).values())

            # when the old leader resumes
            resumed_at = time.time()
            first.send_signal(signal.SIGCONT)
            # then it finds the lease gone and no longer leads
            wait_for(
                lambda: (
                    leader_of(port_a) == {**leader_of(port_a), "leading": False}
                    and leader_of(port_a).get("epoch") == new_epoch
                ),
                3 * LEADER_POLL,
                "the old leader to step down",
            )
            time.sleep(1.0)  # what it had claimed before the freeze comes up for sending
            # and it sent nothing: every row reached the provider exactly once
            sends = received(record)
            assert [m for m in sends if float(m["t"]) >= resumed_at] == []
            requests = Counter((m["to"], m["body"]) for m in sends if m["sid"])
            rows = query(db_url, "SELECT address, body FROM notifications")
            assert requests == Counter((r[0], r[1]) for r in rows), "a message was sent twice"
            assert sum(outbox(db_url).values()) >= total  # nothing lost
            # the claims it held were dropped on resuming, and audited
            dropped = query(
                db_url,
                "SELECT count(*) FROM audit_events WHERE action = 'notification.stale'",
            )[0][0]
            assert dropped >= 1, "the frozen leader held no claim: nothing was tested"
            assert "leadership lost" in log_a.read_text(encoding="utf-8")
            assert leader_of(port_b).get("leading") is True
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
