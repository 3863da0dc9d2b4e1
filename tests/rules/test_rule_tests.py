"""`yujing rules test`: the library's own suite passes, and the runner itself.

The runner reads test files (docs/rules.md, "Testing rules"), evaluates the
named rules on the series they give and compares the assessments with the
expected ones; a failure prints a diff and exits 1, a mistake in a test file
is reported at its file:line:column.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from rules.config import load_yaml
from rules.loader import LIBRARY, library_names, load_ruleset
from rules.testing import NotationError, parse_values

ROOT = Path(__file__).resolve().parents[2]
LIBRARY_TESTS = LIBRARY / "tests"
DOCS = ROOT / "docs" / "rules.md"

runner = CliRunner()

FOG_RULES = """\
hazards:
  fog: {name: 大雾}
rules:
  - id: fog
    hazard: fog
    zones: {}
    levels:
      yellow: {within: 12h, when: visibility < 500}
      orange: {within: 6h, when: visibility < 200}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def rules_test(*paths: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["rules", "test", *(str(p) for p in paths)])
    return result.exit_code, result.stdout, result.stderr


def one_test(directory: Path, test: str) -> Path:
    """A test file on tests/…/fog.yaml (FOG_RULES) holding one test (indented 2 spaces)."""
    write(directory, "fog.yaml", FOG_RULES)
    header = "rule_files: [fog.yaml]\nstart: 2026-01-05T00:00\nat: 2026-01-05T08:00\ntests:\n"
    return write(directory, "fog_test.yaml", header + textwrap.indent(textwrap.dedent(test), "  "))


# --- the built-in library's suite ----------------------------------------------------


def test_the_library_suite_passes() -> None:
    code, out, err = rules_test(LIBRARY_TESTS)

    assert (code, err) == (0, ""), out + err
    assert re.fullmatch(r"\d+ test\(s\), 0 failed\n", out.splitlines(keepends=True)[-1])


@pytest.mark.parametrize("name", library_names())
def test_every_library_file_has_tests(name: str) -> None:
    assert (LIBRARY_TESTS / f"{name}.yaml").is_file(), f"no tests for rules/library/{name}.yaml"


def test_every_library_rule_is_tested_at_every_level() -> None:
    """Each level of each library rule is the expected level of at least one test."""
    missing = []
    for name in library_names():
        ruleset = load_ruleset(LIBRARY / f"{name}.yaml")
        tests = load_yaml(LIBRARY_TESTS / f"{name}.yaml").data["tests"]
        expected = {(item["hazard"], item["level"]) for test in tests for item in test["expect"]}
        for rule in ruleset.rules:
            for level in rule.levels:
                if (rule.hazard, level.level.key) not in expected:
                    missing.append(f"{name}: {rule.id} {level.level.key}")
    assert missing == []


@pytest.mark.parametrize("name", library_names())
def test_every_library_suite_tests_missing_data(name: str) -> None:
    """A gap must leave a verdict open, never quiet: each suite shows that for its rule.

    Rules on official warnings alone read no forecast, so no gap can leave them open.
    """
    if not load_ruleset(LIBRARY / f"{name}.yaml").variables:
        return
    tests = load_yaml(LIBRARY_TESTS / f"{name}.yaml").data["tests"]
    open_verdicts = [
        item
        for test in tests
        for item in test["expect"]
        if item["level"] == "indeterminate" or "undecided_above" in item
    ]

    assert open_verdicts, f"rules/library/tests/{name}.yaml has no test of missing data"


# --- the documented example ------------------------------------------------------------


def docs_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text[text.index("## Testing rules") :]


def docs_example() -> str:
    section = docs_section()
    start = section.index("```yaml\n") + len("```yaml\n")
    return section[start : section.index("```", start)]


def test_the_documented_example_passes(tmp_path: Path) -> None:
    code, out, err = rules_test(write(tmp_path, "fog_test.yaml", docs_example()))

    assert (code, err, out) == (0, "", "3 test(s), 0 failed\n")


def test_the_documented_failure_is_what_a_failing_example_prints(tmp_path: Path) -> None:
    wrong = docs_example().replace("level: yellow, onset", "level: orange, onset", 1)
    path = write(tmp_path, "fog_test.yaml", wrong)
    section = docs_section()
    opening = section.index("```\n", section.index("**Failures**")) + 4
    block = section[opening : section.index("\n```", opening)]

    code, out, _ = rules_test(path)

    assert code == 1
    assert out.replace(str(tmp_path) + "/", "").splitlines() == block.splitlines()


# --- passing and failing -----------------------------------------------------------------


def test_a_met_expectation_passes(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: fog at 10:00
          series:
            Z1: {visibility: "900x10 450 900x13"}
          expect:
            - {zone: Z1, hazard: fog, level: yellow, onset: 2026-01-05T10:00, until: +10h}
        """,
    )

    assert rules_test(path) == (0, "1 test(s), 0 failed\n", "")


def test_a_failing_expectation_prints_the_diff_and_exits_1(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: fog at 10:00
          series:
            Z1: {visibility: "900x10 150 900x13"}
            Z2: {visibility: "900x24"}
          expect:
            - {zone: Z1, hazard: fog, level: yellow, onset: 2026-01-05T10:00}
            - {zone: Z2, hazard: fog, level: yellow, onset: 2026-01-05T11:00}
        """,
    )

    code, out, err = rules_test(path)

    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{path}:5:5: FAILED: fog at 10:00",
        "  Z1 fog:",
        "    expected: yellow  onset 2026-01-05 10:00",
        "    got:      orange  onset 2026-01-05 10:00  until 2026-01-05 10:00  rule fog  "
        "evidence {visibility: 150}",
        "  Z2 fog:",
        "    expected: yellow  onset 2026-01-05 11:00",
        "    got:      nothing",
        "1 test(s), 1 failed",
    ]


def test_an_unexpected_assessment_fails(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: nothing expected
          series:
            Z1: {visibility: "900x8 _ 900x15"}
          expect: []
        """,
    )

    code, out, _ = rules_test(path)

    assert code == 1
    assert "    expected: nothing\n    got:      indeterminate  undecided above orange" in out


def test_optional_fields_are_compared_when_given(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: until and evidence
          series:
            Z1: {visibility: "900x10 450x3 900x11"}
          expect:
            - {zone: Z1, hazard: fog, level: yellow, onset: +10h, until: +11h,
               evidence: {visibility: 449}}
        """,
    )

    code, out, _ = rules_test(path)

    assert code == 1
    assert "expected: yellow  onset 2026-01-05 10:00  until 2026-01-05 11:00" in out
    assert "until 2026-01-05 12:00" in out


def test_an_indeterminate_verdict_can_be_expected(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: a gap
          series:
            Z1: {visibility: "900x8 _ 900x15"}
          expect:
            - {zone: Z1, hazard: fog, level: indeterminate, undecided_above: orange}
        """,
    )

    assert rules_test(path)[0] == 0


def test_zones_on_one_point_and_a_series_for_every_point(tmp_path: Path) -> None:
    write(
        tmp_path,
        "fog.yaml",
        FOG_RULES.replace("zones: {}", "zones: {tags: [school]}"),
    )
    path = write(
        tmp_path,
        "fog_test.yaml",
        """\
        rule_files: [fog.yaml]
        start: 2026-01-05T00:00
        at: +8h
        series:
          visibility: "900x10 450 900x13"
        tests:
          - name: only the school is selected
            zones:
              - {id: school, point: p1, tags: [school]}
              - {id: shed, point: p1, tags: [work_shed]}
            series:
              p1: {}
            expect:
              - {zone: school, hazard: fog, level: yellow, onset: 2026-01-05T10:00}
        """,
    )

    assert rules_test(path)[:2] == (0, "1 test(s), 0 failed\n")


def test_every_test_of_every_file_runs(tmp_path: Path) -> None:
    first = one_test(
        tmp_path,
        """\
        - name: a
          series: {Z1: {visibility: "900x24"}}
          expect: []
        - name: b
          series: {Z1: {visibility: "900x24"}}
          expect: []
        """,
    )
    second = tmp_path / "second"
    second.mkdir()
    other = one_test(second, "- name: c\n  series: {Z1: {visibility: '900x24'}}\n  expect: []\n")

    result = runner.invoke(app, ["rules", "test", "-v", str(first), str(other)])

    assert result.exit_code == 0
    assert [line.rsplit(": ", 1)[-1] for line in result.stdout.splitlines()] == [
        "a",
        "b",
        "c",
        "3 test(s), 0 failed",
    ]


# --- mistakes in test files ----------------------------------------------------------------


def test_bad_notation_is_reported_at_its_character(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: a comma
          series:
            Z1: {visibility: "900x9 15,0 900x14"}
          expect: []
        """,
    )

    code, _, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [
        f"{path}:7:31: cannot read '15,0'; separate values with spaces, not commas"
    ]


def test_series_of_different_lengths_are_refused(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: short
          series:
            Z1: {visibility: "900x24"}
            Z2: {visibility: "900x23"}
          expect: []
        """,
    )

    code, _, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [
        f"{path}:8:24: Z2 visibility has 23 hourly values but Z1 visibility has 24; "
        "every series of a test must cover the same hours"
    ]


def test_unknown_and_missing_keys_are_reported_at_their_place(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: unknown key
          serie: {Z1: {visibility: "900x24"}}
          expect: []
        """,
    )

    code, out, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [
        f"{path}:5:5: missing required key 'series'",
        f"{path}:6:5: unknown key 'serie'; remove it or check its spelling",
    ]
    assert out == "0 test(s), 0 failed, 2 problem(s) in test or rule files\n"


def test_an_unknown_library_name_is_reported_with_the_known_ones(tmp_path: Path) -> None:
    path = one_test(tmp_path, "- name: a\n  series: {Z1: {visibility: '900x24'}}\n  expect: []\n")
    path.write_text(path.read_text("utf-8").replace("[fog.yaml]", "[fgo]"), "utf-8")

    code, _, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [
        f"{path}:1:14: no library rule file 'fgo'; did you mean 'fog'? expected one of "
        f"{', '.join(library_names())}, or a path ending in .yaml relative to this test file",
    ]


def test_an_unknown_zone_in_an_expectation_is_reported(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: typo
          series: {Z1: {visibility: "900x24"}}
          expect:
            - {zone: Z9, hazard: fog, level: yellow, onset: +9h}
        """,
    )

    code, _, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [f"{path}:8:16: unknown zone 'Z9'; expected one of Z1"]


def test_problems_in_the_rule_files_fail_the_run(tmp_path: Path) -> None:
    path = one_test(tmp_path, "- name: a\n  series: {Z1: {visibility: '900x24'}}\n  expect: []\n")
    (tmp_path / "fog.yaml").write_text(FOG_RULES.replace("visibility <", "visibilty <"), "utf-8")

    code, _, err = rules_test(path)

    assert code == 1
    assert err.startswith(f"{tmp_path / 'fog.yaml'}:")
    assert "visibilty" in err


def test_a_missing_test_file_is_reported() -> None:
    code, _, err = rules_test(Path("no-such-test.yaml"))

    assert (code, err) == (1, "no-such-test.yaml:1:1: file not found\n")


# --- the notation -----------------------------------------------------------------------------


def test_the_notation_reads_values_repeats_ramps_and_gaps() -> None:
    values = parse_values("5 5 4.5 -3x3 _ 2+0.5x4 10-2x3 _x2")

    assert values[:6] == [5, 5, 4.5, -3, -3, -3]
    assert math.isnan(values[6])
    assert values[7:14] == [2, 2.5, 3, 3.5, 10, 8, 6]
    assert all(math.isnan(v) for v in values[14:])
    assert len(values) == 16


def test_ramps_are_decimal_exact() -> None:
    assert parse_values("0+0.1x4") == [0.0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("1 2 x3", 4, "cannot read 'x3'"),
        ("1 2+0.5", 2, "ramp '2+0.5' needs a count"),
        ("1 nan", 2, "write a missing hour as _"),
        ("4 4*3", 2, "lower-case x"),
        ("1 5x0", 2, "repeats zero times"),
        ("  ", 0, "no values"),
    ],
)
def test_bad_notation_says_what_and_where(text: str, offset: int, message: str) -> None:
    with pytest.raises(NotationError) as caught:
        parse_values(text)

    assert message in caught.value.message
    assert caught.value.offset == offset


def test_an_unknown_hazard_in_an_expectation_is_reported(tmp_path: Path) -> None:
    path = one_test(
        tmp_path,
        """\
        - name: typo
          series: {Z1: {visibility: "900x24"}}
          expect:
            - {zone: Z1, hazard: fgo, level: yellow, onset: +9h}
        """,
    )

    code, _, err = rules_test(path)

    assert code == 1
    assert err.splitlines() == [f"{path}:8:28: unknown hazard 'fgo'; the rules have fog"]
