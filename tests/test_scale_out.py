"""Two `yujing run` processes on one PostgreSQL database.

Both deliver (claiming outbox rows with SKIP LOCKED); only the instance holding
the advisory lock schedules polls. Each notification must reach the provider
exactly once, and when the leader dies the other instance takes over.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.processes import (
    ACCOUNT,
    COLDWAVE,
    daemon_env,
    fake_twilio,
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
