"""parse_openmeteo and batch_checksum: what a valid Open-Meteo response becomes,
and which malformed ones are refused."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispatcher.feeds.base import FeedError, ForecastPoint, at_locations, batch_checksum
from dispatcher.feeds.openmeteo import parse_openmeteo
from rules.variables import EXPECTED_UNITS

DATA = Path(__file__).parent / "data"
ISSUED = datetime(2026, 1, 3, 0, 5, tzinfo=UTC)
SEAT = ForecastPoint("p37.4300_110.8900", 37.43, 110.89)
NORTH = ForecastPoint("p37.5100_110.9100", 37.51, 110.91)
VARIABLES = ["temperature_2m", "visibility", "weather_code"]


def recorded(name: str = "liulin_2026-01-03.json") -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def parse(payload: Any, points: list[ForecastPoint] | None = None, variables: Any = None) -> Any:
    return parse_openmeteo(
        payload,
        [SEAT, NORTH] if points is None else points,
        VARIABLES if variables is None else variables,
        "test",
        ISSUED,
    )


def test_list_response_becomes_points_by_hours_arrays() -> None:
    batch = parse(recorded())

    assert batch.point_ids == (SEAT.id, NORTH.id)
    assert batch.shape == (2, 24)
    assert set(batch.variables) == set(VARIABLES)
    assert batch.variables["temperature_2m"][0, 0] == pytest.approx(-2.1)
    assert batch.variables["weather_code"][1, 10] == 73
    assert batch.units == {"temperature_2m": "°C", "visibility": "m", "weather_code": "wmo code"}
    assert batch.source == "test"
    assert batch.issued_at == ISSUED


def test_times_are_naive_utc_hours() -> None:
    batch = parse(recorded())

    assert batch.times.dtype == np.dtype("datetime64[s]")
    assert batch.times[0] == np.datetime64("2026-01-03T00:00:00")
    assert batch.times[-1] == np.datetime64("2026-01-03T23:00:00")


def test_coordinates_are_the_requested_points_not_the_grid_cells() -> None:
    batch = parse(recorded())

    assert batch.latitudes.tolist() == [37.43, 37.51]
    assert batch.longitudes.tolist() == [110.89, 110.91]


def test_single_object_response_serves_one_point() -> None:
    batch = parse(recorded("single_unixtime.json"), points=[SEAT])

    assert batch.shape == (1, 24)
    assert batch.times[0] == np.datetime64("2026-01-03T00:00:00")


def test_unixtime_and_iso_responses_give_the_same_batch() -> None:
    iso = parse(recorded()[0], points=[SEAT])
    unix = parse(recorded("single_unixtime.json"), points=[SEAT])

    assert batch_checksum(iso) == batch_checksum(unix)


def test_only_requested_variables_are_kept() -> None:
    batch = parse(recorded(), variables=["snowfall"])

    assert list(batch.variables) == ["snowfall"]
    assert batch.units == {"snowfall": "cm"}


def test_nulls_become_nan_never_zero(caplog: pytest.LogCaptureFixture) -> None:
    payload = recorded()
    payload[1]["hourly"]["temperature_2m"][5] = None

    with caplog.at_level(logging.INFO, logger="yujing.feed"):
        batch = parse(payload)

    assert np.isnan(batch.variables["temperature_2m"][1, 5])
    assert np.isnan(batch.variables["visibility"][:, 22:]).all()  # recorded as null
    assert np.count_nonzero(np.isnan(batch.variables["temperature_2m"])) == 1
    assert "temperature_2m=1" in caplog.text and "visibility=4" in caplog.text


def test_nan_and_infinity_become_nan() -> None:
    payload = recorded()
    payload[0]["hourly"]["temperature_2m"][0] = float("nan")
    payload[0]["hourly"]["temperature_2m"][1] = float("inf")

    batch = parse(payload)

    assert np.isnan(batch.variables["temperature_2m"][0, :2]).all()


def test_an_error_body_is_refused_with_its_reason() -> None:
    body = {"error": True, "reason": "Cannot initialize WeatherVariable from invalid String value"}

    with pytest.raises(FeedError, match="Cannot initialize WeatherVariable"):
        parse(body)


def test_a_list_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(FeedError, match="has 2 location"):
        parse(recorded(), points=[SEAT])


def test_a_missing_variable_is_masked_at_its_location_and_said() -> None:
    payload = recorded()
    del payload[1]["hourly"]["visibility"]

    batch = parse(payload)

    assert batch.problems == ("location 1 (p37.5100_110.9100): hourly.visibility is missing",)
    assert np.isnan(batch.variables["visibility"][1]).all()
    assert not np.isnan(batch.variables["visibility"][0]).all()  # the other location stays
    assert batch.variables["temperature_2m"][1, 10] == pytest.approx(
        parse(recorded()).variables["temperature_2m"][1, 10]
    )


def test_a_variable_missing_everywhere_is_left_out_of_the_batch_and_said_once() -> None:
    payload = recorded()
    for location in payload:
        del location["hourly"]["visibility"]
        del location["hourly_units"]["visibility"]

    batch = parse(payload)

    assert "visibility" not in batch.variables and "visibility" not in batch.units
    assert batch.problems == ("hourly.visibility is missing (all 2 locations)",)


def test_a_mis_sized_array_is_masked() -> None:
    payload = recorded()
    payload[0]["hourly"]["temperature_2m"] = payload[0]["hourly"]["temperature_2m"][:20]

    batch = parse(payload)

    assert batch.problems == (
        "location 0 (p37.4300_110.8900): hourly.temperature_2m has 20 values, expected 24",
    )
    assert np.isnan(batch.variables["temperature_2m"][0]).all()


@pytest.mark.parametrize(
    ("variable", "unit"),
    [("temperature_2m", "°F"), ("visibility", "ft"), ("weather_code", None)],
)
def test_a_wrong_or_missing_unit_masks_the_variable(variable: str, unit: str | None) -> None:
    payload = recorded()
    if unit is None:
        del payload[0]["hourly_units"][variable]
    else:
        payload[0]["hourly_units"][variable] = unit

    batch = parse(payload)

    [problem] = batch.problems
    assert problem.startswith(f"location 0 (p37.4300_110.8900): hourly_units.{variable} is ")
    assert np.isnan(batch.variables[variable][0]).all()  # never converted nor guessed at


def test_wind_in_km_per_hour_is_not_taken_for_metres_per_second() -> None:
    payload = recorded()
    payload[0]["hourly_units"]["wind_speed_10m"] = "km/h"

    batch = parse(payload, variables=["wind_speed_10m"])

    assert "'km/h', expected 'm/s'" in batch.problems[0]


def test_a_non_hourly_time_axis_is_refused() -> None:
    payload = recorded()
    for location in payload:
        location["hourly"]["time"][12] = "2026-01-03T12:30"

    with pytest.raises(FeedError, match="not hourly ascending"):
        parse(payload)


def test_a_descending_time_axis_is_refused() -> None:
    payload = recorded()
    for location in payload:
        location["hourly"]["time"].reverse()

    with pytest.raises(FeedError, match="not hourly ascending"):
        parse(payload)


def test_locations_with_different_time_axes_are_refused() -> None:
    payload = recorded()
    payload[1]["hourly"]["time"] = [
        t.replace("2026-01-03", "2026-01-04") for t in payload[1]["hourly"]["time"]
    ]

    with pytest.raises(FeedError, match=r"location 1 .*hourly.time differs from location 0"):
        parse(payload)


def test_local_time_strings_are_refused() -> None:
    payload = recorded()
    for location in payload:
        location["utc_offset_seconds"] = 28800

    with pytest.raises(FeedError, match="timezone=GMT"):
        parse(payload)


def test_a_text_value_is_masked_not_coerced() -> None:
    payload = recorded()
    payload[0]["hourly"]["temperature_2m"][3] = "-4.5"

    batch = parse(payload)

    assert batch.problems == (
        "location 0 (p37.4300_110.8900): hourly.temperature_2m[3] is '-4.5', "
        "expected a number or null",
    )
    assert np.isnan(batch.variables["temperature_2m"][0]).all()


def test_every_problem_of_a_refused_answer_is_in_its_one_message() -> None:
    payload = recorded()
    payload[0]["hourly"]["time"].reverse()  # fatal: no usable time axis
    payload[0]["hourly_units"]["temperature_2m"] = "°F"
    del payload[1]["hourly"]["visibility"]
    payload[1]["hourly"]["weather_code"][2] = "fog"

    with pytest.raises(FeedError) as refused:
        parse(payload)

    assert refused.value.problems == (
        "location 0 (p37.4300_110.8900): hourly.time is not hourly ascending: "
        "2026-01-03T23:00:00 is followed by 2026-01-03T22:00:00",
        "location 0 (p37.4300_110.8900): hourly_units.temperature_2m is '°F', expected '°C'",
        "location 1 (p37.5100_110.9100): hourly.visibility is missing",
        "location 1 (p37.5100_110.9100): hourly.weather_code[2] is 'fog', "
        "expected a number or null",
    )
    assert refused.value.reason == "; ".join(refused.value.problems)


def test_locations_that_are_not_objects_are_all_named() -> None:
    with pytest.raises(FeedError) as refused:
        parse(["x", 3])

    assert refused.value.problems == (
        "location 0: is a JSON str, expected object",
        "location 1: is a JSON int, expected object",
    )


def test_a_location_without_hourly_data_is_refused() -> None:
    payload = recorded()
    del payload[0]["hourly"]

    with pytest.raises(FeedError, match=r"location 0 .*hourly is missing"):
        parse(payload)


def test_an_unknown_variable_is_refused_before_reading_the_payload() -> None:
    with pytest.raises(FeedError, match=r"unknown forecast variable.*cloud_cover"):
        parse(recorded(), variables=["cloud_cover", "temperature_2m"])


def test_every_expected_unit_is_a_known_open_meteo_unit() -> None:
    known = {"°C", "mm", "cm", "m", "m/s", "wmo code", "%"}

    assert all(units <= known for units in EXPECTED_UNITS.values())


def test_checksum_is_stable_across_parses() -> None:
    assert batch_checksum(parse(recorded())) == batch_checksum(parse(recorded()))


def test_checksum_ignores_source_and_issue_time() -> None:
    first = parse_openmeteo(recorded(), [SEAT, NORTH], VARIABLES, "a", ISSUED)
    later = parse_openmeteo(recorded(), [SEAT, NORTH], VARIABLES, "b", datetime.now(UTC))

    assert batch_checksum(first) == batch_checksum(later)


def test_checksum_changes_when_one_value_changes() -> None:
    payload = recorded()
    changed = copy.deepcopy(payload)
    changed[1]["hourly"]["temperature_2m"][17] += 0.1

    assert batch_checksum(parse(payload)) != batch_checksum(parse(changed))


def test_checksum_changes_when_a_value_goes_missing() -> None:
    payload = recorded()
    changed = copy.deepcopy(payload)
    changed[0]["hourly"]["weather_code"][0] = None

    assert batch_checksum(parse(payload)) != batch_checksum(parse(changed))


def test_checksum_changes_with_point_ids() -> None:
    other = ForecastPoint("p37.5300_110.9100", 37.53, 110.91)

    assert batch_checksum(parse(recorded())) != batch_checksum(parse(recorded(), [SEAT, other]))


def test_a_problem_at_many_locations_is_said_once_naming_the_first_few() -> None:
    found = [(k, "hourly.snowfall is missing") for k in (0, 2, 3, 5, 7, 8, 9)]
    labels = [f"location {k}" for k in range(12)]

    assert at_locations(found, labels) == [
        "hourly.snowfall is missing (7 of 12 locations: location 0, location 2, location 3, "
        "location 5, location 7 …)"
    ]


def test_past_fifty_distinct_problems_the_rest_are_counted() -> None:
    found = [
        (k, f"hourly.temperature_2m[{k}] is 'x', expected a number or null") for k in range(60)
    ]

    said = at_locations(found, [f"location {k}" for k in range(60)])

    assert len(said) == 51 and said[-1] == "… and 10 more problem(s)"
