"""Which zones an area covers: polygon, circle and GB/T 2260 geocode."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatcher.county import load_county
from dispatcher.official.areas import covered_zones
from dispatcher.official.capparse import CapArea, CapCircle, parse_cap
from rules.config import ConfigError
from rules.types import ZoneSpec
from tests.official.data import example

COUNTY = Path(__file__).resolve().parents[2] / "examples" / "liulin"


def zone(zone_id: str, lat: float, lon: float, township: str = "柳林镇") -> ZoneSpec:
    return ZoneSpec(zone_id, zone_id, "landslide", township, "high", frozenset(), lat, lon, zone_id)


def test_a_polygon_covers_the_zones_inside_it() -> None:
    # the specification's example: a storm over Alpine and Tuolumne counties
    (area,) = parse_cap(example("thunderstorm")).infos[0].areas
    inside = zone("inside", 38.47, -119.95)
    outside = zone("outside", 38.80, -119.95)

    assert covered_zones([area], [inside, outside], "141125") == {"inside"}


def test_a_circle_covers_the_zones_within_its_radius_in_km() -> None:
    # 0.1° of latitude is 11.1 km
    circle = CapArea("柳林县城周边", circles=(CapCircle(37.43, 110.89, 11.0),))
    near = zone("near", 37.52, 110.89)  # 10.0 km north
    far = zone("far", 37.53, 110.89)  # 11.1 km north

    assert covered_zones([circle], [near, far], "141125") == {"near"}


def test_the_earthquake_example_circle_of_radius_zero_covers_its_centre_only() -> None:
    (area,) = parse_cap(example("earthquake")).infos[0].areas
    centre = zone("centre", -16.053, -173.274)
    beside = zone("beside", -16.05, -173.274)

    assert covered_zones([area], [centre, beside], "141125") == {"centre"}


def test_a_county_prefecture_or_province_code_covers_the_county() -> None:
    zones = [zone("a", 37.43, 110.89), zone("b", 37.50, 110.95)]

    def by(code: str, name: str = "GB/T 2260") -> frozenset[str]:
        return covered_zones([CapArea("", geocodes=((name, code),))], zones, "141125")

    assert by("141125") == {"a", "b"}  # 柳林县
    assert by("141100") == {"a", "b"}  # 吕梁市
    assert by("140000") == {"a", "b"}  # 山西省
    assert by("141124") == frozenset()  # 临县, the neighbour
    assert by("610000") == frozenset()  # 陕西省, across the Yellow River
    assert by("141125", name="SAME") == frozenset()  # not an area code


def test_a_township_code_covers_its_township_when_the_county_gives_the_codes() -> None:
    zones = [zone("town", 37.43, 110.89, "柳林镇"), zone("mucun", 37.40, 110.80, "穆村镇")]
    codes = {"柳林镇": "141125100", "穆村镇": "141125101"}
    area = CapArea("穆村镇", geocodes=(("GB/T 2260", "141125101000"),))

    assert covered_zones([area], zones, "141125", codes) == {"mucun"}
    assert covered_zones([area], zones, "141125") == frozenset()  # codes unknown: none


def test_the_county_file_gives_township_codes_and_refuses_wrong_ones(tmp_path: Path) -> None:
    county_dir = tmp_path / "county"
    shutil.copytree(COUNTY, county_dir, ignore=shutil.ignore_patterns("rules", "scenarios"))
    county_yaml = county_dir / "county.yaml"
    text = county_yaml.read_text(encoding="utf-8")
    good = text + '\ntownship_codes: {穆村镇: "141125101"}\n'
    county_yaml.write_text(good, encoding="utf-8")

    assert load_county(county_dir).township_codes == {"穆村镇": "141125101"}

    county_yaml.write_text(text + '\ntownship_codes: {穆村镇: "141124101"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_county(county_dir)
    (problem,) = caught.value.problems
    assert "'141124101' is not a township code of county 141125" in str(problem)
