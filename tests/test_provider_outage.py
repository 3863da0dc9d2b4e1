"""Chaos: SMS and voice both down for longer than the retry limits, then back.

A real daemon process delivers a cold-wave warning through the fake Twilio (a
real HTTP server on 127.0.0.1, in its own process) that answers every SMS and
every call with HTTP 503 for 10 s, while the daemon's retry limits are 3 s: the
SMS fail, the calls that replace them fail, and the messages are given up. The
duty officer must be told (the undelivered system alert, audited), and once the
provider is back every recipient must be reached, nothing lost.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.fake_twilio import running
from tests.processes import ACCOUNT, COLDWAVE, daemon_env, outbox, received, start, wait_for

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 10.0
LIMIT_SECONDS = "3"  # every level's time-to-live: retried this long, then failed over


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The fake Twilio, down from the start: (base URL, record, the file that keeps it down)."""
    record, down = tmp_path / "received.jsonl", tmp_path / "provider-down"
    down.touch()
    with running(record, "--delay", "0.02", "--down-while", str(down)) as base:
        yield base, record, down


def requests(record: Path, outcome: str) -> list[dict[str, str]]:
    return [r for r in received(record) if r["outcome"] == outcome]


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def health(port: str) -> dict[str, object]:
    try:
        answer: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
        return answer
    except (httpx.HTTPError, ValueError):
        return {}


def test_an_outage_longer_than_the_retry_limits_loses_nothing_and_tells_the_duty_officer(
    tmp_path: Path, provider: tuple[str, Path, Path]
) -> None:
    base, record, down = provider
    env = daemon_env(
        tmp_path,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_CHANNEL="twilio_sms",
        YUJING_TWILIO_ACCOUNT_SID=ACCOUNT,
        YUJING_TWILIO_AUTH_TOKEN="test-token-not-secret",
        YUJING_TWILIO_FROM_NUMBER="+15005550006",
        YUJING_TWILIO_API_BASE=base,
        YUJING_PUBLIC_BASE_URL=base,  # calls need one; the fake ignores their callbacks
        YUJING_RATE_LIMITS="twilio_voice=500/s",
        YUJING_DELIVERY_MAX_ATTEMPTS="4",
        YUJING_DELIVERY_BACKOFF_SECONDS="0.5",
        YUJING_DELIVERY_BACKOFF_MAX_SECONDS="1",
        YUJING_DELIVERY_TTL_BLUE_SECONDS=LIMIT_SECONDS,
        YUJING_DELIVERY_TTL_YELLOW_SECONDS=LIMIT_SECONDS,
        YUJING_DELIVERY_TTL_ORANGE_SECONDS=LIMIT_SECONDS,
        YUJING_DELIVERY_TTL_RED_SECONDS=LIMIT_SECONDS,
        YUJING_DELIVERY_PROBE_SECONDS="2",
        YUJING_POLL_INTERVAL_SECONDS="3600",
    )
    log, db, port = tmp_path / "daemon.log", tmp_path / "yujing.db", env["YUJING_HTTP_PORT"]
    started = time.monotonic()
    daemon = start(env, log)
    try:
        # given the provider down while the warning goes out
        wait_for(lambda: len(requests(record, "down")) > 0, 30, "the first refused request")
        outage_began = time.monotonic()
        # the duty officer is told while it lasts, and /healthz shows it
        wait_for(
            lambda: bool(query(db, "SELECT id FROM alerts WHERE hazard = 'undelivered'")),
            OUTAGE_SECONDS,
            "the undelivered alert",
        )
        shown = health(port).get("outbox")
        assert isinstance(shown, dict) and shown["given_up"] > 0 and shown["undelivered_alert"]
        # when the provider comes back after the outage
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
        down.unlink()

        def settled() -> bool:
            rows = query(db, "SELECT state FROM alerts WHERE hazard = 'undelivered'")
            busy = outbox(db).get("pending", 0) + outbox(db).get("sending", 0)
            return rows == [("resolved",)] and busy == 0

        wait_for(settled, 40, "every message re-sent and the undelivered alert resolved")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
    took = time.monotonic() - started

    output = log.read_text(encoding="utf-8")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    # the outage was real: both SMS and calls were refused, and messages were given up
    refused = requests(record, "down")
    assert {r["sid"] for r in refused} == {None}
    assert any("<Response>" in (r["body"] or "") for r in refused)  # calls too
    given_up = query(
        db,
        "SELECT count(*) FROM audit_events WHERE action = 'notification.undeliverable'",
    )[0][0]
    assert isinstance(given_up, int) and given_up > 20

    # nothing lost: every recipient of every message was reached one way or the other
    unreached = query(
        db,
        """SELECT alert_id, transition, person_id FROM notifications
           WHERE person_id IS NOT NULL GROUP BY alert_id, transition, person_id
           HAVING sum(CASE WHEN status IN ('sent', 'delivered') THEN 1 ELSE 0 END) = 0""",
    )
    assert unreached == []
    statuses = outbox(db)
    assert statuses.get("pending", 0) == statuses.get("sending", 0) == 0
    assert statuses["sent"] > 100 and set(statuses) <= {"sent", "failed"}, statuses
    assert query(db, "SELECT count(*) FROM notifications WHERE gave_up_at IS NOT NULL") == [(0,)]
    # every accepted message is one row sent (matched by the provider's id)
    accepted = {r["sid"] for r in requests(record, "ok")}
    sent = {
        row[0] for row in query(db, "SELECT provider_id FROM notifications WHERE status = 'sent'")
    }
    assert sent <= accepted

    # the operator was told, and it is on the record
    (alert_id, code_) = query(db, "SELECT id, code FROM alerts WHERE hazard = 'undelivered'")[0]
    trail = [
        row[0]
        for row in query(
            db, f"SELECT action FROM audit_events WHERE subject = 'alert:{alert_id}' ORDER BY id"
        )
    ]
    assert trail[0] == "alert.new" and "alert.resolved" in trail
    # raised while the outage was growing, it told the numbers again as they doubled
    told_numbers = [
        int(str(row[0]))
        for row in query(
            db,
            "SELECT json_extract(data, '$.messages') FROM audit_events "
            f"WHERE subject = 'alert:{alert_id}' AND action IN ('alert.new', 'alert.updated')",
        )
    ]
    resent = query(db, "SELECT count(*) FROM audit_events WHERE action = 'notification.resent'")
    assert 2 * max(told_numbers) >= int(str(resent[0][0]))
    told = [r for r in requests(record, "ok") if f"编码{code_}" in (r["body"] or "")]
    assert told and all("未送达" in (r["body"] or "") for r in told)
    assert any("系统告警解除" in (r["body"] or "") for r in requests(record, "ok"))
    assert "undelivered alert" in output and "raised" in output
    assert took < 60, f"took {took:.0f} s"
