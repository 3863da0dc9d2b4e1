"""Three-valued logic: missing data is unknown, and unknown never reads as false."""

from __future__ import annotations

import pytest

from rules.expr import parse_condition
from rules.series import SeriesCache
from rules.truth import TruthCache
from tests.rules.builders import NaN, forecast

T, F, U = "true", "false", "unknown"
# rain > 0 is true at 1.0, false at 0.0, unknown at NaN
RAIN = {T: 1.0, F: 0.0, U: NaN}


def truth_of(condition: str, **variables: list[float]) -> list[str]:
    """The three-valued truth of a condition at each hour of one point."""
    truth = TruthCache(SeriesCache(forecast(variables))).get(parse_condition(condition))
    return [
        (T if t else F) if k else U
        for t, k in zip(truth.true[0].tolist(), truth.known[0].tolist(), strict=True)
    ]


def test_comparison_on_a_missing_value_is_unknown() -> None:
    assert truth_of("visibility < 500", visibility=[100.0, 900.0, NaN]) == [T, F, U]


def test_not_equal_on_a_missing_value_is_unknown_not_true() -> None:
    assert truth_of("weather_code != 0", weather_code=[NaN]) == [U]


def test_in_on_a_missing_value_is_unknown() -> None:
    assert truth_of("weather_code in [56, 57]", weather_code=[57.0, 3.0, NaN]) == [T, F, U]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (T, T, T),
        (T, F, F),
        (T, U, U),
        (F, T, F),
        (F, F, F),
        (F, U, F),
        (U, T, U),
        (U, F, F),
        (U, U, U),
    ],
)
def test_and_is_false_if_either_side_is_known_false(a: str, b: str, expected: str) -> None:
    assert truth_of("rain > 0 and snowfall > 0", rain=[RAIN[a]], snowfall=[RAIN[b]]) == [expected]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (T, T, T),
        (T, F, T),
        (T, U, T),
        (F, T, T),
        (F, F, F),
        (F, U, U),
        (U, T, T),
        (U, F, U),
        (U, U, U),
    ],
)
def test_or_is_true_if_either_side_is_true(a: str, b: str, expected: str) -> None:
    assert truth_of("rain > 0 or snowfall > 0", rain=[RAIN[a]], snowfall=[RAIN[b]]) == [expected]


def test_not_swaps_true_and_false_and_keeps_unknown() -> None:
    assert truth_of("not rain > 0", rain=[1.0, 0.0, NaN]) == [F, T, U]
