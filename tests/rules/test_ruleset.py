"""RuleSet and selectors as plain objects: parameters per zone, polygons, exclusions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rules.ruleset import ParamOverride, ZoneSelector, in_polygon
from tests.rules.builders import rule, ruleset, zone

SQUARE = ((37.0, 110.0), (38.0, 110.0), (38.0, 111.0), (37.0, 111.0))


def test_points_inside_a_polygon_by_the_even_odd_rule() -> None:
    lats = np.array([37.5, 37.5, 36.5, 37.99, 37.5])
    lons = np.array([110.5, 111.5, 110.5, 110.01, 109.99])

    assert in_polygon(lats, lons, SQUARE).tolist() == [True, False, False, True, False]


def test_a_concave_polygon_leaves_its_notch_out() -> None:
    # a U shape: the notch between its arms is outside
    shape = ((0, 0), (3, 0), (3, 1), (1, 1), (1, 2), (3, 2), (3, 3), (0, 3))
    lats = np.array([2.0, 2.0, 0.5])
    lons = np.array([0.5, 1.5, 1.5])

    assert in_polygon(lats, lons, shape).tolist() == [True, False, True]


def test_a_selector_matches_one_zone_like_the_evaluator() -> None:
    selector = ZoneSelector(polygon=SQUARE, exclude=ZoneSelector(tags=frozenset({"school"})))
    inside = replace(zone("in"), latitude=37.5, longitude=110.5)

    assert selector.matches(inside)
    assert not selector.matches(replace(inside, tags=frozenset({"school"})))
    assert not selector.matches(replace(inside, longitude=111.5))


def test_params_at_a_zone_apply_the_matching_overrides_in_order() -> None:
    overrides = (
        ParamOverride(ZoneSelector(tags=frozenset({"work_shed"})), {"drop": 8, "tmin": 5}),
        ParamOverride(ZoneSelector(ids=frozenset({"B"})), {"drop": 6}),
    )
    rules = ruleset(
        rule(
            "cw",
            "cold_wave",
            {"yellow": "drop(daily_min(temperature_2m), 24h) >= $drop and temperature_2m < $tmin"},
            params={"drop": 10, "tmin": 4},
            overrides=overrides,
        )
    )

    assert rules.params("cw", zone("A")) == {"drop": 10, "tmin": 4}
    assert rules.params("cw", zone("A", tags=["work_shed"])) == {"drop": 8, "tmin": 5}
    assert rules.params("cw", zone("B", tags=["work_shed"])) == {"drop": 6, "tmin": 5}
    assert rules.params("nope", zone("A")) == {}
