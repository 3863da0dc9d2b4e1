"""ReplayFeed: a recorded Open-Meteo answer served for the requested points."""

from __future__ import annotations

import json
import logging
import math
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.replay import ReplayFeed
from tests.qweather import hour, hourly_answer

RECORDING = Path(__file__).parent / "data" / "liulin_2026-01-03.json"
SEAT = ForecastPoint("p37.4300_110.8900", 37.43, 110.89)
NORTH = ForecastPoint("p37.5100_110.9100", 37.51, 110.91)


async def test_each_point_takes_the_nearest_recorded_location() -> None:
    # Recorded cells are at (37.430004, 110.89001) and (37.510002, 110.90999).
    near_north = ForecastPoint("p37.5300_110.9300", 37.53, 110.93)

    batch = await ReplayFeed(RECORDING).fetch([near_north, SEAT], ["temperature_2m"])

    north_first_hour = -2.1 - 1.6
    assert batch.point_ids == (near_north.id, SEAT.id)
    assert batch.variables["temperature_2m"][:, 0] == pytest.approx([north_first_hour, -2.1])


async def test_points_sharing_a_recorded_location_get_the_same_values() -> None:
    beside = ForecastPoint("p37.4500_110.8700", 37.45, 110.87)

    batch = await ReplayFeed(RECORDING).fetch([SEAT, beside], ["snowfall"])

    assert np.array_equal(batch.variables["snowfall"][0], batch.variables["snowfall"][1])


async def test_a_point_too_far_from_every_recording_is_an_error_naming_it() -> None:
    taiyuan = ForecastPoint("p37.8700_112.5500", 37.87, 112.55)

    with pytest.raises(FeedError, match=r"within 0.25° of point p37.8700_112.5500"):
        await ReplayFeed(RECORDING).fetch([SEAT, taiyuan], ["temperature_2m"])


async def test_a_variable_not_recorded_is_left_out_and_said() -> None:
    batch = await ReplayFeed(RECORDING).fetch([SEAT], ["relative_humidity_2m", "temperature_2m"])

    assert set(batch.variables) == {"temperature_2m"}
    assert batch.problems == (
        "location 0 (p37.4300_110.8900): hourly.relative_humidity_2m is missing",
    )


async def test_a_variable_missing_where_several_points_share_a_location_is_said_for_each() -> None:
    beside = ForecastPoint("p37.4500_110.8700", 37.45, 110.87)  # SEAT's recorded location too

    batch = await ReplayFeed(RECORDING).fetch(
        [SEAT, NORTH, beside], ["relative_humidity_2m", "snowfall"]
    )

    assert batch.problems == ("hourly.relative_humidity_2m is missing (all 3 locations)",)
    assert np.array_equal(batch.variables["snowfall"][0], batch.variables["snowfall"][2])


async def test_every_point_too_far_is_named_in_one_error() -> None:
    taiyuan = ForecastPoint("p37.8700_112.5500", 37.87, 112.55)
    xian = ForecastPoint("p34.2700_108.9500", 34.27, 108.95)

    with pytest.raises(FeedError) as refused:
        await ReplayFeed(RECORDING).fetch([taiyuan, SEAT, xian], ["temperature_2m"])

    assert len(refused.value.problems) == 2
    assert "point p37.8700_112.5500" in refused.value.problems[0]
    assert "point p34.2700_108.9500" in refused.value.problems[1]


async def test_source_names_the_file() -> None:
    feed = ReplayFeed(RECORDING)

    batch = await feed.fetch([SEAT], ["temperature_2m"])

    assert feed.source == batch.source == "replay:liulin_2026-01-03.json"


async def test_issued_at_defaults_to_first_hour_plus_past_days() -> None:
    batch = await ReplayFeed(RECORDING, past_days=1).fetch([SEAT], ["temperature_2m"])

    assert batch.issued_at == datetime(2026, 1, 4, tzinfo=UTC)


async def test_issued_at_can_be_given() -> None:
    given = datetime(2026, 1, 2, 22, 0, tzinfo=UTC)

    batch = await ReplayFeed(RECORDING, issued_at=given).fetch([SEAT], ["temperature_2m"])

    assert batch.issued_at == given


async def test_a_single_object_recording_serves_nearby_points(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    single.write_text(json.dumps(json.loads(RECORDING.read_text(encoding="utf-8"))[0]))

    batch = await ReplayFeed(single).fetch([SEAT], ["weather_code"])

    assert batch.shape == (1, 24)


async def test_a_missing_file_is_a_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="cannot read replay file"):
        await ReplayFeed(tmp_path / "absent.json").fetch([SEAT], ["temperature_2m"])


async def test_a_file_that_is_not_json_is_a_feed_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"latitude": 37.43,')

    with pytest.raises(FeedError, match="not JSON"):
        await ReplayFeed(broken).fetch([SEAT], ["temperature_2m"])


async def test_a_recorded_error_body_is_a_feed_error(tmp_path: Path) -> None:
    error = tmp_path / "error.json"
    error.write_text(json.dumps({"error": True, "reason": "Latitude must be in range"}))

    with pytest.raises(FeedError, match="records an Open-Meteo error"):
        await ReplayFeed(error).fetch([SEAT], ["temperature_2m"])


async def test_a_rebased_replay_moves_the_recording_by_whole_days_to_today() -> None:
    now = datetime(2026, 12, 1, 9, 41, tzinfo=UTC)
    original = await ReplayFeed(RECORDING).fetch([SEAT], ["temperature_2m"])
    moved = await ReplayFeed(RECORDING, rebase_to=lambda: now).fetch([SEAT], ["temperature_2m"])
    # whole days: the hours of the day (local days, day and night) stay as recorded
    assert moved.issued_at - original.issued_at == timedelta(days=332)
    assert moved.issued_at <= now < moved.issued_at + timedelta(days=1)
    shift = moved.times - original.times
    assert set(shift.tolist()) == {moved.issued_at - original.issued_at}
    assert np.array_equal(
        moved.variables["temperature_2m"], original.variables["temperature_2m"], equal_nan=True
    )


# --- a QWeather recording: told apart by its content


def qweather_recording(tmp_path: Path) -> Path:
    start = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
    seat = hourly_answer(start, 6, lambda k: hour(start, k, temp=str(-k)))
    north = hourly_answer(start, 6, lambda k: hour(start, k, temp=str(-10 - k)))
    path = tmp_path / "qweather.json"
    path.write_text(json.dumps({"110.89,37.43": seat, "110.91,37.51": north}), encoding="utf-8")
    return path


async def test_a_qweather_recording_serves_each_point_its_nearest_location(tmp_path: Path) -> None:
    feed = ReplayFeed(qweather_recording(tmp_path), max_distance_deg=0.02)
    batch = await feed.fetch([NORTH, SEAT], ["temperature_2m", "wind_speed_10m"])
    assert batch.variables["temperature_2m"][:, 1].tolist() == [-11.0, -1.0]
    assert batch.variables["wind_speed_10m"][0, 0] == pytest.approx(5.0)  # 18 km/h
    assert str(batch.times[0]) == "2026-01-06T16:00:00"
    assert batch.issued_at == datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # no past days in it


async def test_a_qweather_recording_is_not_substituted_beyond_the_resolution(
    tmp_path: Path,
) -> None:
    taiyuan = ForecastPoint("p37.8700_112.5500", 37.87, 112.55)
    feed = ReplayFeed(qweather_recording(tmp_path), max_distance_deg=0.02)
    with pytest.raises(FeedError, match=r"no recorded location within 0\.02° of point p37\.8700"):
        await feed.fetch([taiyuan], ["temperature_2m"])


async def test_a_qweather_recording_keyed_by_something_else_is_refused(tmp_path: Path) -> None:
    path = qweather_recording(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({"Liulin": data["110.89,37.43"]}), encoding="utf-8")
    with pytest.raises(FeedError, match="recorded location 'Liulin' is not 'longitude,latitude'"):
        await ReplayFeed(path).fetch([SEAT], ["temperature_2m"])


async def test_a_qweather_recording_says_every_location_problem_at_once(tmp_path: Path) -> None:
    path = qweather_recording(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Liulin"] = data["110.91,37.51"]
    bad = hourly_answer(datetime(2026, 1, 6, 16, 0, tzinfo=UTC), 6)
    bad["hourly"][3]["temp"] = "N/A"
    data["110.89,37.43"] = bad
    path.write_text(json.dumps(data), encoding="utf-8")
    taiyuan = ForecastPoint("p37.8700_112.5500", 37.87, 112.55)
    with pytest.raises(FeedError) as error:
        await ReplayFeed(path, max_distance_deg=0.02).fetch([SEAT, taiyuan], ["temperature_2m"])
    assert len(error.value.problems) == 2
    assert "recorded location 'Liulin' is not 'longitude,latitude'" in error.value.problems[0]
    assert "no recorded location within 0.02° of point p37.8700" in error.value.problems[1]
    # a value that is not a number is masked at its location, as in the live feed
    del data["Liulin"]
    path.write_text(json.dumps(data), encoding="utf-8")
    batch = await ReplayFeed(path, max_distance_deg=0.02).fetch([SEAT], ["temperature_2m"])
    assert np.isnan(batch.variables["temperature_2m"]).all()
    assert batch.problems == (
        "location 110.89,37.43: hourly.temperature_2m is masked as missing: "
        "hourly[3].temp is 'N/A', expected a number",
    )


# --- re-polls: an unchanged recording is not decoded again, a changed one always is


def grid_recording(path: Path, locations: list[tuple[float, float]], offset: float = 0.0) -> None:
    """An Open-Meteo recording of `locations`, each one's temperature its index + `offset`."""
    path.write_text(
        json.dumps(
            [
                {
                    "latitude": lat,
                    "longitude": lon,
                    "utc_offset_seconds": 0,
                    "hourly_units": {"time": "unixtime", "temperature_2m": "°C"},
                    "hourly": {
                        "time": [1767225600, 1767229200],
                        "temperature_2m": [index + offset, index + offset],
                    },
                }
                for index, (lat, lon) in enumerate(locations)
            ]
        ),
        encoding="utf-8",
    )


async def test_a_re_poll_of_an_unchanged_recording_gives_the_batch_it_gave() -> None:
    first = await ReplayFeed(RECORDING).fetch([SEAT, NORTH], ["snowfall", "temperature_2m"])
    again = await ReplayFeed(RECORDING).fetch([SEAT, NORTH], ["temperature_2m", "snowfall"])
    other = await ReplayFeed(RECORDING).fetch([NORTH, SEAT], ["snowfall", "temperature_2m"])

    assert again is first  # not decoded again: the same batch, shared …
    with pytest.raises(ValueError, match="read-only"):  # … so no poll may alter it
        first.variables["temperature_2m"][0, 0] = 99.0
    assert other is not first and other.point_ids == (NORTH.id, SEAT.id)  # other points


async def test_a_recording_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    # given a recording polled once, then rewritten with the same size and time stamp
    path = tmp_path / "drill.json"
    grid_recording(path, [(37.43, 110.89)], offset=1.0)
    feed = ReplayFeed(path)
    first = await feed.fetch([SEAT], ["temperature_2m"])
    stamp = path.stat()
    grid_recording(path, [(37.43, 110.89)], offset=2.0)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == stamp.st_size

    # when the same feed polls it again, then what it serves is what the file holds now
    second = await feed.fetch([SEAT], ["temperature_2m"])
    assert first.variables["temperature_2m"].tolist() == [[1.0, 1.0]]
    assert second.variables["temperature_2m"].tolist() == [[2.0, 2.0]]


async def test_a_re_poll_says_the_masked_variables_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked = ["relative_humidity_2m", "temperature_2m"]
    with caplog.at_level(logging.WARNING, logger="yujing.feed"):
        for _ in range(2):
            await ReplayFeed(RECORDING).fetch([SEAT], asked)
    said = [r.getMessage() for r in caplog.records if "masked as missing" in r.getMessage()]
    assert (
        said
        == [
            "replay:liulin_2026-01-03.json: masked as missing: location 0 (p37.4300_110.8900): "
            "hourly.relative_humidity_2m is missing"
        ]
        * 2
    )


async def test_each_point_takes_the_nearest_location_of_thousands(tmp_path: Path) -> None:
    # given a grid of recorded locations with some twice (ties) and some far away,
    # and points anywhere among them, some exactly half-way between two
    rng = random.Random(7)
    grid = [(37.0 + 0.05 * i, 110.0 + 0.05 * j) for i in range(40) for j in range(40)]
    recorded = [*grid, grid[17], grid[400], (10.0, 10.0)]
    rng.shuffle(recorded)
    path = tmp_path / "province.json"
    grid_recording(path, recorded)
    points = [
        ForecastPoint(
            f"p{k}", round(rng.uniform(37.0, 38.95), 4), round(rng.uniform(110, 111.9), 4)
        )
        for k in range(1400)  # more than one block of the search (`replay._BLOCK_CELLS`)
    ] + [ForecastPoint("half", 37.025, 110.0), ForecastPoint("on", *grid[17])]

    # when they are served
    batch = await ReplayFeed(path, max_distance_deg=0.05).fetch(points, ["temperature_2m"])

    # then each takes the location measuring every one says is nearest, the first on a tie
    def nearest(point: ForecastPoint) -> int:
        distances = [
            math.hypot(lat - point.latitude, lon - point.longitude) for lat, lon in recorded
        ]
        return min(range(len(recorded)), key=distances.__getitem__)

    assert batch.variables["temperature_2m"][:, 0].tolist() == [
        float(nearest(point)) for point in points
    ]
