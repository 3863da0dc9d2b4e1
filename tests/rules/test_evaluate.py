"""evaluate(): levels, windows, the winning level per zone and hazard, and missing data."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from rules.evaluate import evaluate
from rules.ruleset import ParamOverride, ZoneSelector
from rules.types import Assessment, Level
from rules.zonetable import ZoneTable
from tests.rules.builders import START, NaN, batch, level, rule, ruleset, zone


def at(hour: int, minute: int = 0) -> datetime:
    return START + timedelta(hours=hour, minutes=minute)


def only(assessments: list[Assessment]) -> Assessment:
    assert len(assessments) == 1, assessments
    return assessments[0]


def test_a_level_fires_with_onset_and_until_of_the_first_run() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}), hazards={"fog": "大雾"})
    forecast = batch(visibility=[900, 400, 300, 800, 100, 900])

    result = only(evaluate(rules, forecast, [zone("Z1")], now=at(0)))

    assert result == Assessment(
        rule_id="fog",
        hazard="fog",
        zone_id="Z1",
        level=Level.YELLOW,
        onset=at(1),
        until=at(2),
        evidence={"visibility": 400.0},
        title="大雾",
    )


def test_the_window_starts_at_the_hour_containing_now() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": ("visibility < 500", 2)}))
    forecast = batch(visibility=[100, 900, 400, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(1, 59)))

    assert result.onset == at(2)


def test_a_level_fires_at_the_last_hour_of_its_window() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": ("visibility < 500", 3)}))
    forecast = batch(visibility=[900, 900, 900, 400, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(1)))

    assert (result.level, result.onset) == (Level.YELLOW, at(3))


def test_a_level_does_not_fire_one_hour_after_its_window() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": ("visibility < 500", 3)}))
    forecast = batch(visibility=[900, 900, 900, 900, 400])

    assert evaluate(rules, forecast, [zone()], now=at(1)) == []


def test_until_follows_the_run_past_the_end_of_the_window() -> None:
    rules = ruleset(rule("fog", "fog", {"red": ("visibility < 50", 2)}))
    forecast = batch(visibility=[900, 30, 30, 30, 30, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.onset, result.until) == (at(1), at(4))


def test_the_highest_firing_level_across_rules_of_one_hazard_wins() -> None:
    rules = ruleset(
        rule("fog-a", "fog", {"yellow": "visibility < 500"}),
        rule("fog-b", "fog", {"orange": "visibility < 200", "blue": "visibility < 1000"}),
    )
    forecast = batch(visibility=[800, 450, 150])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.rule_id, result.level, result.onset) == ("fog-b", Level.ORANGE, at(2))
    assert result.evidence == {"visibility": 150.0}


def test_between_equal_levels_the_earlier_onset_wins() -> None:
    rules = ruleset(
        rule("late", "fog", {"yellow": "visibility < 200"}),
        rule("early", "fog", {"yellow": "visibility < 500"}),
    )
    forecast = batch(visibility=[900, 450, 150])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.rule_id, result.onset) == ("early", at(1))


def test_each_hazard_gets_its_own_assessment_sorted_by_zone_then_hazard() -> None:
    rules = ruleset(
        rule("fog", "fog", {"yellow": "visibility < 500"}),
        rule("icing", "road_icing", {"yellow": "temperature_2m <= 0 and precipitation > 0"}),
    )
    forecast = batch(
        points=("p0", "p1"),
        visibility=[[100, 100], [100, 100]],
        temperature_2m=[[-1, -1], [-1, -1]],
        precipitation=[[0.5, 0.5], [0.5, 0.5]],
    )
    zones = [zone("Z2", "p1"), zone("Z1", "p0")]

    result = evaluate(rules, forecast, zones, now=at(0))

    assert [(a.zone_id, a.hazard) for a in result] == [
        ("Z1", "fog"),
        ("Z1", "road_icing"),
        ("Z2", "fog"),
        ("Z2", "road_icing"),
    ]


def test_zones_on_one_point_share_its_verdict() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))
    forecast = batch(points=("p0", "p1"), visibility=[[100.0], [900.0]])
    zones = [zone("A", "p0"), zone("B", "p0"), zone("C", "p1")]

    result = evaluate(rules, forecast, zones, now=at(0))

    assert [a.zone_id for a in result] == ["A", "B"]


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        (ZoneSelector(), ["A", "B", "C"]),
        (ZoneSelector(ids=frozenset({"B"})), ["B"]),
        (ZoneSelector(kinds=frozenset({"collapse"})), ["B", "C"]),
        (ZoneSelector(townships=frozenset({"三交镇"})), ["C"]),
        (ZoneSelector(risk=frozenset({"very_high"})), ["A"]),
        (ZoneSelector(tags=frozenset({"school", "hospital"})), ["A", "C"]),
        (ZoneSelector(kinds=frozenset({"collapse"}), tags=frozenset({"school"})), ["C"]),
    ],
)
def test_selectors_pick_zones(selector: ZoneSelector, selected: list[str]) -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}, zones=selector))
    zones = [
        zone("A", kind="landslide", township="穆村镇", risk="very_high", tags=["school"]),
        zone("B", kind="collapse", township="穆村镇", risk="high", tags=["trunk_road"]),
        zone("C", kind="collapse", township="三交镇", risk="low", tags=["hospital", "school"]),
    ]

    result = evaluate(rules, batch(visibility=[100.0]), zones, now=at(0))

    assert [a.zone_id for a in result] == selected


def test_missing_data_without_a_firing_hour_is_indeterminate() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}), hazards={"fog": "大雾"})
    forecast = batch(visibility=[900, NaN, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert result == Assessment("fog", "fog", "Z1", None, None, None, {}, "大雾", Level.YELLOW)


def test_a_lower_level_firing_under_an_undecided_higher_one_says_so() -> None:
    rules = ruleset(
        rule("fog", "fog", {"yellow": "visibility < 500", "orange": "visibility < 200"})
    )
    # yellow fires at hour 0; whether orange does is hidden by the gap at hour 1
    forecast = batch(visibility=[400, NaN, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.level, result.undecided_above) == (Level.YELLOW, Level.ORANGE)


def test_a_decided_higher_level_leaves_nothing_undecided() -> None:
    rules = ruleset(
        rule("fog", "fog", {"yellow": "visibility < 500", "orange": "visibility < 200"})
    )
    forecast = batch(visibility=[400, 300, 900])

    assert only(evaluate(rules, forecast, [zone()], now=at(0))).undecided_above is None


def test_a_firing_hour_decides_despite_missing_hours() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))
    forecast = batch(visibility=[NaN, 300, NaN])

    assert only(evaluate(rules, forecast, [zone()], now=at(0))).level == Level.YELLOW


def test_a_known_false_part_makes_missing_data_irrelevant() -> None:
    rules = ruleset(rule("icing", "road_icing", {"yellow": "temperature_2m <= 0 and rain > 0"}))
    forecast = batch(temperature_2m=[5.0, 6.0], rain=[NaN, NaN])

    assert evaluate(rules, forecast, [zone()], now=at(0)) == []


def test_a_zone_whose_point_is_not_in_the_batch_is_indeterminate() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))

    result = only(evaluate(rules, batch(visibility=[900.0]), [zone(point_id="elsewhere")], at(0)))

    assert result.level is None


def test_a_window_reaching_past_the_forecast_is_indeterminate() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": ("visibility < 500", 6)}))
    forecast = batch(visibility=[900, 900, 900])

    assert only(evaluate(rules, forecast, [zone()], now=at(0))).level is None


def test_a_stale_batch_is_indeterminate() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))
    forecast = batch(visibility=[900, 900, 900])

    assert only(evaluate(rules, forecast, [zone()], now=at(5))).level is None


def test_evidence_is_every_compared_series_at_the_onset_hour_rounded() -> None:
    rules = ruleset(
        rule(
            "cw",
            "cold_wave",
            {
                "blue": "beaufort(wind_speed_10m) >= 5 and (temperature_2m <= 4 or rain > 0)",
            },
        )
    )
    forecast = batch(wind_speed_10m=[3.0, 8.456], temperature_2m=[9.0, 3.14159], rain=[0.0, NaN])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert result.evidence == {"beaufort(wind_speed_10m)": 5.0, "temperature_2m": 3.14}


def test_cold_wave_fires_on_a_drop_of_the_local_daily_minimum() -> None:
    # given local 2 January (hours 16..39) min 6 ℃, local 3 January (40..63) min -4 ℃
    temps = [12.0] * 72
    temps[20], temps[50] = 6.0, -4.0
    rules = ruleset(
        rule(
            "cw",
            "cold_wave",
            {
                "yellow": (
                    "drop(daily_min(temperature_2m), 24h) >= 10 and daily_min(temperature_2m) <= 4",
                    48,
                ),
            },
        )
    )

    result = only(evaluate(rules, batch(temperature_2m=temps), [zone()], now=at(16)))

    assert (result.level, result.onset, result.until) == (Level.YELLOW, at(40), at(63))
    assert result.evidence == {
        "drop(daily_min(temperature_2m), 24h)": 10.0,
        "daily_min(temperature_2m)": -4.0,
    }


def test_now_must_be_timezone_aware() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))

    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(rules, batch(visibility=[1.0]), [zone()], now=datetime(2026, 1, 1))


def test_now_in_another_timezone_means_the_same_instant() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": ("visibility < 500", 1)}))
    forecast = batch(visibility=[900, 100])
    shanghai = datetime.fromisoformat("2026-01-01T09:30:00+08:00")  # 01:30 UTC

    result = only(evaluate(rules, forecast, [zone()], now=shanghai))

    assert result.onset == at(1)


# --- for, since ----------------------------------------------------------------------------


def test_for_needs_that_many_consecutive_hours_and_the_onset_is_the_first() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": level("yellow", "visibility < 500", 8, 3)}))
    forecast = batch(visibility=[900, 400, 400, 900, 300, 300, 300, 300, 900, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.onset, result.until) == (at(4), at(7))


def test_for_does_not_fire_on_a_run_one_hour_short() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": level("yellow", "visibility < 500", 6, 3)}))
    forecast = batch(visibility=[900, 400, 400, 900, 400, 400, 900])

    assert evaluate(rules, forecast, [zone()], now=at(0)) == []


def test_for_counts_only_hours_inside_the_window() -> None:
    # the run began an hour before now: inside the window it lasts 2 hours only
    rules = ruleset(rule("fog", "fog", {"yellow": level("yellow", "visibility < 500", 5, 3)}))
    forecast = batch(visibility=[900, 400, 400, 400, 900, 900, 900, 900])

    assert evaluate(rules, forecast, [zone()], now=at(2)) == []


def test_for_with_an_unknown_hour_in_the_only_possible_stretch_is_indeterminate() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": level("yellow", "visibility < 500", 4, 3)}))
    forecast = batch(visibility=[900, 400, NaN, 400, 900])

    result = only(evaluate(rules, forecast, [zone()], now=at(0)))

    assert (result.level, result.undecided_above) == (None, Level.YELLOW)


def test_for_is_decided_by_a_known_false_hour_despite_a_gap() -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": level("yellow", "visibility < 500", 4, 3)}))
    forecast = batch(visibility=[900, 900, NaN, 900, 900])

    assert evaluate(rules, forecast, [zone()], now=at(1)) == []


def test_since_lets_a_level_see_hours_that_already_happened() -> None:
    rules = ruleset(rule("ice", "road_icing", {"red": level("red", "precipitation > 0", 2, 1, 3)}))
    forecast = batch(precipitation=[0, 0, 1.0, 0, 0, 0, 0, 0])

    result = only(evaluate(rules, forecast, [zone()], now=at(4, 30)))

    assert (result.level, result.onset, result.until) == (Level.RED, at(2), at(2))


def test_since_ends_where_it_says() -> None:
    rules = ruleset(rule("ice", "road_icing", {"red": level("red", "precipitation > 0", 2, 1, 3)}))
    forecast = batch(precipitation=[0, 1.0, 0, 0, 0, 0, 0, 0])

    assert evaluate(rules, forecast, [zone()], now=at(5)) == []


def test_since_reaching_before_the_forecast_is_indeterminate() -> None:
    rules = ruleset(rule("ice", "road_icing", {"red": level("red", "precipitation > 0", 2, 1, 3)}))
    forecast = batch(precipitation=[0.0] * 6)

    assert only(evaluate(rules, forecast, [zone()], now=at(1))).level is None


# --- parameters, polygon, exclude ----------------------------------------------------------


def test_overrides_give_other_thresholds_to_the_zones_they_select() -> None:
    overrides = (
        ParamOverride(ZoneSelector(tags=frozenset({"work_shed"})), {"limit": 800}),
        ParamOverride(ZoneSelector(ids=frozenset({"strict"})), {"limit": 300}),
    )
    rules = ruleset(
        rule(
            "fog",
            "fog",
            {"yellow": "visibility < $limit"},
            params={"limit": 500},
            overrides=overrides,
        )
    )
    zones = [
        zone("plain"),
        zone("shed", tags=["work_shed"]),
        zone("strict", tags=["work_shed"]),  # both overrides: the later one wins
    ]

    at_600 = evaluate(rules, batch(visibility=[600.0]), zones, now=at(0))
    at_400 = evaluate(rules, batch(visibility=[400.0]), zones, now=at(0))

    assert [a.zone_id for a in at_600] == ["shed"]
    assert [a.zone_id for a in at_400] == ["plain", "shed"]


def test_evidence_shows_the_values_of_the_zones_parameters_inside_count() -> None:
    rules = ruleset(
        rule(
            "wet",
            "sleet",
            {"blue": "count(temperature_2m <= $t, 2h) >= 2"},
            params={"t": 2},
            overrides=(ParamOverride(ZoneSelector(ids=frozenset({"B"})), {"t": 3}),),
        )
    )

    result = evaluate(rules, batch(temperature_2m=[1.0, 1.5, 9.0]), [zone("A"), zone("B")], at(0))

    assert [a.evidence for a in result] == [
        {"count(temperature_2m <= 2, 2h)": 2.0},
        {"count(temperature_2m <= 3, 2h)": 2.0},
    ]


def test_polygon_selects_the_zones_inside_and_exclude_leaves_some_out() -> None:
    square = ((37.0, 110.0), (38.0, 110.0), (38.0, 111.0), (37.0, 111.0))
    selector = ZoneSelector(polygon=square, exclude=ZoneSelector(risk=frozenset({"low"})))
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}, zones=selector))
    zones = [
        replace(zone("in"), latitude=37.5, longitude=110.5),
        replace(zone("out"), latitude=37.5, longitude=111.5),
        replace(zone("in-low", risk="low"), latitude=37.5, longitude=110.5),
    ]

    result = evaluate(rules, batch(visibility=[100.0]), zones, now=at(0))

    assert [a.zone_id for a in result] == ["in"]


def test_a_level_may_use_freeze_thaw_and_run() -> None:
    rules = ruleset(
        rule(
            "ft",
            "freeze_thaw",
            {"blue": "freeze_thaw(soil_temperature_0cm, 4h) >= 1 and run(snow_depth > 0, 2h) >= 2"},
        )
    )
    forecast = batch(soil_temperature_0cm=[1, 1, -1, 2, 2], snow_depth=[0.1] * 5)

    result = only(evaluate(rules, forecast, [zone()], now=at(3)))

    assert (result.level, result.onset) == (Level.BLUE, at(3))
    assert result.evidence == {
        "freeze_thaw(soil_temperature_0cm, 4h)": 1.0,
        "run(snow_depth > 0, 2h)": 2.0,
    }


def test_results_do_not_depend_on_how_points_are_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = ruleset(rule("fog", "fog", {"yellow": "visibility < 500", "red": "visibility < 50"}))
    visibility = [[float(v), 900.0] for v in range(0, 1000, 40)]
    points = tuple(f"p{i}" for i in range(len(visibility)))
    forecast = batch(points=points, visibility=visibility)
    zones = [zone(f"Z{i:02d}", point_id=p) for i, p in enumerate(points)]

    whole = evaluate(rules, forecast, zones, now=at(0))
    monkeypatch.setattr("rules.evaluate.BLOCK_POINTS", 3)
    blocked = evaluate(rules, forecast, zones, now=at(0))

    assert blocked == whole
    assert [a.level for a in whole][:3] == [Level.RED, Level.RED, Level.YELLOW]


def test_a_zone_table_serves_batches_of_other_points_and_other_rules() -> None:
    fog = ruleset(rule("fog", "fog", {"yellow": "visibility < 500"}))
    collapse_fog = ruleset(
        rule(
            "fog",
            "fog",
            {"yellow": "visibility < 500"},
            zones=ZoneSelector(kinds=frozenset({"collapse"})),
        )
    )
    zones = [zone("A", "p0"), zone("B", "p1", kind="collapse"), zone("C", "p2")]
    table = ZoneTable(zones)
    first = batch(points=("p0", "p1"), visibility=[[100.0], [100.0]])
    # the next poll lists the points in another order and has one more
    second = batch(points=("p2", "p1", "p0"), visibility=[[100.0], [900.0], [100.0]])

    for rules, forecast in [(fog, first), (fog, second), (collapse_fog, second), (fog, first)]:
        assert evaluate(rules, forecast, table, now=at(0)) == evaluate(
            rules, forecast, zones, now=at(0)
        )
    assert [(a.zone_id, a.level) for a in evaluate(fog, first, table, now=at(0))] == [
        ("A", Level.YELLOW),
        ("B", Level.YELLOW),
        ("C", None),  # its point is not in the batch: unknown, not quiet
    ]
    assert [a.zone_id for a in evaluate(fog, second, table, now=at(0))] == ["A", "C"]
