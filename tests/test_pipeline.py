"""The whole pipeline on the example county, on SQLite and PostgreSQL.

Real configuration, real rules, real database; the forecast comes from the
recorded scenarios, through the replay feed or through the live Open-Meteo
client with respx answering at the HTTP edge.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx
from sqlalchemy import select

from dispatcher import audit
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, AuditEvent, ForecastRun, Notification
from tests.support import Clock

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"
CALM = COUNTY / "scenarios" / "calm-2026-01.json"
OPEN_METEO = "https://api.open-meteo.com/v1/forecast"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai


def runtime_for(db_url: str, clock: Clock, **settings: object) -> Runtime:
    values: dict[str, object] = {
        "config_dir": COUNTY,
        "database_url": db_url,
        "feed": "replay",
        "replay_file": COLDWAVE,
        "replay_rebase": False,
        "channel": "console",
        **settings,
    }
    config = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    return open_runtime(config, clock=clock, console=io.StringIO(), wake=lambda: None)


def firing(rt: Runtime) -> Counter[tuple[str, str]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert).where(Alert.state == "firing", Alert.kind == "hazard")
        ).all()
        return Counter((a.hazard, a.level) for a in rows)


async def test_a_cold_wave_warns_every_zone_at_the_expected_levels(db_url: str) -> None:
    rt = runtime_for(db_url, Clock(AT))
    try:
        result = await rt.pipeline.poll()
        assert result.ok
        assert firing(rt) == {
            ("cold_wave", "orange"): 10,
            ("cold_wave", "yellow"): 30,
            ("road_icing", "yellow"): 40,
        }
    finally:
        await rt.aclose()


async def test_alerts_messages_and_audit_are_committed_before_anything_is_sent(
    db_url: str,
) -> None:
    rt = runtime_for(db_url, Clock(AT))
    try:
        await rt.pipeline.poll()
        with rt.sessions() as session:
            everything = session.scalars(select(Alert)).all()
            alerts = [a for a in everything if a.kind == "hazard"]
            events = [a for a in everything if a.kind == "event"]
            notes = session.scalars(
                select(Notification).where(Notification.person_id.is_not(None))
            ).all()
            opened = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "alert.new")
            ).all()
            assert {n.status for n in notes} == {"pending"}
            assert len(alerts) == 80
            assert {(e.hazard, e.level) for e in events} == {
                ("cold_wave", "orange"),
                ("road_icing", "yellow"),
            }
            assert len(opened) == len(everything) == 82
            assert all(
                a.event_id == next(e.id for e in events if e.hazard == a.hazard) for a in alerts
            )
            # every zone alert tells at once whom its level's escalation policy names
            # first among the zone's people (escalation.yaml): yellow the monitors,
            # orange everyone of the zone — each once; the bureau hears of the events
            for alert in alerts:
                mine = [n for n in notes if n.alert_id == alert.id]
                people = {n.person_id for n in mine}
                zone = rt.county.people_of(alert.zone_id or "")
                if alert.level == "yellow":
                    expected = {p.id for r, p in zone if r in ("monitoring", "mass_monitor")}
                else:
                    expected = {p.id for _, p in zone}
                assert people == expected
                assert len(mine) == len(people)
                assert all(f"编码{alert.code}" in n.body for n in mine)
            # the officer and the leader on duty (roster.yaml) get one message per
            # event: the orange one both, the yellow one the officer (its policy
            # names the leader nowhere)
            officer, leader = rt.county.people["p-duty-li"], rt.county.people["p-lead-xue"]
            told = {(e.level, n.person_id) for e in events for n in notes if n.alert_id == e.id}
            assert told == {("orange", officer.id), ("orange", leader.id), ("yellow", officer.id)}
            assert all(
                f"编码{e.code}" in n.body for e in events for n in notes if n.alert_id == e.id
            )
            assert audit.verify(session) == []
    finally:
        await rt.aclose()


async def test_delivery_sends_every_queued_message_once(db_url: str) -> None:
    rt = runtime_for(db_url, Clock(AT))
    try:
        await rt.pipeline.poll()
        sends = await drain(rt.worker)
        with rt.sessions() as session:
            rows = session.scalars(select(Notification)).all()
        assert rows and {n.status for n in rows} == {"sent"}
        # each row went out once, on its own (staff messages too: no digests)
        assert sends == len(rows)
    finally:
        await rt.aclose()


async def test_polling_the_same_forecast_again_warns_nobody_twice(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        first = await rt.pipeline.poll()
        clock.now += timedelta(minutes=30)
        second = await rt.pipeline.poll()
        assert first.notifications > 0
        assert second.notifications == 0
        assert set(second.transitions) == {"continued"}
        assert sum(firing(rt).values()) == 80
    finally:
        await rt.aclose()


async def test_a_calm_forecast_resolves_the_warnings_and_says_so(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        rt.pipeline.feed = ReplayFeed(CALM)
        clock.now += timedelta(hours=1)
        calming = await rt.pipeline.poll()
        clock.now += timedelta(hours=3)  # calm for the hold (YUJING_ALERT_HOLD_SECONDS)
        result = await rt.pipeline.poll()
        assert calming.transitions == {"continued": 80}
        assert result.transitions == {"resolved": 80}
        assert firing(rt) == {}
        with rt.sessions() as session:
            bodies = session.scalars(
                select(Notification.body).where(Notification.transition == "resolved")
            ).all()
        assert bodies and all("预警解除" in b for b in bodies)
    finally:
        await rt.aclose()


async def test_a_rising_level_supersedes_the_alert_and_points_back(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        clock.now = AT + timedelta(hours=4)  # road icing reaches orange everywhere (scenario)
        result = await rt.pipeline.poll()
        assert result.transitions.get("upgraded") == 40
        with rt.sessions() as session:
            upgraded = session.scalars(
                select(Alert).where(
                    Alert.hazard == "road_icing", Alert.state == "firing", Alert.kind == "hazard"
                )
            ).all()
            assert {a.level for a in upgraded} == {"orange"}
            for alert in upgraded:
                old = session.get_one(Alert, alert.supersedes_id)
                assert (old.state, old.level) == ("superseded", "yellow")
            # their event stays one, with its code: raised in place, its escalation restarted
            (event,) = session.scalars(
                select(Alert).where(Alert.kind == "event", Alert.hazard == "road_icing")
            ).all()
            assert (event.state, event.level, event.epoch) == ("firing", "orange", 1)
            assert {a.event_id for a in upgraded} == {event.id}
            told = session.scalars(
                select(Notification.body).where(
                    Notification.alert_id == event.id, Notification.transition == "upgraded.1"
                )
            ).all()
            assert told and all(f"编码{event.code}" in body for body in told)
            assert any("道路结冰预警升级为橙色" in body for body in told)
    finally:
        await rt.aclose()


def recorded_answers(
    recording: list[dict[str, Any]],
) -> Callable[[httpx.Request], httpx.Response]:
    """Answer each batched request with the recorded locations nearest to it."""

    def answer(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        lats = [float(v) for v in query["latitude"][0].split(",")]
        lons = [float(v) for v in query["longitude"][0].split(",")]
        wanted = set(query["hourly"][0].split(","))
        out = []
        for lat, lon in zip(lats, lons, strict=True):
            loc = min(
                recording,
                key=lambda r: (
                    (float(r["latitude"]) - lat) ** 2 + (float(r["longitude"]) - lon) ** 2
                ),
            )
            hourly = loc["hourly"]
            units = loc["hourly_units"]
            assert isinstance(hourly, dict) and isinstance(units, dict)
            out.append(
                {
                    **loc,
                    "hourly": {k: v for k, v in hourly.items() if k == "time" or k in wanted},
                    "hourly_units": {k: v for k, v in units.items() if k == "time" or k in wanted},
                }
            )
        return httpx.Response(200, json=out if len(out) > 1 else out[0])

    return answer


@respx.mock
async def test_the_live_client_gives_the_same_warnings_as_the_replay(db_url: str) -> None:
    recording = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    route = respx.get(OPEN_METEO).mock(side_effect=recorded_answers(recording))
    rt = runtime_for(db_url, Clock(AT), feed="openmeteo", openmeteo_batch_size=10)
    try:
        result = await rt.pipeline.poll()
        assert result.ok
        assert route.call_count == -(-len(rt.points) // 10)  # ceil: batched requests
        assert firing(rt) == {
            ("cold_wave", "orange"): 10,
            ("cold_wave", "yellow"): 30,
            ("road_icing", "yellow"): 40,
        }
    finally:
        await rt.aclose()


@respx.mock
async def test_a_silent_feed_raises_the_feed_down_alert_after_two_intervals(db_url: str) -> None:
    route = respx.get(OPEN_METEO).mock(return_value=httpx.Response(503))
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, feed="openmeteo", feed_retries=0, poll_interval_seconds=1800)
    try:
        failed = await rt.pipeline.poll()
        assert not failed.ok and failed.error and "503" in failed.error
        clock.now += timedelta(minutes=59)
        await rt.pipeline.poll()
        with rt.sessions() as session:
            assert session.scalars(select(Alert).where(Alert.kind == "system")).all() == []
        clock.now += timedelta(minutes=1)  # two intervals since the start without success
        rt.pipeline.check_feed()
        with rt.sessions() as session:
            [down] = session.scalars(select(Alert).where(Alert.kind == "system")).all()
            notes = session.scalars(
                select(Notification).where(Notification.alert_id == down.id)
            ).all()
            runs = session.scalars(select(ForecastRun)).all()
        assert down.hazard == "feed_down" and down.state == "firing"
        # the duty officer and the leader on duty (roster.yaml) at 2026-01-07 01:00
        assert {n.person_id for n in notes} == {"p-duty-li", "p-lead-xue"}
        assert all("天气预报数据（open-meteo）" in n.body for n in notes)
        assert [r.ok for r in runs] == [False, False]
        assert all(r.error and "503" in r.error for r in runs)

        # and when the feed answers again, the alert is resolved and people are told
        assert rt.pipeline.check_feed() == 0  # still down: nobody is told twice
        route.mock(side_effect=recorded_answers(json.loads(COLDWAVE.read_text(encoding="utf-8"))))
        clock.now += timedelta(minutes=5)
        assert (await rt.pipeline.poll()).ok
        with rt.sessions() as session:
            assert session.get_one(Alert, down.id).state == "resolved"
            restored = session.scalars(
                select(Notification.body).where(
                    Notification.alert_id == down.id, Notification.transition == "resolved"
                )
            ).all()
        assert len(restored) == 2  # everyone told of the outage
        assert all("恢复更新" in body for body in restored)
    finally:
        await rt.aclose()


async def test_a_malformed_variable_neither_raises_nor_clears_warnings(
    db_url: str, tmp_path: Path
) -> None:
    """A mis-sized temperature series at one location: masked there, said, nothing cleared."""
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        broken = json.loads(COLDWAVE.read_text(encoding="utf-8"))
        broken[3]["hourly"]["temperature_2m"] = broken[3]["hourly"]["temperature_2m"][:-5]
        bad = tmp_path / "broken.json"
        bad.write_text(json.dumps(broken), encoding="utf-8")
        rt.pipeline.feed = ReplayFeed(bad)
        clock.now += timedelta(minutes=30)
        result = await rt.pipeline.poll()
        assert result.ok and result.transitions == {"continued": 80}
        assert sum(firing(rt).values()) == 80
        with rt.sessions() as session:
            run = session.get(ForecastRun, result.forecast_run_id)
            assert run is not None and run.error is not None
            assert "temperature_2m missing at 1 of 34 points" in run.error
            assert "location 3 (p37.3100_110.9300): hourly.temperature_2m has 235 values" in (
                run.error
            )
    finally:
        await rt.aclose()


async def test_gaps_in_the_forecast_keep_warnings_open(db_url: str, tmp_path: Path) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        gappy = json.loads(CALM.read_text(encoding="utf-8"))
        for location in gappy:  # the provider sent nulls for every value
            hourly = location["hourly"]
            for name in hourly:
                if name != "time":
                    hourly[name] = [None] * len(hourly["time"])
        path = tmp_path / "gappy.json"
        path.write_text(json.dumps(gappy), encoding="utf-8")
        rt.pipeline.feed = ReplayFeed(path)
        clock.now += timedelta(hours=1)
        result = await rt.pipeline.poll()
        # nothing usable ahead: a failed poll (tests/test_feed_health.py), clearing nothing
        assert not result.ok and result.error and "no usable value" in result.error
        assert "resolved" not in result.transitions
        assert sum(firing(rt).values()) == 80
    finally:
        await rt.aclose()


async def test_a_calm_week_warns_nobody(db_url: str) -> None:
    rt = runtime_for(db_url, Clock(AT), replay_file=CALM)
    try:
        result = await rt.pipeline.poll()
        assert result.ok and result.notifications == 0
        assert firing(rt) == {}
    finally:
        await rt.aclose()
