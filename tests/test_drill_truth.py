"""The drill tells the truth: a recording that cannot answer fails, naming the file.

Each bad recording is a small variant of the bundled cold front written to
tmp_path: the drill exits non-zero with one line saying what is wrong, never
"no alert". Without --at it drills at an instant the recording covers and says
which; zones the rules could not decide are counted and explained; and the
daemon's rebased replay warns exactly as the drill at the recorded instant.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.drill import run_drill
from dispatcher.feeds.replay import rebase_days
from dispatcher.runtime import open_runtime
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage.models import Alert
from tests.support import COLDWAVE, LIULIN, replay_settings

runner = CliRunner()
Locations = list[dict[str, Any]]


@pytest.fixture(autouse=True)
def no_yujing_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read


def variant(tmp_path: Path, change: Callable[[Locations], None]) -> Path:
    """The cold front's recording with `change` applied, written to tmp_path."""
    locations: Locations = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    change(locations)
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(locations, ensure_ascii=False), encoding="utf-8")
    return path


def drill(path: Path, *extra: str) -> Any:
    return runner.invoke(app, ["drill", "--config", str(LIULIN), "--replay", str(path), *extra])


def failed_once(result: Any, path: Path) -> str:
    """The drill failed with one line naming the file; that line."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert "no alert" not in result.output and "Traceback" not in result.output
    return str(lines[0])


AT = ("--at", "2026-01-07T00:00:00+08:00")


def test_a_truncated_recording_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "truncated.json"
    text = COLDWAVE.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")

    line = failed_once(drill(path, *AT), path)

    assert "is not JSON" in line


def test_a_recording_without_hourly_fails(tmp_path: Path) -> None:
    path = variant(tmp_path, lambda locs: locs[3].pop("hourly"))

    line = failed_once(drill(path, *AT), path)

    assert "location 3" in line and "hourly is missing" in line


def test_a_recording_lacking_a_variable_the_rules_read_names_it_and_its_rules(
    tmp_path: Path,
) -> None:
    def drop_snowfall(locations: Locations) -> None:
        for location in locations:
            del location["hourly"]["snowfall"]

    path = variant(tmp_path, drop_snowfall)

    line = failed_once(drill(path, *AT), path)

    assert "hourly.snowfall is missing" in line
    assert "the rules read it: cma-blizzard" in line


def test_a_recording_in_local_time_fails(tmp_path: Path) -> None:
    def local(locations: Locations) -> None:
        for location in locations:
            location["utc_offset_seconds"] = 28800

    path = variant(tmp_path, local)

    assert "times are local (utc_offset_seconds=28800)" in failed_once(drill(path, *AT), path)


def test_a_recording_in_other_units_fails(tmp_path: Path) -> None:
    def fahrenheit(locations: Locations) -> None:
        for location in locations:
            location["hourly_units"]["temperature_2m"] = "°F"

    path = variant(tmp_path, fahrenheit)

    line = failed_once(drill(path, *AT), path)

    assert "hourly_units.temperature_2m is '°F', expected '°C'" in line


def test_an_instant_the_recording_does_not_hold_fails_saying_both_spans() -> None:
    line = failed_once(drill(COLDWAVE, "--at", "2026-02-07T00:00:00+08:00"), COLDWAVE)

    assert "does not cover the instant 2026-02-07 00:00" in line
    assert "recorded 2026-01-03 08:00 – 2026-01-13 07:00 (Asia/Shanghai)" in line
    assert "the rules read 2026-02-03 00:00 – 2026-02-10 23:00 (96 h before" in line


def test_without_at_the_drill_chooses_a_recorded_instant_and_says_it() -> None:
    result = drill(COLDWAVE, "--json")

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "no --at: drilling at 2026-01-07 08:00 (Asia/Shanghai), the recording's first hour "
        "2026-01-03 08:00 plus the 96 h the rules read before an instant"
    )
    alerts = json.loads(result.stdout)["alerts"]
    assert {a["hazard"] for a in alerts} == {"cold_wave", "road_icing"}
    assert len(alerts) == 80


def test_a_location_beyond_the_point_resolution_is_not_substituted(tmp_path: Path) -> None:
    def moved(locations: Locations) -> None:
        locations[0]["latitude"] += 0.05  # the nearest location to its point, 0.05° off

    path = variant(tmp_path, moved)

    line = failed_once(drill(path, *AT), path)

    assert "no recorded location within 0.02° of point p37.2900_110.7500" in line
    assert "substituting it is refused" in line
    assert "zones at that point: LL-" in line


def test_undecided_zones_are_counted_and_explained(tmp_path: Path) -> None:
    # temperatures lost from 01-07 12:00 local at every location
    def lost(locations: Locations) -> None:
        for location in locations:
            hourly = location["hourly"]
            start = hourly["time"].index("2026-01-07T04:00")
            for name in ("temperature_2m", "soil_temperature_0cm"):
                hourly[name][start:] = [None] * (len(hourly[name]) - start)

    path = variant(tmp_path, lost)

    result = asyncio.run(run_drill(LIULIN, path, datetime(2026, 1, 7, 0, tzinfo=UTC)))

    undecided = {u.hazard: u for u in result.undecided}
    assert undecided, "temperatures missing in the window leave hazards undecided"
    assert all(u.zones > 0 for u in undecided.values())
    assert any(
        "temperature_2m missing from 2026-01-07 12:00" in u.reason for u in undecided.values()
    ), [str(u) for u in result.undecided]
    cli = drill(path, "--at", "2026-01-07T08:00:00+08:00")
    assert cli.exit_code == 0, cli.output
    assert "undecided: " in cli.stderr and " zones × " in cli.stderr


@pytest.mark.parametrize("minute", [0, 47])
async def test_the_daemons_replay_warns_as_the_drill_at_the_replayed_instant(
    db_url: str, minute: int
) -> None:
    now = datetime(2026, 12, 4, 2, minute, tzinfo=UTC)
    settings = replay_settings(LIULIN, db_url, replay_rebase=True)
    runtime = open_runtime(settings, clock=lambda: now, console=io.StringIO(), wake=lambda: None)
    try:
        polled = await runtime.pipeline.poll()
        assert polled.ok, polled.error
        with runtime.sessions() as session:
            daemon = {
                (a.zone_id, a.hazard, a.level)
                for a in session.scalars(select(Alert).where(Alert.state == AlertState.FIRING))
                if a.kind != AlertKind.EVENT
            }
    finally:
        await runtime.aclose()
    # the recording is issued at 01-08 00:00 UTC (its first hour plus 5 past days)
    issued = datetime(2026, 1, 8, tzinfo=UTC)
    days = rebase_days(issued, now)
    recorded = now - timedelta(days=days)
    assert recorded == datetime(2026, 1, 8, 2, minute, tzinfo=UTC)

    result = await run_drill(LIULIN, COLDWAVE, recorded)

    drilled = {(a["zone_id"], a["hazard"], a["level"]) for a in result.alerts}
    assert daemon, "the replayed cold front warns"
    assert daemon == drilled
