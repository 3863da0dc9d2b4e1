"""load_ruleset(): what a rule set holds, and every error at file:line:column."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from rules.expr import parse_condition
from rules.loader import load_ruleset
from rules.ruleset import ZoneSelector
from rules.types import Level
from rules.yamlsource import ConfigError

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
