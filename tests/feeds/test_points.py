"""assign_points: zones snapped to a grid share forecast points."""

from __future__ import annotations

import pytest

from dispatcher.feeds.base import ForecastPoint
from dispatcher.feeds.points import assign_points


def test_nearby_zones_share_one_point() -> None:
    zones = [("ZA-001", 37.431, 110.891), ("ZA-002", 37.436, 110.898)]

    points, zone_points = assign_points(zones, 0.02)

    assert points == [ForecastPoint("p37.4300_110.8900", 37.43, 110.89)]
    assert zone_points == {"ZA-001": "p37.4300_110.8900", "ZA-002": "p37.4300_110.8900"}


def test_distant_zones_get_their_own_points() -> None:
    zones = [("far-north", 37.61, 110.95), ("seat", 37.43, 110.89)]

    points, zone_points = assign_points(zones, 0.02)

    assert [p.id for p in points] == ["p37.4300_110.8900", "p37.6100_110.9500"]
    assert zone_points["far-north"] != zone_points["seat"]


def test_points_are_cell_centres_rounded_to_four_decimals() -> None:
    points, _ = assign_points([("z", 37.4129, 110.9461)], 0.05)

    assert points == [ForecastPoint("p37.4250_110.9250", 37.425, 110.925)]


def test_result_is_sorted_and_independent_of_zone_order() -> None:
    zones = [("a", 37.61, 110.95), ("b", 37.43, 111.2), ("c", 37.43, 110.89)]

    forward = assign_points(zones, 0.02)
    backward = assign_points(list(reversed(zones)), 0.02)

    assert forward == backward
    assert [p.id for p in forward[0]] == [
        "p37.4300_110.8900",
        "p37.4300_111.2100",
        "p37.6100_110.9500",
    ]


def test_a_value_on_a_decimal_cell_edge_goes_to_the_upper_cell() -> None:
    # 37.42 / 0.02 is 1870.999… in binary floating point.
    points, _ = assign_points([("edge", 37.42, 110.90)], 0.02)

    assert points[0].id == "p37.4300_110.9100"


def test_southern_and_western_hemispheres_have_readable_ids() -> None:
    points, _ = assign_points([("z", -0.001, -0.001)], 0.02)

    assert points[0].id == "p-0.0100_-0.0100"


def test_no_zones_no_points() -> None:
    assert assign_points([], 0.02) == ([], {})


def test_a_zone_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'z' is listed twice"):
        assign_points([("z", 37.4, 110.9), ("z", 37.5, 110.9)], 0.02)


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 110.0), (37.0, 181.0), (float("nan"), 110.0)])
def test_impossible_coordinates_are_refused(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match="zone 'z'"):
        assign_points([("z", lat, lon)], 0.02)


@pytest.mark.parametrize("resolution", [0.0, -0.02, 0.0001])
def test_a_resolution_finer_than_the_ids_can_tell_apart_is_refused(resolution: float) -> None:
    with pytest.raises(ValueError, match="resolution"):
        assign_points([("z", 37.4, 110.9)], resolution)
