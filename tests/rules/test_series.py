"""Series functions on tiny hand-made arrays; NaN is missing and stays missing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from rules.expr import parse_series
from rules.series import SeriesCache, beaufort, trailing
from tests.rules.builders import NaN, batch, forecast


def series_of(text: str, timezone: str = "Asia/Shanghai", **variables: list[float]) -> list[float]:
    """One point's values of a series expression."""
    cache = SeriesCache(forecast(variables), timezone)
    return [float(v) for v in cache.get(parse_series(text))[0]]


def same(actual: list[float], expected: list[float]) -> bool:
    return bool(np.array_equal(actual, expected, equal_nan=True))


def test_daily_min_is_taken_over_the_local_day_not_the_utc_day() -> None:
    # given 72 hours from 00:00 UTC: local days are hours 16..39 and 40..63
    temps = [10.0] * 72
    temps[15] = -9.0  # 23:00 local on 1 January: previous local day
    temps[16] = -2.0  # 00:00 local on 2 January
    temps[40] = -5.0  # 00:00 local on 3 January (16:00 UTC of 2 January)

    values = series_of("daily_min(temperature_2m)", temperature_2m=temps)

    assert values[16:40] == [-2.0] * 24
    assert values[40:64] == [-5.0] * 24


def test_daily_min_follows_the_timezone_it_is_given() -> None:
    temps = [10.0] * 72
    temps[16] = -2.0

    values = series_of("daily_min(temperature_2m)", timezone="UTC", temperature_2m=temps)

    assert values[0:24] == [-2.0] * 24
    assert values[24:48] == [10.0] * 24


def test_incomplete_days_at_the_batch_edges_are_missing() -> None:
    values = series_of("daily_min(temperature_2m)", temperature_2m=[1.0] * 72)

    assert same(values[:16], [NaN] * 16)  # 08:00–23:00 local: day began before the batch
    assert same(values[64:], [NaN] * 8)  # 00:00–07:00 local: day ends after the batch


def test_a_day_with_one_missing_hour_is_missing() -> None:
    temps = [1.0] * 72
    temps[30] = NaN

    values = series_of("daily_max(temperature_2m)", temperature_2m=temps)

    assert same(values[16:40], [NaN] * 24)
    assert values[40:64] == [1.0] * 24


def test_a_23_hour_daylight_saving_day_is_complete() -> None:
    # given Berlin days 28 March (24 h), 29 March (23 h: clocks go forward), 30 March
    start = datetime(2026, 3, 27, 23, tzinfo=UTC)
    temps = [5.0] * (24 + 23 + 24)
    temps[30] = -1.0
    cache = SeriesCache(batch(start=start, temperature_2m=temps), "Europe/Berlin")

    values = cache.get(parse_series("daily_min(temperature_2m)"))[0]

    assert list(values[24:47]) == [-1.0] * 23
    assert list(values[47:]) == [5.0] * 24


def test_daily_max_is_the_largest_value_of_the_local_day() -> None:
    temps = [0.0] * 72
    temps[20] = 7.5

    values = series_of("daily_max(temperature_2m)", temperature_2m=temps)

    assert values[16:40] == [7.5] * 24


def test_drop_is_how_much_the_value_fell_since_n_hours_ago() -> None:
    values = series_of("drop(temperature_2m, 2h)", temperature_2m=[10.0, 8.0, 5.0, 6.0])

    assert same(values, [NaN, NaN, 5.0, 2.0])


def test_drop_of_daily_min_compares_with_the_previous_local_day() -> None:
    # given local 2 January has minimum 6 and local 3 January minimum -4
    temps = [20.0] * 72
    temps[20] = 6.0
    temps[50] = -4.0

    values = series_of("drop(daily_min(temperature_2m), 24h)", temperature_2m=temps)

    assert values[40:64] == [10.0] * 24
    assert same(values[16:40], [NaN] * 24)  # previous day incomplete: no fake drop


def test_trailing_sum_covers_the_last_n_hours_including_this_one() -> None:
    values = series_of("sum(precipitation, 3h)", precipitation=[1.0, 2.0, 3.0, 4.0, 0.0])

    assert same(values, [NaN, NaN, 6.0, 9.0, 7.0])


def test_trailing_window_with_a_missing_hour_is_missing() -> None:
    values = series_of("sum(precipitation, 2h)", precipitation=[1.0, NaN, 1.0, 1.0])

    assert same(values, [NaN, NaN, NaN, 2.0])


def test_a_dry_window_after_rain_sums_to_exactly_zero() -> None:
    rain = [0.1, 0.7, 0.3, 1.9] + [0.0] * 8

    values = series_of("sum(precipitation, 6h)", precipitation=rain)

    assert values[-1] == 0.0


def test_trailing_min_max_and_mean() -> None:
    visibility = [900.0, 300.0, 600.0, 1200.0]

    assert same(series_of("min(visibility, 2h)", visibility=visibility), [NaN, 300, 300, 600])
    assert same(series_of("max(visibility, 2h)", visibility=visibility), [NaN, 900, 600, 1200])
    assert same(series_of("mean(visibility, 2h)", visibility=visibility), [NaN, 600, 450, 900])


def test_window_longer_than_the_batch_is_missing_everywhere() -> None:
    values = series_of("max(rain, 5h)", rain=[1.0, 2.0, 3.0])

    assert same(values, [NaN, NaN, NaN])


@pytest.mark.parametrize("hours", [1, 2, 3, 5, 7, 8, 13])
def test_trailing_windows_agree_with_a_plain_loop(hours: int) -> None:
    x = np.random.default_rng(hours).uniform(-5, 5, size=(3, 20))
    expected = np.full_like(x, np.nan)
    for t in range(hours - 1, 20):
        expected[:, t] = x[:, t - hours + 1 : t + 1].min(axis=1)

    assert np.array_equal(trailing(x, hours, np.minimum), expected, equal_nan=True)


@pytest.mark.parametrize(
    ("speed", "force"),
    [
        (0.0, 0),
        (0.2, 0),
        (0.3, 1),
        (7.9, 4),
        (8.0, 5),
        (10.7, 5),
        (10.8, 6),
        (13.8, 6),
        (13.9, 7),
        (32.6, 11),
        (32.7, 12),
        (37.0, 13),
        (61.3, 17),
    ],
)
def test_beaufort_force_boundaries(speed: float, force: int) -> None:
    assert beaufort(np.array([[speed]]))[0, 0] == force


def test_beaufort_of_missing_wind_is_missing() -> None:
    assert np.isnan(beaufort(np.array([[NaN]]))[0, 0])


def test_an_expression_is_computed_once_per_batch() -> None:
    cache = SeriesCache(batch(temperature_2m=[1.0] * 48))

    first = cache.get(parse_series("daily_min(temperature_2m)"))
    again = cache.get(parse_series("daily_min( temperature_2m )"))

    assert first is again


def test_a_variable_the_feed_did_not_deliver_is_missing() -> None:
    values = series_of("snow_depth", temperature_2m=[1.0, 2.0])

    assert same(values, [NaN, NaN])


def test_times_must_be_consecutive_hours() -> None:
    given = batch(rain=[0.0, 0.0, 0.0])
    gappy = given.times.copy()
    gappy[2] += np.timedelta64(3600, "s")

    with pytest.raises(ValueError, match="consecutive hours"):
        SeriesCache(replace(given, times=gappy))


# --- count, run, freeze_thaw ---------------------------------------------------------------


def test_count_is_the_hours_of_the_trailing_window_where_the_condition_holds() -> None:
    values = series_of("count(rain > 0, 3h)", rain=[1.0, 0.0, 2.0, 3.0, 0.0, 0.0])

    assert same(values, [NaN, NaN, 2.0, 2.0, 2.0, 1.0])


def test_count_is_missing_when_an_hour_of_the_window_is_unknown() -> None:
    values = series_of("count(rain > 0, 2h)", rain=[1.0, NaN, 1.0, 1.0])

    assert same(values, [NaN, NaN, NaN, 2.0])


def test_count_reads_a_known_false_and_as_false_despite_missing_data() -> None:
    values = series_of(
        "count(rain > 0 and temperature_2m < 0, 2h)",
        rain=[NaN, NaN, 1.0],
        temperature_2m=[5.0, 5.0, -1.0],
    )

    assert same(values, [NaN, 0.0, 1.0])


def test_run_counts_consecutive_hours_ending_now() -> None:
    values = series_of("run(visibility < 500, 6h)", visibility=[900, 100, 100, 900, 100, 100, 100])

    assert same(values, [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0])


def test_run_is_capped_at_its_window() -> None:
    values = series_of("run(visibility < 500, 2h)", visibility=[100, 100, 100, 100])

    assert same(values, [NaN, 2.0, 2.0, 2.0])


def test_run_reaching_the_start_of_the_forecast_is_missing() -> None:
    values = series_of("run(visibility < 500, 6h)", visibility=[100, 100, 900])

    assert same(values, [NaN, NaN, 0.0])


def test_run_stopping_at_an_unknown_hour_is_missing() -> None:
    values = series_of("run(visibility < 500, 6h)", visibility=[900, NaN, 100, 100, NaN])

    assert same(values, [0.0, NaN, NaN, NaN, NaN])


@pytest.mark.parametrize(
    ("temps", "hours", "expected"),
    [
        # thawed → frozen → thawed inside the window is one cycle
        ([1, -1, 1], 3, [NaN, NaN, 1]),
        # the thawed hour before the frost must be inside the window too
        ([1, -1, 1, -1], 3, [NaN, NaN, 1, 0]),
        # hours at exactly 0 are neither frozen nor thawed
        ([2, 0, -1, 0, 0, 3], 6, [NaN] * 5 + [1]),
        ([2, 0, 0, 0, 0, 3], 6, [NaN] * 5 + [0]),
        # a frozen spell interrupted by zeros is one spell
        ([1, -1, 0, -1, 1], 5, [NaN] * 4 + [1]),
        # three days of thaw by day and frost by night
        ([3, -3, 3, -3, 3, -3, 3], 7, [NaN] * 6 + [3]),
        # frozen and never thawed again: no completed cycle
        ([3, -3, -3, -3], 4, [NaN] * 3 + [0]),
    ],
)
def test_freeze_thaw_counts_completed_cycles_in_the_window(
    temps: list[float], hours: int, expected: list[float]
) -> None:
    values = series_of(f"freeze_thaw(soil_temperature_0cm, {hours}h)", soil_temperature_0cm=temps)

    assert same(values, expected)


def test_freeze_thaw_with_a_missing_hour_in_the_window_is_missing() -> None:
    values = series_of("freeze_thaw(temperature_2m, 3h)", temperature_2m=[1, -1, 1, NaN, 1, -1, 1])

    assert same(values, [NaN, NaN, 1, NaN, NaN, NaN, 1])


@pytest.mark.parametrize("hours", [2, 3, 5, 9])
def test_freeze_thaw_agrees_with_a_plain_loop(hours: int) -> None:
    x = np.random.default_rng(hours).choice([-2.0, 0.0, 2.0], size=(4, 30))
    expected = np.full_like(x, np.nan)
    for p in range(4):
        for t in range(hours - 1, 30):
            signs = [v for v in x[p, t - hours + 1 : t + 1] if v != 0]
            runs = [k for k, v in enumerate(signs) if k == 0 or (v > 0) != (signs[k - 1] > 0)]
            phases = [signs[k] > 0 for k in runs]  # True: a thawed run
            expected[p, t] = sum(
                1
                for k in range(1, len(phases) - 1)
                if not phases[k] and phases[k - 1] and phases[k + 1]
            )

    cache = SeriesCache(forecast({"temperature_2m": x.tolist()}, points=("a", "b", "c", "d")))

    got = cache.get(parse_series(f"freeze_thaw(temperature_2m, {hours}h)"))
    assert np.array_equal(got, expected, equal_nan=True)
