"""Helpers for tests that run real processes: the daemon and the fake provider."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.fake_twilio import running

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"
ACCOUNT = "AC" + "1" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def fake_twilio(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A fake Twilio Messages API in its own process: (port, file of received messages)."""
    record = tmp_path / "received.jsonl"
    with running(record, "--delay", "0.2") as base:
        yield int(base.rsplit(":", 1)[1]), record


def daemon_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUJING_")}
    env.update(
        YUJING_CONFIG_DIR=str(COUNTY),
        YUJING_DATABASE_URL=f"sqlite:///{tmp_path / 'yujing.db'}",
        YUJING_HTTP_PORT=str(free_port()),
        YUJING_LOG_FORMAT="json",
        YUJING_POLL_JITTER_SECONDS="0",
        # a rebased replay keeps the time of day: from 01-07 00:00 every hour of the
        # recorded day warns (orange included), whenever the test runs
        YUJING_REPLAY_AT="2026-01-07T00:00:00+08:00",
    )
    env.update(extra)
    return env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "run"],
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def outbox(db: Path | str) -> dict[str, int]:
    """Outbox rows by status (a SQLite file path or any database URL)."""
    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM notifications GROUP BY status"))
            return {status: count for status, count in rows}
    except Exception:  # the table may not exist yet while the daemon starts
        return {}
    finally:
        engine.dispose()


def received(record: Path) -> list[dict[str, str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]
