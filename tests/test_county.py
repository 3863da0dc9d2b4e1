"""The county configuration loader, the example county (Liulin) and its drill scenarios."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dispatcher.county import DUTY_ROLE_LABELS, ROLE_LABELS, County, load_county
from dispatcher.feeds.points import assign_points
from dispatcher.feeds.replay import ReplayFeed
from rules.config import ConfigError, load_yaml
from rules.evaluate import evaluate
from rules.loader import LIBRARY, library_names, load_ruleset
from tests.support import example_county

LIULIN = Path(__file__).resolve().parent.parent / "examples" / "liulin"
SCENARIOS = LIULIN / "scenarios"
FICTITIOUS_PHONE = re.compile(r"^\+86170000[0-9]{5}$")
# Liulin county, generously boxed (DOMAIN.md): the Yellow River is the west edge.
LAT_BOX, LON_BOX = (37.25, 37.60), (110.65, 111.10)

# The drill time in examples/liulin/README.md, and what it says must happen then.
DRILL_AT = datetime.fromisoformat("2026-01-07T00:00:00+08:00")
EAST_LON = 110.98  # points at or east of this get orange cold-wave warnings


@pytest.fixture(scope="module")
def liulin() -> County:
    return example_county()


# --- the example county


def test_example_county_loads_with_its_bureau(liulin: County) -> None:
    assert liulin.name == "柳林县"
    assert liulin.area_code == "141125"
    assert liulin.sender == "柳林县自然资源局"
    assert liulin.timezone == "Asia/Shanghai"


def test_example_county_has_enough_zones_over_enough_townships(liulin: County) -> None:
    assert len(liulin.zones) >= 30
    assert len({zone.township for zone in liulin.zones}) >= 5


def test_every_example_zone_lies_inside_liulin(liulin: County) -> None:
    outside = [
        zone.id
        for zone in liulin.zones
        if not (
            LAT_BOX[0] <= zone.latitude <= LAT_BOX[1] and LON_BOX[0] <= zone.longitude <= LON_BOX[1]
        )
    ]
    assert outside == []


def test_every_example_zone_has_its_responsible_people(liulin: County) -> None:
    for zone in liulin.zones:
        roles = [role for role, _ in liulin.people_of(zone.id)]
        assert "disaster_prevention" in roles, zone.id
        assert "monitoring" in roles, zone.id
        assert 1 <= roles.count("mass_monitor") <= 2, zone.id


def test_example_bureau_has_duty_officers_and_leaders(liulin: County) -> None:
    assert len(liulin.duty_officers()) >= 1
    assert len(liulin.leaders_on_duty()) >= 1


def test_every_example_phone_number_is_in_the_fictitious_range(liulin: County) -> None:
    wrong = [p.id for p in liulin.people.values() if not FICTITIOUS_PHONE.match(p.phone)]
    assert wrong == []
    assert "FICTITIOUS" in (LIULIN / "people.yaml").read_text(encoding="utf-8")


def test_some_example_zones_share_a_forecast_point_but_most_do_not(liulin: County) -> None:
    _, point_of = assign_points([(z.id, z.latitude, z.longitude) for z in liulin.zones], 0.02)
    sizes = Counter(point_of.values())
    assert max(sizes.values()) > 1
    assert sum(1 for n in sizes.values() if n == 1) > len(sizes) / 2


# --- the County API


def test_people_of_lists_roles_in_role_order(liulin: County) -> None:
    roles = [role for role, _ in liulin.people_of("LL-MC-001")]
    assert roles == sorted(roles, key=list(ROLE_LABELS).index)
    assert liulin.people_of("LL-MC-001")[0][1].name == "冯建军"


def test_people_of_an_unknown_zone_is_a_key_error(liulin: County) -> None:
    with pytest.raises(KeyError, match="LL-NOPE"):
        liulin.people_of("LL-NOPE")


def test_zone_specs_carry_the_point_assigned_to_each_zone(liulin: County) -> None:
    point_of = {zone.id: f"pt-{zone.id}" for zone in liulin.zones}
    specs = liulin.zone_specs(point_of)
    spec = next(s for s in specs if s.id == "LL-MC-001")
    assert spec.point_id == "pt-LL-MC-001"
    assert spec.risk_level == "high"
    assert spec.tags == frozenset({"slope_cut_housing", "school"})
    assert (spec.latitude, spec.longitude, spec.village) == (37.4112, 110.9521, "冯家沟村")


def test_zone_specs_refuse_a_zone_without_a_point(liulin: County) -> None:
    with pytest.raises(ValueError, match="LL-MC-001"):
        liulin.zone_specs({})


def test_role_labels_are_the_chinese_titles() -> None:
    assert ROLE_LABELS["disaster_prevention"] == "防灾责任人"
    assert ROLE_LABELS["mass_monitor"] == "群测群防员"
    assert DUTY_ROLE_LABELS == {
        "duty_officer": "值班员",
        "leader_on_duty": "带班领导",
        "administrator": "系统管理员",
    }


# --- errors: each names file:line:column

COUNTY = """\
county:
  name: 测试县
  area_code: "141125"
  sender: 测试县自然资源局
  timezone: Asia/Shanghai
"""
PEOPLE = """\
people:
  - id: p-duty
    name: 张志强
    phone: "+8617000000001"
    duty_role: duty_officer
  - id: p-head
    name: 冯建军
    phone: "+8617000000101"
"""
ZONES = """\
zones:
  - id: Z-1
    name: 穆村镇冯家沟村黄土滑坡
    kind: landslide
    township: 穆村镇
    village: 冯家沟村
    location: {lat: 37.41, lon: 110.95}
    risk: high
    tags: [school]
    people:
      disaster_prevention: [p-head]
"""


def write_config(
    tmp_path: Path, county: str = COUNTY, people: str = PEOPLE, zones: str = ZONES
) -> Path:
    for name, text in (("county.yaml", county), ("people.yaml", people), ("zones.yaml", zones)):
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def problems(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_county(config_dir)
    return [str(p) for p in caught.value.problems]


def only(found: list[str], where: str, *words: str) -> str:
    """The one problem at `where` (file:line:column); it must mention every word."""
    at = [p for p in found if p.startswith(where + ": ")]
    assert len(at) == 1, found
    for word in words:
        assert word in at[0], at[0]
    return at[0]


def test_a_minimal_valid_config_loads(tmp_path: Path) -> None:
    county = load_county(write_config(tmp_path))
    assert [z.id for z in county.zones] == ["Z-1"]
    assert [p.id for p in county.duty_officers()] == ["p-duty"]


def test_duplicate_zone_id_names_both_lines(tmp_path: Path) -> None:
    zones = ZONES + ZONES.removeprefix("zones:\n")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:12:9", "duplicate zone id 'Z-1'", "line 2")


def test_duplicate_person_id_names_both_lines(tmp_path: Path) -> None:
    people = PEOPLE + '  - id: p-head\n    name: 冯志刚\n    phone: "+8617000000102"\n'
    found = problems(write_config(tmp_path, people=people))
    only(found, f"{tmp_path}/people.yaml:9:9", "duplicate person id 'p-head'", "line 6")


def test_unknown_person_names_zone_role_and_a_close_id(tmp_path: Path) -> None:
    zones = ZONES + "      monitoring: [p-haed]\n"
    found = problems(write_config(tmp_path, zones=zones))
    only(
        found,
        f"{tmp_path}/zones.yaml:12:20",
        "zone Z-1",
        "monitoring",
        "监测责任人",
        "'p-haed'",
        "did you mean 'p-head'",
    )


def test_latitude_outside_the_plausible_range_is_refused(tmp_path: Path) -> None:
    zones = ZONES.replace("lat: 37.41", "lat: 97.41")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:7:21", "latitude 97.41", "plausible range")


def test_swapped_coordinates_are_named_as_swapped(tmp_path: Path) -> None:
    zones = ZONES.replace("{lat: 37.41, lon: 110.95}", "{lat: 110.95, lon: 37.41}")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:7:5", "look swapped", "{lat: 37.41, lon: 110.95}")


def test_area_code_must_be_six_digits(tmp_path: Path) -> None:
    county = COUNTY.replace('"141125"', '"14112"')
    found = problems(write_config(tmp_path, county=county))
    only(found, f"{tmp_path}/county.yaml:3:14", "'14112'", "six digits")


def test_unquoted_area_code_asks_for_quotes(tmp_path: Path) -> None:
    county = COUNTY.replace('"141125"', "141125")
    found = problems(write_config(tmp_path, county=county))
    only(found, f"{tmp_path}/county.yaml:3:14", "quoted")


def test_unknown_kind_lists_the_allowed_kinds(tmp_path: Path) -> None:
    zones = ZONES.replace("kind: landslide", "kind: landslip")
    found = problems(write_config(tmp_path, zones=zones))
    only(
        found,
        f"{tmp_path}/zones.yaml:4:11",
        "unknown kind 'landslip'",
        "did you mean 'landslide'",
        "landslide, collapse, debris_flow, subsidence, ground_fissure, unstable_slope",
    )


def test_unknown_risk_lists_the_allowed_levels(tmp_path: Path) -> None:
    zones = ZONES.replace("risk: high", "risk: severe")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:8:11", "'severe'", "low, medium, high, very_high")


def test_unknown_tag_points_at_the_tag_and_lists_the_allowed_tags(tmp_path: Path) -> None:
    zones = ZONES.replace("tags: [school]", "tags: [school, schol]")
    found = problems(write_config(tmp_path, zones=zones))
    message = only(found, f"{tmp_path}/zones.yaml:9:20", "unknown exposure tag 'schol'", "'school'")
    assert "mining_site" in message


def test_zone_without_a_disaster_prevention_person_is_refused(tmp_path: Path) -> None:
    zones = ZONES.replace("disaster_prevention: [p-head]", "monitoring: [p-head]")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:10:5", "zone Z-1", "disaster_prevention", "防灾责任人")


def test_no_duty_officer_is_refused(tmp_path: Path) -> None:
    people = PEOPLE.replace("    duty_role: duty_officer\n", "")
    found = problems(write_config(tmp_path, people=people))
    only(found, f"{tmp_path}/people.yaml:1:1", "no duty officer", "duty_role: duty_officer")


def test_unknown_role_lists_the_roles(tmp_path: Path) -> None:
    zones = ZONES + "      watcher: [p-head]\n"
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:12:7", "unknown role 'watcher'", "mass_monitor")


def test_phone_must_be_e164(tmp_path: Path) -> None:
    people = PEOPLE.replace('"+8617000000101"', '"170 0000 0101"')
    found = problems(write_config(tmp_path, people=people))
    only(found, f"{tmp_path}/people.yaml:8:12", "E.164")


def test_unknown_key_is_refused_at_its_line(tmp_path: Path) -> None:
    zones = ZONES.replace("    risk: high\n", "    risk: high\n    colour: red\n")
    found = problems(write_config(tmp_path, zones=zones))
    only(found, f"{tmp_path}/zones.yaml:9:13", "unknown key 'colour'")


def test_yaml_syntax_error_names_its_position(tmp_path: Path) -> None:
    found = problems(write_config(tmp_path, county="county:\n  name: [柳林县\n"))
    assert any(p.startswith(f"{tmp_path}/county.yaml:") and "YAML syntax" in p for p in found)


def test_missing_file_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (config / "people.yaml").unlink()
    found = problems(config)
    only(found, f"{tmp_path}/people.yaml:1:1", "file not found")


def test_problems_of_all_three_files_are_reported_together(tmp_path: Path) -> None:
    found = problems(
        write_config(
            tmp_path,
            county=COUNTY.replace('"141125"', '"1411"'),
            people=PEOPLE.replace("duty_role: duty_officer", "duty_role: officer"),
            zones=ZONES.replace("risk: high", "risk: hi").replace("[p-head]", "[p-nobody]"),
        )
    )
    files = {p.split(":")[0] for p in found}
    assert files == {f"{tmp_path}/{name}" for name in ("county.yaml", "people.yaml", "zones.yaml")}
    # the zone with a bad risk still has its people checked in the same pass
    assert any("unknown person 'p-nobody'" in p for p in found)


# --- the scenarios


def _make_scenarios() -> ModuleType:
    """examples/liulin/scenarios/make_scenarios.py, imported by path (it is not a package)."""
    name = "liulin_make_scenarios"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCENARIOS / "make_scenarios.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def _grid(liulin: County) -> list[tuple[float, float]]:
    """The 0.02° grid rule, written out independently of the feed and the generator."""
    cells = {
        (math.floor(z.latitude / 0.02 + 1e-9), math.floor(z.longitude / 0.02 + 1e-9))
        for z in liulin.zones
    }
    return sorted((round((r + 0.5) * 0.02, 4), round((c + 0.5) * 0.02, 4)) for r, c in cells)


def _load(name: str) -> Any:
    return json.loads((SCENARIOS / name).read_text(encoding="utf-8"))


SCENARIO_FILES = ["coldwave-2026-01.json", "calm-2026-01.json"]
OPEN_METEO_KEYS = {
    "latitude",
    "longitude",
    "generationtime_ms",
    "utc_offset_seconds",
    "timezone",
    "timezone_abbreviation",
    "elevation",
    "hourly_units",
    "hourly",
}
HOURLY_UNITS = {
    "time": "iso8601",
    "temperature_2m": "°C",
    "apparent_temperature": "°C",
    "soil_temperature_0cm": "°C",
    "precipitation": "mm",
    "rain": "mm",
    "showers": "mm",
    "snowfall": "cm",
    "weather_code": "wmo code",
    "visibility": "m",
    "wind_speed_10m": "m/s",
    "wind_gusts_10m": "m/s",
}
TIMES = [
    (datetime(2026, 1, 3, tzinfo=UTC) + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M")
    for i in range(240)
]


@pytest.mark.parametrize("name", SCENARIO_FILES)
def test_scenario_has_one_open_meteo_object_per_grid_point(name: str, liulin: County) -> None:
    payload = _load(name)
    assert isinstance(payload, list)
    assert [(loc["latitude"], loc["longitude"]) for loc in payload] == _grid(liulin)
    for loc in payload:
        assert set(loc) == OPEN_METEO_KEYS
        assert (loc["utc_offset_seconds"], loc["timezone"], loc["timezone_abbreviation"]) == (
            0,
            "GMT",
            "GMT",
        )


@pytest.mark.parametrize("name", SCENARIO_FILES)
def test_scenario_has_open_meteo_units_and_one_hourly_axis(name: str) -> None:
    for loc in _load(name):
        assert loc["hourly_units"] == HOURLY_UNITS
        assert list(loc["hourly"]) == list(HOURLY_UNITS)
        assert loc["hourly"]["time"] == TIMES
        assert {len(values) for values in loc["hourly"].values()} == {240}


@pytest.mark.parametrize("name", SCENARIO_FILES)
def test_scenario_codes_and_visibility_are_integers(name: str) -> None:
    for loc in _load(name):
        for key in ("weather_code", "visibility"):
            assert all(type(v) is int for v in loc["hourly"][key])


def test_committed_scenarios_are_what_the_generator_writes(tmp_path: Path) -> None:
    _make_scenarios().main(tmp_path)
    for name in SCENARIO_FILES:
        assert (tmp_path / name).read_bytes() == (SCENARIOS / name).read_bytes(), name


def test_generator_grid_rule_matches_the_feed(liulin: County) -> None:
    points, _ = assign_points([(z.id, z.latitude, z.longitude) for z in liulin.zones], 0.02)
    generated = _make_scenarios().grid_points([(z.latitude, z.longitude) for z in liulin.zones])
    assert generated == [(p.latitude, p.longitude) for p in points]


# --- the example rules are the library's


@pytest.mark.parametrize("path", sorted((LIULIN / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_rule_file_includes_the_library_and_copies_no_rule(path: Path) -> None:
    # given an example rule file: plain data, as its YAML says
    data = load_yaml(path).data or {}
    includes = data.get("include", [])
    library_rules = {
        rule.id for name in includes for rule in load_ruleset(LIBRARY / f"{name}.yaml").rules
    }

    # then it only includes library files and overrides rules of those files
    assert set(data) <= {"include", "override"}, "no copied rules or hazards"
    assert includes and set(includes) <= set(library_names())
    assert {item["id"] for item in data.get("override", [])} <= library_rules


# --- what the scenarios must produce (examples/liulin/README.md)


async def _assess(name: str, at: datetime, liulin: County) -> dict[tuple[str, str], str | None]:
    """(zone id, hazard) → level key (None: indeterminate) under the example rules."""
    ruleset = load_ruleset(LIULIN / "rules")
    points, point_of = assign_points([(z.id, z.latitude, z.longitude) for z in liulin.zones], 0.02)
    batch = await ReplayFeed(SCENARIOS / name, past_days=3).fetch(points, ruleset.variables)
    assessments = evaluate(ruleset, batch, liulin.zone_specs(point_of), at, liulin.timezone)
    return {(a.zone_id, a.hazard): a.level.key if a.level else None for a in assessments}


async def test_coldwave_drill_warns_cold_wave_by_longitude_and_road_icing_everywhere(
    liulin: County,
) -> None:
    found = await _assess("coldwave-2026-01.json", DRILL_AT, liulin)
    expected: dict[tuple[str, str], str | None] = {}
    for zone in liulin.zones:
        point_lon = (math.floor(zone.longitude / 0.02 + 1e-9) + 0.5) * 0.02
        expected[(zone.id, "cold_wave")] = "orange" if point_lon >= EAST_LON else "yellow"
        expected[(zone.id, "road_icing")] = "yellow"
    assert found == expected


async def test_road_icing_escalates_as_the_snow_nears(liulin: County) -> None:
    at_four = await _assess("coldwave-2026-01.json", DRILL_AT + timedelta(hours=4), liulin)
    at_eight = await _assess("coldwave-2026-01.json", DRILL_AT + timedelta(hours=8), liulin)
    assert {v for (_, h), v in at_four.items() if h == "road_icing"} == {"orange"}
    assert {v for (_, h), v in at_eight.items() if h == "road_icing"} == {"red"}


@pytest.mark.parametrize("hours_after", [0, 36, 72])
async def test_calm_week_warns_nothing(hours_after: int, liulin: County) -> None:
    at = DRILL_AT + timedelta(hours=hours_after)
    assert await _assess("calm-2026-01.json", at, liulin) == {}
