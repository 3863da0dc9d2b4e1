"""Every YAML example of docs/rules.md loads, and the named ones do what the text says.

An example whose first line is `# example: NAME` has a scenario below: a small
forecast, zones and an evaluation time, and the outcome the paragraph after the
example describes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rules.evaluate import evaluate
from rules.loader import load_ruleset
from rules.ruleset import RuleSet
from rules.types import Assessment, ForecastBatch, Level, OfficialWarning, ZoneSpec
from rules.variables import VARIABLES
from tests.rules.builders import START, batch, forecast, zone

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, int, str]]:
    """(name, line, text) of every rules-file ```yaml block; unnamed ones named by their line.

    The blocks of "Testing rules" are rule-test files: test_rule_tests.py runs them.
    """
    text = DOCS.read_text(encoding="utf-8")
    tests = re.search(r"^## Testing rules\n.*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    found = []
    for match in _BLOCK.finditer(text):
        if tests and tests.start() <= match.start() < tests.end():
            continue
        line = text.count("\n", 0, match.start()) + 1
        body = match.group(1)
        named = re.match(r"# example: (\S+)\n", body)
        found.append((named.group(1) if named else f"line-{line}", line, body))
    return found


def load(tmp_path: Path, name: str) -> RuleSet:
    (body,) = [body for found, _, body in examples() if found == name]
    path = tmp_path / "example.yaml"
    path.write_text(body, encoding="utf-8")
    return load_ruleset(path)


def at(hour: int) -> datetime:
    return START + timedelta(hours=hour)


def levels(result: list[Assessment]) -> dict[tuple[str, str], tuple[Level | None, datetime | None]]:
    return {(a.zone_id, a.hazard): (a.level, a.onset) for a in result}


@pytest.mark.parametrize(("name", "line", "body"), examples(), ids=[e[0] for e in examples()])
def test_every_example_loads(tmp_path: Path, name: str, line: int, body: str) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(body, encoding="utf-8")

    ruleset = load_ruleset(path)

    assert ruleset.rules, f"docs/rules.md:{line}: the example has no rules"


# --- the scenarios of the named examples ------------------------------------------------


def icing(soil: float, wet_hours: list[int], hours: int = 24, **more: list[float]) -> ForecastBatch:
    """A frozen (or not) ground with rain at the given hours."""
    return forecast(
        {
            "soil_temperature_0cm": [soil] * hours,
            "precipitation": [1.0 if h in wet_hours else 0.0 for h in range(hours)],
            **more,
        }
    )


def overview(rules: RuleSet) -> None:
    ahead = evaluate(rules, icing(-1.0, [10]), [zone()], now=at(6))
    past = evaluate(rules, icing(-1.0, [5]), [zone()], now=at(6))

    assert levels(ahead) == {("Z1", "road_icing"): (Level.ORANGE, at(10))}
    assert levels(past) == {("Z1", "road_icing"): (Level.RED, at(5))}


def include(rules: RuleSet) -> None:
    forecast = icing(0.3, [7], visibility=[400.0] * 24)

    result = evaluate(rules, forecast, [zone()], now=at(4))

    assert levels(result) == {("Z1", "road_icing"): (Level.ORANGE, at(7))}


def for_(rules: RuleSet) -> None:
    def fog(hours: list[int]) -> ForecastBatch:
        return batch(visibility=[300.0 if h in hours else 900.0 for h in range(16)])

    assert levels(evaluate(rules, fog([2, 3, 4]), [zone()], now=at(0))) == {
        ("Z1", "fog"): (Level.YELLOW, at(2))
    }
    assert evaluate(rules, fog([2, 3, 5, 6]), [zone()], now=at(0)) == []


def since(rules: RuleSet) -> None:
    def wet(hour: int) -> list[Assessment]:
        return evaluate(rules, icing(-1.0, [hour], 12), [zone()], now=at(6))

    assert levels(wet(4)) == {("Z1", "road_icing"): (Level.RED, at(4))}
    assert levels(wet(3)) == {("Z1", "road_icing"): (Level.RED, at(3))}
    assert wet(2) == []


def count(rules: RuleSet) -> None:
    def wet(hours: list[int]) -> list[Assessment]:
        forecast = batch(
            precipitation=[0.5 if h in hours else 0.0 for h in range(48)],
            temperature_2m=[1.0] * 48,
        )
        return evaluate(rules, forecast, [zone()], now=at(24))

    assert levels(wet([10, 12, 14, 16, 18, 20])) == {("Z1", "sleet"): (Level.BLUE, at(24))}
    assert wet([10, 12, 14, 16, 18]) == []


def run(rules: RuleSet) -> None:
    forecast = batch(visibility=[100.0 if 4 <= h <= 9 else 900.0 for h in range(16)])

    (result,) = evaluate(rules, forecast, [zone()], now=at(6))

    assert (result.level, result.onset, result.until) == (Level.ORANGE, at(7), at(9))


def freeze_thaw(rules: RuleSet) -> None:
    daily = [3.0 if h % 24 < 12 else -3.0 for h in range(96)]
    once = [3.0 if h < 30 else -3.0 for h in range(96)]

    result = evaluate(rules, batch(soil_temperature_0cm=daily), [zone()], now=at(72))

    assert levels(result) == {("Z1", "freeze_thaw"): (Level.YELLOW, at(72))}
    assert result[0].evidence == {"freeze_thaw(soil_temperature_0cm, 72h)": 3.0}
    assert evaluate(rules, batch(soil_temperature_0cm=once), [zone()], now=at(72)) == []


def params(rules: RuleSet) -> None:
    # local 2 January (hours 16..39) has minimum 11 ℃, 3 January (40..63) 2 ℃: a 9 ℃ drop
    temps = [12.0] * 72
    temps[20], temps[50] = 11.0, 2.0
    zones = [zone("shed", tags=["work_shed"]), zone("school", tags=["school"])]

    result = evaluate(rules, batch(temperature_2m=temps), zones, now=at(16))

    assert levels(result) == {("shed", "cold_wave"): (Level.YELLOW, at(40))}


def polygon(rules: RuleSet) -> None:
    def placed(id: str, lat: float, lon: float, kind: str = "landslide") -> ZoneSpec:
        return replace(zone(id, kind=kind), latitude=lat, longitude=lon)

    zones = [
        placed("inside", 37.43, 110.89),
        placed("east", 37.43, 111.10),
        placed("subsidence", 37.43, 110.89, kind="subsidence"),
    ]

    result = evaluate(rules, batch(visibility=[100.0] * 16), zones, now=at(0))

    assert [a.zone_id for a in result] == ["inside"]


def official(rules: RuleSet) -> None:
    zones = [zone("collapse", kind="collapse"), zone("landslide", kind="landslide")]
    signal = OfficialWarning(
        id="cap-1",
        event="寒潮黄色预警信号",
        level=Level.YELLOW,
        zone_ids=frozenset({"collapse", "landslide"}),
        onset=at(2),
        expires=at(10),
        authority="吕梁市气象台",
    )

    def ground(frozen: list[int], *warnings: OfficialWarning) -> list[Assessment]:
        soil = [-1.0 if h in frozen else 2.0 for h in range(24)]
        return evaluate(rules, batch(soil_temperature_0cm=soil), zones, at(0), official=warnings)

    result = ground([6, 7], signal)
    assert levels(result) == {
        ("collapse", "cold_wave"): (Level.ORANGE, at(6)),
        ("landslide", "cold_wave"): (Level.YELLOW, at(2)),
    }
    assert {a.authority for a in result} == {"吕梁市气象台"}
    assert result[1].until == at(10)  # the signal's own expiry
    assert levels(ground([12], signal))[("collapse", "cold_wave")] == (Level.YELLOW, at(2))
    assert ground([6, 7]) == []


SCENARIOS: dict[str, Callable[[RuleSet], None]] = {
    "official": official,
    "overview": overview,
    "include": include,
    "for": for_,
    "since": since,
    "count": count,
    "run": run,
    "freeze-thaw": freeze_thaw,
    "params": params,
    "polygon": polygon,
}


def test_every_named_example_has_a_scenario_and_every_scenario_an_example() -> None:
    named = {name for name, _, _ in examples() if not name.startswith("line-")}

    assert named == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_example_does_what_the_docs_say(tmp_path: Path, name: str) -> None:
    SCENARIOS[name](load(tmp_path, name))


def test_the_series_table_lists_exactly_the_forecast_variables_of_the_registry() -> None:
    # given the rows of "Series expressions" that name raw variables (not functions)
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Series expressions")
    section = text[start : text.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {
        name
        for row in rows
        for name in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])
        if "(" not in row.split("|")[1]
    }

    # then they are the variables rules and feeds share
    assert documented == set(VARIABLES)
