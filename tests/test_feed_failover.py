"""Several feeds: Open-Meteo failing, QWeather serving — warnings still go out, and people hear
which source is down (issue 15).

The runtime, pipeline, database and (last test) the daemon's scheduler and
HTTP server are real; only the two providers are mocked, with respx, at the
network edge. The county is mostly the example one with its freezing-rain rule
only: it reads `weather_code`, which QWeather serves (from the hour's icon). The
daemon test runs every example rule: those reading what no source serves
(visibility, soil temperature) are undecided and blind, the others still warn.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.daemon import _serve, bind_http
from dispatcher.drill import describe_sources, run_drill
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, ForecastRun
from dispatcher.web.app import health
from dispatcher.web.state import AppState
from tests.processes import free_port
from tests.qweather import API_HOST, GRID_URL, KEY_ID, PROJECT_ID, hour, hourly_answer, key_pair
from tests.support import COLDWAVE, LIULIN, Clock

OPEN_METEO = "https://api.open-meteo.com/v1/forecast"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=30)


@pytest.fixture
def county(tmp_path: Path) -> Path:
    """The example county with only its freezing-rain rule."""
    directory = tmp_path / "county"
    shutil.copytree(LIULIN, directory, ignore=shutil.ignore_patterns("scenarios"))
    for rule_file in (directory / "rules").glob("*.yaml"):
        if rule_file.name != "freezing_rain.yaml":
            rule_file.unlink()
    return directory


@pytest.fixture
def full_county(tmp_path: Path) -> Path:
    """The example county with all its rules."""
    directory = tmp_path / "full-county"
    shutil.copytree(LIULIN, directory, ignore=shutil.ignore_patterns("scenarios"))
    return directory


def freezing_rain_from(now: datetime) -> dict[str, Any]:
    """QWeather's answer at `now`: freezing rain (icon 313) from 2 to 6 hours ahead."""
    start = now.replace(minute=0, second=0, microsecond=0)
    return hourly_answer(
        start, 72, lambda k: hour(start, k, icon=313 if 2 <= k <= 6 else 104, precip="0.6")
    )


def settings_for(county: Path, db_url: str, **values: object) -> Settings:
    _, pem = key_pair()
    options: dict[str, object] = {
        "config_dir": county,
        "database_url": db_url,
        "feeds": "openmeteo,qweather",
        "qweather_api_host": API_HOST,
        "qweather_key_id": KEY_ID,
        "qweather_project_id": PROJECT_ID,
        "qweather_private_key": SecretStr(pem),
        "channel": "console",
        "poll_interval_seconds": int(INTERVAL.total_seconds()),
        "feed_retries": 0,
        "secret_key": SecretStr("s" * 32),
        **values,
    }
    return Settings(_env_file=None, **options)  # type: ignore[arg-type]


def feed_alerts(rt: Runtime) -> dict[str, str]:
    """Open feed-down alerts: source → state."""
    with rt.sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.hazard == "feed_down"))
        return {row.rule_id.removeprefix("feed:"): row.state for row in rows}


def warnings(rt: Runtime) -> list[Alert]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Alert).where(Alert.kind == "hazard", Alert.hazard == "freezing_rain")
            )
        )


@pytest.fixture
def providers(county: Path) -> Iterator[respx.MockRouter]:
    """Open-Meteo answers 503; QWeather answers freezing rain at the clock's hour."""
    with respx.mock(assert_all_called=False) as router:
        router.get(OPEN_METEO).mock(return_value=httpx.Response(503))
        router.route(host="127.0.0.1").pass_through()
        yield router


async def test_open_meteo_failing_qweather_serves_warnings_and_only_open_meteo_is_down(
    db_url: str, county: Path, providers: respx.MockRouter
) -> None:
    clock = Clock(AT)
    qweather = providers.get(GRID_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=freezing_rain_from(clock.now))
    )
    rt = open_runtime(
        settings_for(county, db_url), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    try:
        # given Open-Meteo down for three polls, two intervals apart at the last
        for _ in range(3):
            result = await rt.pipeline.poll()
            assert result.ok, result.error
            clock.now += INTERVAL
        clock.now -= INTERVAL
        rt.pipeline.check_feed()

        # then the warnings were issued from QWeather's data
        assert qweather.call_count > 0
        assert {a.level for a in warnings(rt)} == {"orange"}
        # and the feed-down alert is Open-Meteo's, not the "no source" one
        assert feed_alerts(rt) == {"open-meteo": "firing"}
        with rt.sessions() as session:
            runs = session.scalars(select(ForecastRun).order_by(ForecastRun.id)).all()
        assert [(r.source, r.ok) for r in runs[:3]] == [
            ("open-meteo", False),
            ("qweather", True),
            ("open-meteo+qweather", True),
        ]
        assert runs[1].variables == ["weather_code"]

        # and /healthz says which source served what and which is down
        state = AppState(
            sessions=rt.sessions,
            settings=rt.settings,
            clock=clock,
            feed_source=rt.feed.source,
            feed_members=("open-meteo", "qweather"),
            started_at=rt.pipeline.started_at,
        )
        response = health(state, full=True)
        body = bytes(response.body).decode()
        feed = json.loads(body)["feed"]
        assert feed["source"] == "open-meteo+qweather" and feed["ok"] is True
        assert feed["served"] == {"weather_code": "qweather"}
        assert feed["sources"]["open-meteo"]["ok"] is False
        assert feed["sources"]["open-meteo"]["down_alert"] is not None
        assert "HTTP 503" in feed["sources"]["open-meteo"]["last_error"]
        assert feed["sources"]["qweather"]["ok"] is True
        problems = json.loads(body)["problems"]
        assert "a forecast source failing" in problems
        assert not {"forecast feed stale", "forecast feed failing"} & set(problems)
    finally:
        await rt.aclose()


def open_meteo_answering(clock: Clock) -> Any:
    """Open-Meteo answering clear skies (WMO 0) for every location asked, at the clock's hour."""

    def answer(request: httpx.Request) -> httpx.Response:
        lats = request.url.params["latitude"].split(",")
        lons = request.url.params["longitude"].split(",")
        start = int(clock.now.replace(minute=0, second=0, microsecond=0).timestamp())
        hours = [start + 3600 * k for k in range(48)]
        locations = [
            {
                "latitude": float(lat),
                "longitude": float(lon),
                "utc_offset_seconds": 0,
                "hourly_units": {"time": "unixtime", "weather_code": "wmo code"},
                "hourly": {"time": hours, "weather_code": [0] * len(hours)},
            }
            for lat, lon in zip(lats, lons, strict=True)
        ]
        return httpx.Response(200, json=locations if len(locations) > 1 else locations[0])

    return answer


async def test_a_standby_never_asked_is_not_down_and_a_recovered_source_ends_its_alert(
    db_url: str, county: Path, providers: respx.MockRouter
) -> None:
    clock = Clock(AT)
    qweather = providers.get(GRID_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=freezing_rain_from(clock.now))
    )
    rt = open_runtime(
        settings_for(county, db_url), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    try:
        # given Open-Meteo down for two intervals: its alert is raised
        for _ in range(3):
            assert (await rt.pipeline.poll()).ok
            clock.now += INTERVAL
        assert feed_alerts(rt) == {"open-meteo": "firing"}
        # when it answers again, for three more intervals
        providers.get(OPEN_METEO).mock(side_effect=open_meteo_answering(clock))
        asked = qweather.call_count
        for _ in range(3):
            assert (await rt.pipeline.poll()).ok
            clock.now += INTERVAL
        # then its alert is resolved, and QWeather — not asked since — is not "down"
        assert feed_alerts(rt) == {"open-meteo": "resolved"}
        assert qweather.call_count == asked
    finally:
        await rt.aclose()


async def test_both_failing_raises_the_no_source_alert_too(
    db_url: str, county: Path, providers: respx.MockRouter
) -> None:
    providers.get(GRID_URL).mock(return_value=httpx.Response(402, json={"code": "402"}))
    clock = Clock(AT)
    rt = open_runtime(
        settings_for(county, db_url), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    try:
        for _ in range(3):
            result = await rt.pipeline.poll()
            assert not result.ok
            clock.now += INTERVAL
        assert result.error is not None
        assert result.error.startswith("no source served the forecast (open-meteo: HTTP 503")
        assert "qweather: location" in result.error and "quota used up" in result.error
        assert feed_alerts(rt) == {
            "open-meteo+qweather": "firing",
            "open-meteo": "firing",
            "qweather": "firing",
        }
    finally:
        await rt.aclose()


async def test_the_daemon_fails_over_and_healthz_says_so(
    tmp_path: Path, full_county: Path, providers: respx.MockRouter
) -> None:
    providers.get(GRID_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=freezing_rain_from(datetime.now(UTC)))
    )
    port = free_port()
    settings = settings_for(
        full_county,
        f"sqlite:///{tmp_path / 'yujing.db'}",
        poll_interval_seconds=1,
        poll_jitter_seconds=0,
        http_port=port,
        metrics_token=SecretStr("t" * 32),
    )
    rt = open_runtime(settings, console=io.StringIO())
    listener = bind_http(settings.http_host, port)
    daemon = asyncio.create_task(_serve(rt, listener))
    headers = {"Authorization": f"Bearer {'t' * 32}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body: dict[str, Any] = {}
            feed: dict[str, Any] = {}
            for _ in range(100):
                await asyncio.sleep(0.1)
                try:
                    body = (await client.get("/healthz", headers=headers)).json()
                except httpx.HTTPError:
                    continue
                feed = body["feed"]
                if feed.get("sources", {}).get("open-meteo", {}).get("down_alert"):
                    break
        # QWeather serves what it has a field for; nothing serves visibility or soil
        # temperature, which leaves only the rules reading them undecided
        assert feed["served"]["weather_code"] == "qweather"
        assert feed["served"]["temperature_2m"] == "qweather"
        assert not {"visibility", "soil_temperature_0cm"} & set(feed["served"])
        assert feed["sources"]["open-meteo"]["down_alert"]
        assert feed["sources"]["qweather"]["ok"] is True
        assert feed["down_alert"] is None  # a source still serves: not "no source"
        assert {a.level for a in warnings(rt)} == {"orange"}
        undecided = body["undecided"]
        assert {"fog", "road_icing"} <= set(undecided["by_hazard"])
        assert "freezing_rain" not in undecided["by_hazard"]
        assert undecided["blind_alert"] is not None and "hazards blind" in body["problems"]
        fog = next(u["reason"] for u in undecided["reasons"] if u["hazard"] == "fog")
        assert "visibility" in fog
    finally:
        await asyncio.sleep(0)  # the daemon has installed its signal handlers
        if not daemon.done():
            os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends; the daemon stops cleanly
        await asyncio.wait_for(daemon, 30)
        await rt.aclose()
        listener.close()


# --- the drill: recordings chained in order, and which served what


def recordings(tmp_path: Path) -> tuple[Path, Path]:
    """The cold-wave recording without weather codes, and QWeather's answers for the same
    locations with freezing rain 2–6 hours after the drill's hour."""
    data = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    for location in data:
        location["hourly"]["weather_code"] = [None] * len(location["hourly"]["time"])
    openmeteo = tmp_path / "openmeteo.json"
    openmeteo.write_text(json.dumps(data), encoding="utf-8")
    answer = freezing_rain_from(DRILL_AT)
    qweather = tmp_path / "qweather.json"
    recorded = {f"{loc['longitude']:.2f},{loc['latitude']:.2f}": answer for loc in data}
    qweather.write_text(json.dumps(recorded), encoding="utf-8")
    return openmeteo, qweather


DRILL_AT = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)


async def test_a_drill_on_two_recordings_says_which_served_what_and_warns_from_both(
    tmp_path: Path,
) -> None:
    openmeteo, qweather = recordings(tmp_path)
    result = await run_drill(LIULIN, [openmeteo, qweather], DRILL_AT)
    assert result.sources["weather_code"] == "replay:qweather.json"
    assert result.sources["temperature_2m"] == "replay:openmeteo.json"
    assert result.sources["visibility"] == "replay:openmeteo.json"
    hazards = {a["hazard"] for a in result.alerts}
    assert "freezing_rain" in hazards  # from QWeather's icons
    assert "cold_wave" in hazards  # from Open-Meteo's temperatures
    assert describe_sources({"a": "x", "b": "y", "c": "x"}) == [
        "forecast from x: a, c",
        "forecast from y: b",
    ]


def test_the_drill_command_prints_the_sources(tmp_path: Path) -> None:
    openmeteo, qweather = recordings(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "drill",
            "--config",
            str(LIULIN),
            "--replay",
            str(openmeteo),
            "--replay",
            str(qweather),
            "--at",
            DRILL_AT.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "forecast from replay:qweather.json: weather_code" in result.output
    assert "freezing_rain" in result.output
