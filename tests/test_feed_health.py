"""A feed is healthy only when it delivers usable future data; /healthz says so honestly.

Issue 13: an all-null (every variable) or past-only forecast is a failed poll and
raises the feed-down alert after two intervals (one variable without values ahead
is partial data: tests/test_partial_data.py); restarts do not reset that clock; /healthz
on a database that refuses writes is failing (503) and shows paths and error
texts only to an authenticated caller.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import respx
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.acklinks import ensure_secret_key
from dispatcher.alerts.system import WATCH_STARTED
from dispatcher.leader import Leadership
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.db import session_factory
from dispatcher.storage.models import Alert, AuditEvent, ForecastRun, Notification
from dispatcher.web import auth
from dispatcher.web.app import create_app, health
from dispatcher.web.console import SESSION_PURPOSE
from dispatcher.web.state import AppState
from tests.support import Clock

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"  # 2026-01-03 00:00 … 01-12 23:00
OPEN_METEO = "https://api.open-meteo.com/v1/forecast"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=30)
TOKEN = "metrics-token-0123456789abcdef"


def runtime_for(db_url: str, clock: Clock, **settings: object) -> Runtime:
    values: dict[str, object] = {
        "config_dir": COUNTY,
        "database_url": db_url,
        "feed": "replay",
        "replay_file": COLDWAVE,
        "replay_rebase": False,
        "channel": "console",
        "poll_interval_seconds": int(INTERVAL.total_seconds()),
        "feed_retries": 0,
        "secret_key": SecretStr("s" * 32),
        "metrics_token": SecretStr(TOKEN),
        **settings,
    }
    config = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    return open_runtime(config, clock=clock, console=io.StringIO(), wake=lambda: None)


def feed_alerts(rt: Runtime) -> list[Alert]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Alert).where(Alert.kind == "system", Alert.hazard == "feed_down")
            )
        )


def recording(tmp_path: Path, name: str, change: Any) -> Path:
    """The cold-wave recording with `change(hourly)` applied to every location."""
    data = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    for location in data:
        change(location["hourly"])
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


async def polls_until_feed_down(rt: Runtime, clock: Clock, error: str) -> None:
    """Poll at 0, 1 and 2 intervals: failed polls, the alert only at the second interval."""
    for step in range(3):
        result = await rt.pipeline.poll()
        assert not result.ok and result.error and error in result.error
        assert len(feed_alerts(rt)) == (1 if step == 2 else 0)
        clock.now += INTERVAL
    [down] = feed_alerts(rt)
    assert down.state == "firing"
    with rt.sessions() as session:
        runs = session.scalars(select(ForecastRun).order_by(ForecastRun.id)).all()
    assert [r.ok for r in runs] == [False, False, False]
    assert all(r.error and error in r.error for r in runs)


@respx.mock
async def test_an_all_null_feed_is_a_failed_poll_and_raises_feed_down(db_url: str) -> None:
    data = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    for location in data:  # Open-Meteo answers, but with nothing in it
        hourly = location["hourly"]
        for name in hourly:
            if name != "time":
                hourly[name] = [None] * len(hourly["time"])

    def answer(request: httpx.Request) -> httpx.Response:
        lats = [float(v) for v in request.url.params["latitude"].split(",")]
        lons = [float(v) for v in request.url.params["longitude"].split(",")]
        out = [
            min(data, key=lambda r: (r["latitude"] - lat) ** 2 + (r["longitude"] - lon) ** 2)
            for lat, lon in zip(lats, lons, strict=True)
        ]
        return httpx.Response(200, json=out if len(out) > 1 else out[0])

    respx.get(OPEN_METEO).mock(side_effect=answer)
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, feed="openmeteo", openmeteo_batch_size=100)
    try:
        await polls_until_feed_down(
            rt, clock, "no usable value from now on for any variable the rules read"
        )
    finally:
        await rt.aclose()


async def test_values_only_in_the_past_hours_leave_their_hazards_blind_not_the_poll_failed(
    db_url: str, tmp_path: Path
) -> None:
    """One variable the rules read has values only before now: the rules reading it are
    undecided and the staff are told; the others go on (a failed poll would blind them all)."""
    cut = AT.strftime("%Y-%m-%dT%H:%M")

    def blank_ahead(hourly: dict[str, list[Any]]) -> None:
        hourly["temperature_2m"] = [
            v if t < cut else None
            for t, v in zip(hourly["time"], hourly["temperature_2m"], strict=True)
        ]

    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=recording(tmp_path, "ahead.json", blank_ahead))
    try:
        result = await rt.pipeline.poll()
        assert result.ok, result.error
        with rt.sessions() as session:
            run = session.get(ForecastRun, result.forecast_run_id)
            assert run is not None and run.error == (
                "partial: temperature_2m missing at 34 of 34 points "
                "(temperature_2m has no value from now on)"
            )
            [blind] = session.scalars(select(Alert).where(Alert.hazard == "hazards_blind"))
            assert set(blind.evidence["hazards"]) == {"cold_wave"}
        assert feed_alerts(rt) == []
    finally:
        await rt.aclose()


async def test_a_past_only_forecast_is_a_failed_poll_and_raises_feed_down(db_url: str) -> None:
    clock = Clock(datetime(2026, 1, 13, 1, 0, tzinfo=UTC))  # the recording ended 01-12 23:00
    rt = runtime_for(db_url, clock)
    try:
        await polls_until_feed_down(rt, clock, "before now")
        with rt.sessions() as session:
            assert session.scalars(select(Alert).where(Alert.kind == "hazard")).all() == []
    finally:
        await rt.aclose()


@respx.mock
async def test_restarts_every_30_seconds_do_not_reset_the_feed_down_clock(db_url: str) -> None:
    respx.get(OPEN_METEO).mock(return_value=httpx.Response(503))
    clock = Clock(AT)
    raised_at: datetime | None = None
    while clock.now < AT + timedelta(seconds=3 * 60):  # three intervals of 60 s
        rt = runtime_for(db_url, clock, feed="openmeteo", poll_interval_seconds=60)
        try:  # a crash loop: start, poll (fails), die 30 s later
            assert rt.pipeline.started_at == clock.now
            assert not (await rt.pipeline.poll()).ok
            if feed_alerts(rt) and raised_at is None:
                raised_at = clock.now
        finally:
            await rt.aclose()
        clock.now += timedelta(seconds=30)
    # two intervals (of 60 s) after the first start, whatever the restarts
    assert raised_at == AT + timedelta(seconds=120)
    with rt.sessions() as session:
        starts = session.scalars(select(AuditEvent).where(AuditEvent.action == WATCH_STARTED))
        assert [e.at for e in starts] == [AT]  # the first start only: the rest add nothing


async def test_after_a_restart_the_outage_runs_from_the_last_good_data(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        assert (await rt.pipeline.poll()).ok
    finally:
        await rt.aclose()
    # the daemon was down; it restarts after the recording ended: nothing usable since AT
    clock.now = datetime(2026, 1, 13, 1, 0, tzinfo=UTC)
    rt = runtime_for(db_url, clock)
    try:
        assert rt.pipeline.started_at == clock.now
        assert not (await rt.pipeline.poll()).ok
        [down] = feed_alerts(rt)  # at once: the outage began long before this start
        assert down.onset == AT and down.state == "firing"
        with rt.sessions() as session:  # a database with good data needs no start anchor
            assert (
                session.scalars(select(AuditEvent).where(AuditEvent.action == WATCH_STARTED)).all()
                != []
            )  # recorded by the first start, on the brand-new database
    finally:
        await rt.aclose()


def app_state(rt: Runtime, sessions: sessionmaker[Session] | None = None) -> AppState:
    return AppState(
        sessions=sessions or rt.sessions,
        settings=rt.settings,
        clock=rt.pipeline.clock,
        feed_source=rt.feed.source,
        started_at=rt.pipeline.started_at,
        rules=rt.rules.status,
        leadership=Leadership(rt.engine),
    )


def read_only_sessions(rt: Runtime, db_url: str) -> sessionmaker[Session]:
    """The runtime's database, opened so that it refuses every write."""
    if db_url.startswith("sqlite"):
        path = rt.engine.url.database
        engine = create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        )
    else:
        engine = create_engine(
            rt.engine.url, connect_args={"options": "-c default_transaction_read_only=on"}
        )
    return session_factory(engine)


@respx.mock
async def test_healthz_on_a_read_only_database_is_failing(db_url: str) -> None:
    respx.get(OPEN_METEO).mock(return_value=httpx.Response(503))
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, feed="openmeteo")
    try:
        await rt.pipeline.poll()
        writable = TestClient(create_app(app_state(rt))).get("/healthz")
        assert writable.status_code == 200
        assert writable.json()["database"] == {"ok": True, "read": True, "write": True}

        read_only = read_only_sessions(rt, db_url)
        client = TestClient(create_app(app_state(rt, read_only)))
        answer = client.get("/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "failing"
        assert body["database"] == {"ok": False, "read": True, "write": False}
        assert "database unwritable" in body["problems"]
        assert body["feed"]["consecutive_failures"] == 1  # what could be read is still shown
        # the authenticated caller is told why
        told = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert told["database"]["ok"] is False and "read" in told["database"]["error"].lower()
        with rt.sessions() as session:  # the probe left nothing behind
            assert (
                session.scalars(
                    select(ForecastRun).where(ForecastRun.source == "healthz-probe")
                ).all()
                == []
            )
    finally:
        await rt.aclose()


@respx.mock
async def test_healthz_counts_failed_polls_and_hides_error_texts_without_auth(
    db_url: str,
) -> None:
    respx.get(OPEN_METEO).mock(return_value=httpx.Response(503))
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, feed="openmeteo")
    try:
        await rt.pipeline.poll()
        clock.now += INTERVAL / 2
        await rt.pipeline.poll()
        rt.rules.status.error = "/etc/yujing/rules/extra.yaml:11: unknown variable"
        client = TestClient(create_app(app_state(rt)))

        public = client.get("/healthz")
        assert public.status_code == 200
        body = public.json()
        assert body["status"] == "degraded"  # within two intervals: failing polls, no outage yet
        assert body["problems"] == ["forecast feed failing", "rule load error"]
        feed = body["feed"]
        assert feed["ok"] is False and feed["last_attempt_ok"] is False
        assert feed["consecutive_failures"] == 2
        assert feed["last_attempt"] == (AT + INTERVAL / 2).isoformat()
        assert feed["down_since"] == AT.isoformat()
        assert body["rules"]["ok"] is False
        # the lease (its epoch and expiry) but no host name
        leadership = Leadership(rt.engine)
        assert body["leader"] == {
            "leading": leadership.held,
            "epoch": None,
            "lease_expires_at": None,
        }
        assert "/etc/yujing" not in public.text and "503" not in public.text
        assert "error" not in feed and "error" not in body["rules"]
        assert Leadership(rt.engine).instance not in public.text
        # a wrong token is the public answer
        wrong = client.get("/healthz", headers={"Authorization": "Bearer nope"}).json()
        assert wrong == body

        with rt.sessions.begin() as session:
            user = auth.create_user(
                session,
                name="duty1",
                password="a-long-pass-phrase-1",
                role="duty",
                person_id=None,
                at=AT,
            )
            token = auth.start_session(session, user, at=clock.now, ttl_seconds=3600)
        secret = ensure_secret_key(rt.settings).get_secret_value().encode()
        for headers, cookies in (
            ({"Authorization": f"Bearer {TOKEN}"}, {}),
            ({}, {auth.SESSION_COOKIE: auth.sign(secret, SESSION_PURPOSE, token)}),
        ):
            client.cookies.clear()
            client.cookies.update(cookies)
            full = client.get("/healthz", headers=headers).json()
            assert full["status"] == "degraded"
            assert full["feed"]["last_error"] and "503" in full["feed"]["last_error"]
            assert full["rules"]["error"].startswith("/etc/yujing/rules/extra.yaml")
            assert full["leader"]["instance"] == Leadership(rt.engine).instance
        client.cookies.clear()
        # a forged session cookie is the public answer
        client.cookies.update({auth.SESSION_COOKIE: auth.sign(b"x" * 32, SESSION_PURPOSE, token)})
        assert client.get("/healthz").json() == body
        client.cookies.clear()

        clock.now = AT + 2 * INTERVAL  # two intervals without usable data: the outage
        rt.pipeline.check_feed()
        down = health(app_state(rt)).body
        stale = json.loads(bytes(down))
        assert stale["status"] == "degraded" and "forecast feed stale" in stale["problems"]
        assert stale["feed"]["down_alert"] is not None
    finally:
        await rt.aclose()


async def test_healthz_reports_the_oldest_due_message_and_is_ok_when_all_is_well(
    db_url: str,
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=COUNTY / "scenarios" / "calm-2026-01.json")
    try:
        assert (await rt.pipeline.poll()).ok
        client = TestClient(create_app(app_state(rt)))
        body = client.get("/healthz").json()
        assert body["status"] == "ok" and body["problems"] == []
        assert body["feed"]["ok"] is True and body["feed"]["consecutive_failures"] == 0
        assert body["outbox"]["oldest_due_seconds"] is None

        with rt.sessions.begin() as session:
            for minutes in (3, 12):  # due 3 and 12 minutes ago, never sent
                session.add(
                    Notification(
                        idempotency_key=f"late-{minutes}",
                        transition="new",
                        address="+8613800000000",
                        channel="console",
                        body="…",
                        next_attempt_at=AT - timedelta(minutes=minutes),
                        created_at=AT - timedelta(minutes=minutes),
                    )
                )
        late = client.get("/healthz")
        assert late.status_code == 200
        body = late.json()
        assert body["outbox"]["oldest_due_seconds"] == 12 * 60
        assert body["outbox"]["pending"] == 2
        assert body["status"] == "degraded" and body["problems"] == ["outbox late"]
    finally:
        await rt.aclose()
