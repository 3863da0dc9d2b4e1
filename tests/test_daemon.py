"""The daemon as a real process: crash safety, offline behaviour, clean shutdown.

These start `python -m dispatcher run` with a real SQLite database and, for
delivery, a real fake-Twilio HTTP server on 127.0.0.1 in its own process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

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

pytestmark = pytest.mark.slow


def test_sigkill_during_delivery_then_restart_delivers_every_notification(
    tmp_path: Path, fake_twilio: tuple[int, Path]
) -> None:
    port, record = fake_twilio
    env = daemon_env(
        tmp_path,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_TWILIO_ACCOUNT_SID=ACCOUNT,
        YUJING_TWILIO_AUTH_TOKEN="test-token-not-secret",
        YUJING_TWILIO_FROM_NUMBER="+15005550006",
        YUJING_TWILIO_API_BASE=f"http://127.0.0.1:{port}",
        YUJING_DELIVERY_CONCURRENCY="4",
        YUJING_DELIVERY_LEASE_SECONDS="3",
        YUJING_POLL_INTERVAL_SECONDS="3600",
    )
    log = tmp_path / "daemon.log"
    db = tmp_path / "yujing.db"

    # given a daemon delivering a cold-wave warning through the fake provider
    first = start(env, log)
    wait_for(lambda: len(received(record)) >= 10, 60, "the first deliveries")
    # when it is killed outright in the middle of delivering
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = outbox(db)
    total = sum(before.values())
    assert total > 10 and before.get("sent", 0) < total, f"not mid-delivery: {before}"

    # and started again
    second = start(env, log)
    try:
        wait_for(lambda: outbox(db).get("sent", 0) == total, 120, f"all {total} sent")
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(30)

    # then every notification reached the provider, none was lost
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
    assert sum(outbox(db).values()) == total, "the restart must not enqueue the warning again"
    # (match by the provider's id)
    accepted = {m["sid"] for m in received(record) if m["sid"]}
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, provider_id FROM notifications")).all()
    engine.dispose()
    missing = [r.id for r in rows if r.provider_id not in accepted]
    assert missing == []


def test_offline_daemon_keeps_running_and_raises_the_feed_down_alert(tmp_path: Path) -> None:
    env = daemon_env(
        tmp_path,
        YUJING_OPENMETEO_URL=f"http://127.0.0.1:{free_port()}/v1/forecast",  # nobody listens
        YUJING_FEED_RETRIES="0",
        YUJING_POLL_INTERVAL_SECONDS="2",
        YUJING_CHANNEL="console",
    )
    log = tmp_path / "daemon.log"
    proc = start(env, log)
    health = f"http://127.0.0.1:{env['YUJING_HTTP_PORT']}/healthz"
    try:

        def feed_alert_raised() -> bool:
            try:
                return bool(httpx.get(health, timeout=2).json()["feed"]["down_alert"])
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(feed_alert_raised, 30, "the feed-down alert")
        body = httpx.get(health, timeout=2).json()
        assert body["status"] == "degraded"
        assert body["database"] == {"ok": True, "read": True, "write": True}
        wait_for(
            lambda: "系统告警：天气预报数据" in log.read_text(encoding="utf-8"),
            15,
            "the feed-down message on the console",
        )
        assert proc.poll() is None, "the daemon must keep running offline"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    output = log.read_text(encoding="utf-8")
    assert code == 0
    assert "forecast feed open-meteo failed" in output
    assert "Traceback" not in output


def test_a_second_instance_on_one_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    env = daemon_env(
        tmp_path,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_POLL_INTERVAL_SECONDS="3600",
    )
    first = start(env, tmp_path / "first.log")
    try:
        health = f"http://127.0.0.1:{env['YUJING_HTTP_PORT']}/healthz"

        def up() -> bool:
            try:
                return httpx.get(health, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "the first instance")
        second = subprocess.run(
            [sys.executable, "-m", "dispatcher", "run"],
            cwd=tmp_path,
            env={**env, "YUJING_HTTP_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "another yujing instance" in second.stderr
        assert "PostgreSQL" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
