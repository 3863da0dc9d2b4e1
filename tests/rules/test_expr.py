"""The condition language: what parses to what, and where errors point."""

from __future__ import annotations

import pytest

from rules.expr import (
    And,
    Call,
    Compare,
    CondCall,
    ExprError,
    InSet,
    Not,
    Or,
    Param,
    Var,
    bind,
    condition_params,
    condition_series,
    condition_variables,
    lookback_hours,
    parse_condition,
    parse_series,
)


def error_of(text: str) -> ExprError:
    with pytest.raises(ExprError) as caught:
        parse_condition(text)
    return caught.value


def test_comparison_parses_to_series_operator_and_number() -> None:
    assert parse_condition("visibility < 500") == Compare(Var("visibility"), "<", 500.0)


def test_nested_functions_with_windows() -> None:
    node = parse_condition("drop(daily_min(temperature_2m), 24h) >= 8")

    assert node == Compare(Call("drop", Call("daily_min", Var("temperature_2m")), 24), ">=", 8.0)


def test_days_and_hours_are_the_same_window() -> None:
    assert parse_series("sum(rain, 1d)") == parse_series("sum(rain, 24h)")


def test_in_is_set_membership() -> None:
    assert parse_condition("weather_code in [56, 57, 66]") == InSet(
        Var("weather_code"), (56.0, 57.0, 66.0)
    )


def test_negative_thresholds() -> None:
    assert parse_condition("soil_temperature_0cm < -3.5") == Compare(
        Var("soil_temperature_0cm"), "<", -3.5
    )


def test_and_binds_tighter_than_or() -> None:
    node = parse_condition("rain > 0 or snowfall > 0 and temperature_2m < 2")

    assert isinstance(node, Or)
    assert isinstance(node.items[1], And)


def test_not_binds_tighter_than_and() -> None:
    node = parse_condition("not rain > 0 and snowfall > 0")

    assert isinstance(node, And)
    assert node.items[0] == Not(Compare(Var("rain"), ">", 0.0))


def test_parentheses_override_precedence() -> None:
    node = parse_condition("(rain > 0 or showers > 0) and snowfall > 0")

    assert isinstance(node, And)
    assert isinstance(node.items[0], Or)


def test_canonical_text_normalises_spacing_numbers_and_durations() -> None:
    node = parse_condition("drop( daily_min(temperature_2m),2d )>=8.0 and  not(rain>0 or rain<-1)")

    assert str(node) == (
        "drop(daily_min(temperature_2m), 48h) >= 8 and not (rain > 0 or rain < -1)"
    )


def test_a_window_is_written_in_the_one_duration_grammar_of_every_file() -> None:
    # given the same two hours written three ways (rules.config.parse_duration)
    written = ["sum(rain, 2h) > 1", "sum(rain, 120m) > 1", "sum(rain, 1h60m) > 1"]

    # then they parse to the same node
    assert {parse_condition(text) for text in written} == {parse_condition("sum(rain, 2h) > 1")}


def test_a_window_of_a_compound_duration_that_is_not_whole_hours_is_refused() -> None:
    assert error_of("sum(rain, 1h30m) > 1").message == (
        "window of sum(): duration '1h30m' must be a positive whole number of hours "
        "(the forecast is hourly), e.g. 1h, 24h or 2d"
    )


def test_a_window_that_is_no_duration_at_all_asks_for_whole_hours() -> None:
    assert error_of("sum(rain, 12hours) > 1").message == (
        "window of sum(): '12hours' is not a duration; write whole hours, e.g. 1h, 24h or 2d"
    )


def test_canonical_text_parses_back_to_the_same_node() -> None:
    text = "not (rain > 0 and snowfall > 0) or weather_code in [45, 48] and visibility < 200.5"
    node = parse_condition(text)

    assert parse_condition(str(node)) == node


def test_series_and_variables_of_a_condition() -> None:
    node = parse_condition(
        "beaufort(wind_speed_10m) >= 6 and daily_min(temperature_2m) <= 0 "
        "and drop(daily_min(temperature_2m), 24h) >= 12"
    )

    assert [str(s) for s in condition_series(node)] == [
        "beaufort(wind_speed_10m)",
        "daily_min(temperature_2m)",
        "drop(daily_min(temperature_2m), 24h)",
    ]
    assert condition_variables(node) == {"wind_speed_10m", "temperature_2m"}


def test_lookback_covers_drop_plus_the_start_of_the_local_day() -> None:
    assert lookback_hours(parse_series("drop(daily_min(temperature_2m), 48h)")) == 48 + 23
    assert lookback_hours(parse_series("sum(precipitation, 12h)")) == 11
    assert lookback_hours(parse_series("visibility")) == 0


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        (
            "dailymin(temperature_2m) <= 4",
            0,
            "unknown function 'dailymin'; did you mean 'daily_min'? (expected one of "
            "daily_min, daily_max, drop, sum, min, max, mean, beaufort, count, run, "
            "freeze_thaw)",
        ),
        (
            "daily_min(temprature_2m) <= 4",
            10,
            "unknown variable 'temprature_2m'; did you mean 'temperature_2m'?",
        ),
        ("visibility = 500", 11, "unexpected character '='; use '==' to compare for equality"),
        (
            "visibility < 500m",
            13,
            "expected a number after '<', found '500m'; thresholds are "
            "plain numbers in the variable's unit (write 500, not 500m)",
        ),
        ("sum(rain) > 1", 8, "expected ',' and a window such as 24h: sum(X, 24h), found ')'"),
        ("sum(rain, 12) > 1", 10, "window of sum() needs a unit: write 12h"),
        (
            "sum(rain, 90m) > 1",
            10,
            "window of sum(): duration '90m' must be a positive whole number of hours "
            "(the forecast is hourly), e.g. 1h, 24h or 2d",
        ),
        ("beaufort(wind_speed_10m, 1h) >= 6", 23, "beaufort() takes one argument and no window"),
        ("(rain > 0 or showers > 0", 0, "unclosed '(': expected ')'"),
        ("rain > 0)", 8, "unbalanced ')': no '(' to close"),
        (
            "rain > 0 and",
            12,
            "expected a variable or function such as temperature_2m or daily_min(...), "
            "found end of expression",
        ),
        (
            "rain",
            4,
            "expected a comparison (< <= > >= == != or 'in') after 'rain', found end of expression",
        ),
        (
            "rain > 0 AND snowfall > 0",
            9,
            "expected 'and', 'or' or the end of the condition, found 'AND'; "
            "write 'and' in lower case",
        ),
        (
            "weather_code in 56",
            16,
            "expected '[' to start the list of values after 'in', found '56'",
        ),
        ("temperature_2m ≤ 0", 15, "unexpected character '≤'; write '<='"),
    ],
)
def test_errors_say_what_is_wrong_at_which_character(text: str, offset: int, message: str) -> None:
    error = error_of(text)

    assert (error.offset, error.message) == (offset, message)


# --- parameters and functions of conditions ---------------------------------------------


def test_a_parameter_stands_where_a_number_goes() -> None:
    node = parse_condition("visibility < $limit and weather_code in [45, $code]", {"limit", "code"})

    assert node == And(
        (
            Compare(Var("visibility"), "<", Param("limit")),
            InSet(Var("weather_code"), (45.0, Param("code"))),
        )
    )
    assert str(node) == "visibility < $limit and weather_code in [45, $code]"
    assert condition_params(node) == {"limit", "code"}


def test_bind_replaces_parameters_with_their_values() -> None:
    node = parse_condition("count(temperature_2m < $t, 24h) >= $n", {"t", "n"})

    assert bind(node, {"t": 0.5, "n": 3}) == parse_condition(
        "count(temperature_2m < 0.5, 24h) >= 3"
    )


def test_count_and_run_take_a_condition_and_a_window() -> None:
    node = parse_condition(
        "count(rain > 0 or snowfall > 0, 1d) >= 6 and run(visibility < 500, 6h) >= 3"
    )

    assert isinstance(node, And)
    assert node.items[0] == Compare(
        CondCall("count", parse_condition("rain > 0 or snowfall > 0"), 24), ">=", 6.0
    )
    assert str(node.items[1]) == "run(visibility < 500, 6h) >= 3"
    assert condition_variables(node) == {"rain", "snowfall", "visibility"}


def test_freeze_thaw_is_a_window_function_of_a_series() -> None:
    assert parse_series("freeze_thaw(soil_temperature_0cm, 3d)") == Call(
        "freeze_thaw", Var("soil_temperature_0cm"), 72
    )


def test_lookback_of_count_and_freeze_thaw_is_their_window_less_one_hour() -> None:
    assert lookback_hours(parse_series("count(sum(rain, 3h) > 1, 24h)")) == 2 + 23
    assert lookback_hours(parse_series("run(rain > 0, 6h)")) == 5
    assert lookback_hours(parse_series("freeze_thaw(temperature_2m, 72h)")) == 71


@pytest.mark.parametrize(
    ("text", "params", "offset", "message"),
    [
        (
            "visibility < $limt",
            {"limit"},
            13,
            "unknown parameter '$limt'; did you mean '$limit'? (the rule declares $limit)",
        ),
        (
            "visibility < $limit",
            set(),
            13,
            "unknown parameter '$limit'; declare it in the rule's params, e.g. params: {limit: 10}",
        ),
        (
            "visibility < -$limit",
            {"limit"},
            13,
            "a parameter cannot be negated; declare it negative instead (e.g. limit: -3)",
        ),
        (
            "$limit > visibility",
            {"limit"},
            0,
            "a parameter stands for a number and goes after the comparison, "
            "e.g. temperature_2m <= $limit",
        ),
        (
            "visibility < $",
            set(),
            13,
            "unexpected character '$'; write a parameter as $name, e.g. $drop",
        ),
        (
            "count(rain > 0) > 1",
            set(),
            14,
            "expected ',' and a window such as 24h: count(condition, 24h), found ')'",
        ),
        (
            "run(rain, 6h) > 1",
            set(),
            8,
            "expected a comparison (< <= > >= == != or 'in') after 'rain', found ','",
        ),
    ],
)
def test_parameter_and_condition_function_errors(
    text: str, params: set[str], offset: int, message: str
) -> None:
    with pytest.raises(ExprError) as caught:
        parse_condition(text, params)

    assert (caught.value.offset, caught.value.message) == (offset, message)
