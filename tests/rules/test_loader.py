"""load_ruleset(): what a rule set holds, and every error at file:line:column."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from rules.config import ConfigError
from rules.expr import parse_condition
from rules.loader import load_ruleset
from rules.ruleset import ParamOverride, ZoneSelector
from rules.types import Level

ICING = """\
hazards:
  road_icing:
    name: 道路结冰
    advice:
      default: 注意防滑
      red: 立即停止户外作业
rules:
  - id: cma-road-icing
    hazard: road_icing
    source: 中国气象局令第16号
    zones: {kinds: [landslide], tags: [trunk_road]}
    levels:
      red:
        within: 2h
        when: soil_temperature_0cm <= 0 and precipitation > 0
      yellow:
        within: 12h
        when: soil_temperature_0cm <= 0 and precipitation > 0
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(directory: Path, *files: tuple[str, str]) -> list[str]:
    """The problems loading the given (name, text) files, with paths relative to directory."""
    paths = [write(directory, name, text) for name, text in files]
    with pytest.raises(ConfigError) as caught:
        load_ruleset(paths)
    return [str(p).removeprefix(f"{directory}/") for p in caught.value.problems]


def one_rule(when: str) -> str:
    """A rules file whose only level has the given `when:` line(s) (indented 6 spaces)."""
    return (
        "rules:\n  - id: r\n    hazard: fog\n    zones: {}\n    levels:\n      yellow:\n"
        + textwrap.indent(textwrap.dedent(when), "        ")
    )


# --- what a rule set holds -------------------------------------------------------------


def test_a_rule_file_becomes_rules_with_parsed_conditions(tmp_path: Path) -> None:
    rules = load_ruleset(write(tmp_path, "icing.yaml", ICING))

    (rule,) = rules.rules
    assert (rule.id, rule.hazard) == ("cma-road-icing", "road_icing")
    assert rule.source == "中国气象局令第16号"
    assert rule.zones == ZoneSelector(
        kinds=frozenset({"landslide"}), tags=frozenset({"trunk_road"})
    )
    assert [(lv.level, lv.within_hours) for lv in rule.levels] == [
        (Level.YELLOW, 12),
        (Level.RED, 2),
    ]
    assert rule.levels[0].when == parse_condition("soil_temperature_0cm <= 0 and precipitation > 0")
    assert (rule.file, rule.line) == (str(tmp_path / "icing.yaml"), 8)


def test_variables_are_the_raw_forecast_variables_the_rules_read(tmp_path: Path) -> None:
    rules = load_ruleset(write(tmp_path, "icing.yaml", ICING))

    assert rules.variables == {"soil_temperature_0cm", "precipitation"}


def test_lookback_is_the_longest_history_any_rule_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "cw.yaml", one_rule("when: drop(daily_min(temperature_2m), 48h) >= 8"))

    assert load_ruleset(path).lookback_hours == 71


def test_hazard_names_and_advice(tmp_path: Path) -> None:
    rules = load_ruleset(write(tmp_path, "icing.yaml", ICING))

    assert rules.hazard_name("road_icing") == "道路结冰"
    assert rules.advice("road_icing", Level.RED) == "立即停止户外作业"
    assert rules.advice("road_icing", Level.YELLOW) == "注意防滑"


def test_an_undeclared_hazard_is_named_by_its_key(tmp_path: Path) -> None:
    rules = load_ruleset(write(tmp_path, "fog.yaml", one_rule("when: visibility < 500")))

    assert rules.hazard_name("fog") == "fog"
    assert rules.advice("fog", Level.YELLOW) == ""


def test_structured_conditions_equal_their_string_form(tmp_path: Path) -> None:
    text = one_rule("""\
        when:
          all:
            - any:
                - rain > 0
                - showers > 0
            - not: temperature_2m > 2
        """)

    (rule,) = load_ruleset(write(tmp_path, "sleet.yaml", text)).rules

    assert rule.levels[0].when == parse_condition(
        "(rain > 0 or showers > 0) and not temperature_2m > 2"
    )


def test_a_directory_loads_its_yaml_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", one_rule("when: rain > 0").replace("id: r", "id: second"))
    write(tmp_path, "a.yaml", one_rule("when: rain > 0").replace("id: r", "id: first"))

    rules = load_ruleset(tmp_path)

    assert [rule.id for rule in rules.rules] == ["first", "second"]


def test_content_hash_is_the_sha256_of_the_files_in_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", ICING)
    b = write(tmp_path, "b.yaml", "rules: []\n")

    rules = load_ruleset([a, b])

    assert rules.content_hash == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()


# --- errors ----------------------------------------------------------------------------


def test_yaml_syntax_error_points_at_the_position(tmp_path: Path) -> None:
    assert problems(tmp_path, ("bad.yaml", "rules:\n  - id: [r\n")) == [
        "bad.yaml:3:1: YAML syntax: expected ',' or ']', but got '<stream end>'; "
        "fix the YAML at this position"
    ]


def test_unknown_key_points_at_the_key(tmp_path: Path) -> None:
    text = one_rule("when: rain > 0\nwithn: 2h\n")

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:8:16: unknown key 'withn'; remove it or check its spelling"
    ]


def test_unknown_level_name_lists_the_levels(tmp_path: Path) -> None:
    text = one_rule("when: rain > 0\n").replace("yellow:", "amber:")

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:6:7: amber: unknown level 'amber'; expected one of blue, yellow, orange, red"
    ]


def test_window_without_a_unit_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, ("r.yaml", one_rule("within: 12\nwhen: rain > 0\n"))) == [
        "r.yaml:7:17: within: write a duration with a unit, e.g. 12h or 2d"
    ]


def test_condition_that_is_neither_string_nor_all_any_not(tmp_path: Path) -> None:
    text = one_rule("when: {every: [rain > 0]}\n")

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:7:9: when: a condition is a comparison string such as 'visibility < 500' "
        "or a mapping with exactly one key: all, any or not"
    ]


def test_expression_error_in_a_plain_scalar_points_at_the_character(tmp_path: Path) -> None:
    text = one_rule("when: daily_min(temprature_2m) <= 4\n")

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:7:25: unknown variable 'temprature_2m'; did you mean 'temperature_2m'?"
    ]


@pytest.mark.parametrize("quote", ['"', "'"])
def test_expression_error_in_a_quoted_scalar_skips_the_quote(tmp_path: Path, quote: str) -> None:
    text = one_rule(f"when: {quote}dailymin(rain) > 0{quote}\n")

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:7:16: unknown function 'dailymin'")


def test_expression_error_on_a_continuation_line(tmp_path: Path) -> None:
    text = one_rule("""\
        when: visibility < 500
          and weather_code in 45
        """)

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:8:31: expected '[' to start the list of values after 'in', found '45'"
    ]


def test_expression_error_in_a_block_scalar(tmp_path: Path) -> None:
    text = one_rule("""\
        when: |
          visibility < 500 and
          snowfal > 0
        """)

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:9:11: unknown variable 'snowfal'")


def test_expression_error_inside_all_points_at_the_item(tmp_path: Path) -> None:
    text = one_rule("""\
        when:
          all:
            - rain > 0
            - temperature_2m =< 2
        """)

    assert problems(tmp_path, ("r.yaml", text)) == [
        "r.yaml:10:30: unexpected character '='; use '==' to compare for equality"
    ]


def test_duplicate_rule_id_names_the_first_definition(tmp_path: Path) -> None:
    rule = one_rule("when: rain > 0\n")

    assert problems(tmp_path, ("a.yaml", rule), ("b.yaml", rule)) == [
        f"b.yaml:2:9: duplicate rule id 'r'; first defined at {tmp_path}/a.yaml:2"
    ]


def test_hazard_declared_twice_names_the_first_declaration(tmp_path: Path) -> None:
    hazard = "hazards:\n  fog: {name: 大雾}\n"

    assert problems(tmp_path, ("a.yaml", hazard), ("b.yaml", hazard)) == [
        f"b.yaml:2:3: hazard 'fog' is already declared at {tmp_path}/a.yaml:2"
    ]


def test_all_problems_of_all_files_are_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        ("a.yaml", one_rule("when: rain >> 0\n")),
        ("b.yaml", "rules:\n  - id: x\n"),
        ("c.yaml", "rules: [\n"),
        ("d.yaml", one_rule("when: rain > 0\n")),
    )

    assert found == [
        "a.yaml:7:21: expected a number after '>', found '>'",
        "b.yaml:2:5: missing required key 'hazard'",
        "b.yaml:2:5: missing required key 'levels'",
        "b.yaml:2:5: missing required key 'zones'",
        "c.yaml:2:1: YAML syntax: expected the node content, but found '<stream end>'; "
        "fix the YAML at this position",
        f"d.yaml:2:9: duplicate rule id 'r'; first defined at {tmp_path}/a.yaml:2",
    ]


def test_a_valid_rule_is_checked_even_when_its_neighbour_is_invalid(tmp_path: Path) -> None:
    text = one_rule("when: snow > 0\n") + "  - id: s\n    hazard: fog\n    zone: {}\n"

    found = problems(tmp_path, ("r.yaml", text))

    assert any("unknown variable 'snow'" in p for p in found)


def test_zone_kind_typo_is_refused(tmp_path: Path) -> None:
    text = one_rule("when: rain > 0\n").replace("zones: {}", "zones: {kinds: [landslid]}")

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:4:21: kinds[0]: Input should be 'landslide'")


def test_an_empty_selector_list_is_refused(tmp_path: Path) -> None:
    text = one_rule("when: rain > 0\n").replace("zones: {}", "zones: {tags: []}")

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:4:13: tags: List should have at least 1 item")


def test_a_yml_file_in_the_directory_is_not_silently_ignored(tmp_path: Path) -> None:
    write(tmp_path, "fog.yml", one_rule("when: visibility < 500\n"))

    with pytest.raises(ConfigError) as caught:
        load_ruleset(tmp_path)

    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}:1:1: no rule files (*.yaml) in this directory",
        f"{tmp_path}/fog.yml:1:1: rule files must end in .yaml; rename it fog.yaml",
    ]


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_ruleset(tmp_path / "nope.yaml")

    assert str(caught.value) == f"{tmp_path}/nope.yaml:1:1: file not found"


# --- one fixture per error kind ----------------------------------------------------------

BROKEN = Path(__file__).parent / "fixtures" / "broken"

EVERY_ERROR_KIND = [
    "a01-yaml-syntax.yaml:3:1: YAML syntax: expected ',' or ']', but got '<stream end>'; "
    "fix the YAML at this position",
    "a02-unknown-key.yaml:7:16: unknown key 'withn'; remove it or check its spelling",
    "a03-unknown-level.yaml:6:7: amber: unknown level 'amber'; "
    "expected one of blue, yellow, orange, red",
    "a04-window-without-unit.yaml:6:24: within: write a duration with a unit, e.g. 12h or 2d",
    "a05-bad-condition.yaml:8:9: when: a condition is a comparison string such as "
    "'visibility < 500' or a mapping with exactly one key: all, any or not",
    "a06-unknown-variable.yaml:8:25: unknown variable 'temprature_2m'; "
    "did you mean 'temperature_2m'?",
    "a07-unknown-function.yaml:8:15: unknown function 'total'; expected one of daily_min, "
    "daily_max, drop, sum, min, max, mean, beaufort, count, run, freeze_thaw",
    "a08-unknown-parameter.yaml:9:55: unknown parameter '$dorp'; did you mean '$drop'? "
    "(the rule declares $drop)",
    "a09-unused-parameter.yaml:5:21: parameter 'limit' is not used by any level; "
    "use it as $limit in a condition or remove it",
    "a10-override-unknown-parameter.yaml:8:24: unknown parameter 'limt'; "
    "the rule's params declare: limit",
    "a11-unknown-tag.yaml:4:28: tags[1]: unknown tag 'workshed'; did you mean 'work_shed'? "
    "expected one of school, hospital, scenic_area, trunk_road, work_shed, slope_cut_housing, "
    "hillside_resettlement, high_steep_slope, urban_village, residential, mining_site, "
    "industrial_site",
    "a12-unknown-kind.yaml:4:21: kinds[0]: Input should be 'landslide', 'collapse', "
    "'debris_flow', 'subsidence', 'ground_fissure' or 'unstable_slope'",
    "a13-bad-polygon.yaml:5:32: polygon[1]: [110.9, 37.6] is not [latitude, longitude]: "
    "latitude is -90..90 and longitude -180..180 (in China, about [37.4, 110.9])",
    "a14-empty-exclude.yaml:4:32: exclude: {} would leave out every zone; name the zones to "
    "leave out, e.g. exclude: {tags: [school]}",
    "a15-for-longer-than-window.yaml:8:14: for: 3h is longer than the window "
    "(2h = since + within); it could never hold: shorten `for` or widen the window",
    "a16-duplicate-rule-id.yaml:2:9: duplicate rule id 'for-longer-than-window'; "
    "first defined at {dir}/a15-for-longer-than-window.yaml:2",
    "a18-duplicate-hazard-again.yaml:2:3: hazard 'fog' is already declared at "
    "{dir}/a17-duplicate-hazard.yaml:2",
    "a19-include-not-in-library.yaml:1:23: include 'cold-wave' not found in the rule library; "
    "did you mean 'cma-cold-wave'? expected one of blizzard, cma-cold-wave, fog, freeze-thaw, "
    "freezing-rain, frost, gbt21987-cold-wave, official-signals, road-icing, sleet, or a path "
    "relative to this file such as shared/fog.yaml",
    "a20-include-path-not-found.yaml:1:11: include 'shared/county-fog.yaml' not found "
    "(looked for {dir}/shared/county-fog.yaml); expected a library name or a path relative "
    "to this file",
    "a21-override-unknown-rule.yaml:2:9: no rule 'cma-road-icng' to override; did you mean "
    "'cma-road-icing'? expected the id of a rule in these files or their includes",
    "a22-template-unknown-variable.yaml:5:56: unknown variable 'zone_name' in the template; "
    "expected one of sender, hazard, level, zone, township, village, onset, until, when, "
    "advice, code, link, evidence, kind, authority",
    "a23-template-syntax.yaml:7:9: template syntax: unexpected '}'",
    "a24-sms-too-long.yaml:7:9: the SMS can reach 206 characters (with a 20-character zone "
    "name, a 4-character code, a 60-character link and the 10-character signature); "
    "at most 201 fit in 3 SMS segments: shorten it",
    "a25-hold-without-unit.yaml:5:11: hold: write a duration with a unit, e.g. 3h or 90m",
    "a26-not-utf8.yaml:1:1: not UTF-8 text (invalid start byte); save the file as UTF-8",
    "a27-yml-extension.yml:1:1: rule files must end in .yaml; rename it a27-yml-extension.yaml",
]


def test_a_directory_of_broken_files_reports_every_error_kind_at_its_position() -> None:
    with pytest.raises(ConfigError) as caught:
        load_ruleset(BROKEN)

    found = [str(p).removeprefix(f"{BROKEN}/") for p in caught.value.problems]
    assert found == [line.replace("{dir}", str(BROKEN)) for line in EVERY_ERROR_KIND]


# --- includes and overrides --------------------------------------------------------------

LIBRARY = Path(__file__).resolve().parents[2] / "rules" / "library"


def test_a_library_name_includes_the_library_file(tmp_path: Path) -> None:
    rules = load_ruleset(write(tmp_path, "county.yaml", "include: [road-icing, fog]\n"))

    assert [rule.id for rule in rules.rules] == ["cma-road-icing", "cma-fog"]
    assert rules.hazard_name("fog") == "大雾"
    assert rules.files == (
        str(tmp_path / "county.yaml"),
        str(LIBRARY / "road-icing.yaml"),
        str(LIBRARY / "fog.yaml"),
    )


def test_included_rules_come_before_the_including_files_rules(tmp_path: Path) -> None:
    text = "include: [fog]\n" + one_rule("when: rain > 0\n")

    rules = load_ruleset(write(tmp_path, "county.yaml", text))

    assert [rule.id for rule in rules.rules] == ["cma-fog", "r"]


def test_a_relative_path_includes_a_file_next_to_the_including_one(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    write(tmp_path, "shared/fog.yaml", one_rule("when: visibility < 300\n"))

    rules = load_ruleset(write(tmp_path, "county.yaml", "include: [shared/fog.yaml]\n"))

    assert [rule.id for rule in rules.rules] == ["r"]


def test_a_file_included_twice_is_read_once(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "include: [fog]\n")
    b = write(tmp_path, "b.yaml", "include: [fog]\n")

    rules = load_ruleset([a, b])

    assert [rule.id for rule in rules.rules] == ["cma-fog"]


def test_the_content_hash_covers_included_files(tmp_path: Path) -> None:
    county = write(tmp_path, "county.yaml", "include: [fog]\n")

    rules = load_ruleset(county)

    expected = county.read_bytes() + (LIBRARY / "fog.yaml").read_bytes()
    assert rules.content_hash == hashlib.sha256(expected).hexdigest()


def test_two_library_files_declaring_one_hazard_alike_load_together(tmp_path: Path) -> None:
    text = "include: [cma-cold-wave, gbt21987-cold-wave]\n"

    rules = load_ruleset(write(tmp_path, "county.yaml", text))

    assert [rule.hazard for rule in rules.rules] == ["cold_wave", "cold_wave"]


def test_the_countys_hazard_declaration_replaces_the_librarys(tmp_path: Path) -> None:
    text = "include: [fog]\nhazards:\n  fog: {name: 浓雾, advice: {default: 远离陡坡}}\n"

    rules = load_ruleset(write(tmp_path, "county.yaml", text))

    assert rules.hazard_name("fog") == "浓雾"
    assert rules.advice("fog", Level.RED) == "远离陡坡"


def test_the_whole_library_loads_together(tmp_path: Path) -> None:
    names = sorted(path.stem for path in LIBRARY.glob("*.yaml"))

    rules = load_ruleset(write(tmp_path, "all.yaml", f"include: [{', '.join(names)}]\n"))

    # one rule per file, but the official signals: one relay per signal
    relays = len(load_ruleset(LIBRARY / "official-signals.yaml").rules)
    assert len(rules.rules) == len(names) - 1 + relays == len(names) + 5
    assert rules.lookback_hours == 95  # a 72 h drop of a daily minimum


def test_an_override_replaces_only_the_keys_it_gives(tmp_path: Path) -> None:
    text = """\
        include: [road-icing]
        override:
          - id: cma-road-icing
            params: {surface: 0.5}
            zones: {tags: [trunk_road]}
            hold: 2h
        """

    (rule,) = load_ruleset(write(tmp_path, "county.yaml", text)).rules

    assert rule.params == {"surface": 0.5}
    assert rule.zones == ZoneSelector(tags=frozenset({"trunk_road"}))
    assert rule.hold == timedelta(hours=2)
    assert [level.level for level in rule.levels] == [Level.YELLOW, Level.ORANGE, Level.RED]
    assert rule.title == "道路结冰预警信号"


def test_an_override_may_replace_the_levels(tmp_path: Path) -> None:
    text = """\
        include: [fog]
        override:
          - id: cma-fog
            levels:
              orange: {within: 6h, when: visibility < 300}
        """

    (rule,) = load_ruleset(write(tmp_path, "county.yaml", text)).rules

    assert [(lv.level, lv.when) for lv in rule.levels] == [
        (Level.ORANGE, parse_condition("visibility < 300"))
    ]


def test_an_override_may_switch_a_rule_off(tmp_path: Path) -> None:
    text = "include: [fog, road-icing]\noverride:\n  - {id: cma-fog, enabled: false}\n"

    rules = load_ruleset(write(tmp_path, "county.yaml", text))

    assert [rule.id for rule in rules.rules] == ["cma-road-icing"]


def test_an_override_of_a_parameter_the_rule_lacks_is_refused(tmp_path: Path) -> None:
    text = "include: [road-icing]\noverride:\n  - id: cma-road-icing\n    params: {surfce: 1}\n"

    assert problems(tmp_path, ("county.yaml", text)) == [
        "county.yaml:4:22: rule 'cma-road-icing' has no parameter 'surfce'; its params: surface"
    ]


def test_overriding_one_rule_twice_is_refused(tmp_path: Path) -> None:
    text = "include: [fog]\noverride:\n  - {id: cma-fog, hold: 1h}\n  - {id: cma-fog, hold: 2h}\n"

    assert problems(tmp_path, ("county.yaml", text)) == [
        f"county.yaml:4:10: rule 'cma-fog' is already overridden at {tmp_path}/county.yaml:3"
    ]


def test_redefining_an_included_rule_suggests_an_override(tmp_path: Path) -> None:
    text = "include: [fog]\n" + one_rule("when: visibility < 300\n").replace("id: r", "id: cma-fog")

    library = (LIBRARY / "fog.yaml").read_text(encoding="utf-8").splitlines()
    line = library.index("  - id: cma-fog") + 1

    (problem,) = problems(tmp_path, ("county.yaml", text))

    assert problem == (
        f"county.yaml:3:9: duplicate rule id 'cma-fog'; first defined at "
        f"{LIBRARY}/fog.yaml:{line}; to change an included rule, "
        "write override: [{id: cma-fog, ...}]"
    )


# --- levels, parameters, selectors, hold, cooldown, templates ----------------------------


def test_since_within_and_for_are_read_in_hours(tmp_path: Path) -> None:
    text = one_rule("since: 3h\nwithin: 12h\nfor: 2h\nwhen: rain > 0\n")

    (rule,) = load_ruleset(write(tmp_path, "r.yaml", text)).rules

    level = rule.levels[0]
    assert (level.since_hours, level.within_hours, level.for_hours) == (3, 12, 2)


def test_lookback_adds_since_to_the_history_of_the_condition(tmp_path: Path) -> None:
    text = one_rule("since: 3h\nwithin: 2h\nwhen: sum(rain, 6h) > 0\n")

    assert load_ruleset(write(tmp_path, "r.yaml", text)).lookback_hours == 3 + 5


def test_params_and_overrides_are_read(tmp_path: Path) -> None:
    text = """\
        rules:
          - id: r
            hazard: cold_wave
            zones: {}
            params: {drop: 10, tmin: 4}
            overrides:
              - zones: {tags: [work_shed]}
                params: {drop: 8}
            levels:
              yellow:
                within: 24h
                when: drop(daily_min(temperature_2m), 24h) >= $drop
                  and daily_min(temperature_2m) <= $tmin
        """

    (rule,) = load_ruleset(write(tmp_path, "r.yaml", text)).rules

    assert rule.params == {"drop": 10.0, "tmin": 4.0}
    assert rule.overrides == (
        ParamOverride(ZoneSelector(tags=frozenset({"work_shed"})), {"drop": 8.0}),
    )
    assert str(rule.levels[0].when) == (
        "drop(daily_min(temperature_2m), 24h) >= $drop and daily_min(temperature_2m) <= $tmin"
    )


def test_a_parameter_without_params_says_how_to_declare_it(tmp_path: Path) -> None:
    assert problems(tmp_path, ("r.yaml", one_rule("when: visibility < $limit\n"))) == [
        "r.yaml:7:28: unknown parameter '$limit'; declare it in the rule's params, "
        "e.g. params: {limit: 10}"
    ]


def test_a_parameter_must_be_a_number(tmp_path: Path) -> None:
    text = one_rule("when: visibility < $limit\n").replace(
        "zones: {}", "zones: {}\n    params: {limit: 5km}"
    )

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:5:21: limit: Input should be a valid number")


def test_polygon_and_exclude_are_read(tmp_path: Path) -> None:
    zones = "zones: {polygon: [[37, 110], [38, 110], [38, 111]], exclude: {risk: [low]}}"
    text = one_rule("when: rain > 0\n").replace("zones: {}", zones)

    (rule,) = load_ruleset(write(tmp_path, "r.yaml", text)).rules

    assert rule.zones == ZoneSelector(
        polygon=((37.0, 110.0), (38.0, 110.0), (38.0, 111.0)),
        exclude=ZoneSelector(risk=frozenset({"low"})),
    )


def test_a_polygon_needs_three_vertices(tmp_path: Path) -> None:
    text = one_rule("when: rain > 0\n").replace(
        "zones: {}", "zones: {polygon: [[37, 110], [38, 110]]}"
    )

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem == (
        "r.yaml:4:13: polygon: List should have at least 3 items after validation, not 2"
    )


def test_hold_and_cooldown_take_the_duration_grammar_of_escalation_yaml(tmp_path: Path) -> None:
    text = """\
        rules:
          - {id: a, hazard: fog, zones: {}, hold: 1h30m, cooldown: 5400s,
             levels: {yellow: {when: visibility < 500}}}
          - {id: b, hazard: frost, zones: {}, hold: 90m, cooldown: 1d,
             levels: {blue: {when: soil_temperature_0cm < 0}}}
        """

    rules = load_ruleset(write(tmp_path, "r.yaml", text))

    assert rules.hold("fog") == rules.hold("frost") == timedelta(minutes=90)
    assert rules.cooldown("fog") == timedelta(minutes=90)
    assert rules.cooldown("frost") == timedelta(days=1)


def test_a_window_in_minutes_that_is_whole_hours_is_those_hours(tmp_path: Path) -> None:
    text = one_rule("within: 1h60m\nfor: 120m\nwhen: rain > 0\n")

    (level,) = load_ruleset(write(tmp_path, "r.yaml", text)).rules[0].levels

    assert (level.within_hours, level.for_hours) == (2, 2)


def test_a_window_that_is_not_whole_hours_is_refused_with_the_hourly_reason(
    tmp_path: Path,
) -> None:
    assert problems(tmp_path, ("r.yaml", one_rule("within: 1h30m\nwhen: rain > 0\n"))) == [
        "r.yaml:7:17: within: duration '1h30m' must be a positive whole number of hours "
        "(the forecast is hourly), e.g. 1h, 24h or 2d"
    ]


def test_hold_and_cooldown_per_hazard_are_the_longest_of_its_rules(tmp_path: Path) -> None:
    text = """\
        rules:
          - {id: a, hazard: fog, zones: {}, hold: 2h, cooldown: 90m,
             levels: {yellow: {when: visibility < 500}}}
          - {id: b, hazard: fog, zones: {}, hold: 3h, levels: {red: {when: visibility < 50}}}
          - {id: c, hazard: frost, zones: {}, levels: {blue: {when: soil_temperature_0cm < 0}}}
        """

    rules = load_ruleset(write(tmp_path, "r.yaml", text))

    assert rules.hold("fog") == timedelta(hours=3)
    assert rules.cooldown("fog") == timedelta(minutes=90)
    assert rules.hold("frost") is None
    assert rules.cooldown("unknown-hazard") is None


def test_a_rules_template_wins_over_its_hazards(tmp_path: Path) -> None:
    text = """\
        hazards:
          fog:
            name: 大雾
            templates: {sms: "{{ hazard }}{{ level }}预警：{{ zone }}", voice: "{{ zone }}有雾"}
        rules:
          - id: r
            hazard: fog
            zones: {}
            templates: {sms: "{{ zone }}{{ level }}大雾"}
            levels: {yellow: {when: visibility < 500}}
        """

    rules = load_ruleset(write(tmp_path, "r.yaml", text))

    assert rules.template("fog", "r", "sms") == "{{ zone }}{{ level }}大雾"
    assert rules.template("fog", "r", "voice") == "{{ zone }}有雾"
    assert rules.template("fog", "other", "sms") == "{{ hazard }}{{ level }}预警：{{ zone }}"
    assert rules.template("fog", "r", "im") is None
    assert rules.template("frost", None, "sms") is None


def test_an_sms_template_is_checked_with_the_hazards_longest_advice(tmp_path: Path) -> None:
    advice = "远" * 190
    text = (
        f"hazards:\n  fog:\n    name: 大雾\n    advice: {{red: {advice}}}\n"
        "    templates: {sms: '{{ zone }}{{ advice }}'}\n"
    )

    (problem,) = problems(tmp_path, ("r.yaml", text))

    assert problem.startswith("r.yaml:5:23: the SMS can reach 210 characters")
