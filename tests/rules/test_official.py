"""Levels on official warnings (`official:`): loading, windows, and merging with the forecast."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rules.config import ConfigError
from rules.evaluate import evaluate
from rules.loader import load_ruleset
from rules.official import event_name
from rules.ruleset import RuleSet
from rules.types import Level, OfficialWarning
from tests.rules.builders import START, batch, zone


def at(hour: int) -> datetime:
    return START + timedelta(hours=hour)


def rules(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_ruleset(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        rules(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def signal(level: Level, onset: int, expires: int | None, event: str = "寒潮") -> OfficialWarning:
    return OfficialWarning(
        id=f"w{onset}",
        event=event,
        level=level,
        zone_ids=frozenset({"Z1"}),
        onset=at(onset),
        expires=None if expires is None else at(expires),
        authority="吕梁市气象台",
    )


def test_signal_names_are_compared_without_colour_or_warning_words() -> None:
    assert event_name("寒潮蓝色预警信号") == "寒潮"
    assert event_name("道路结冰 橙色预警") == "道路结冰"
    assert event_name("大雾") == "大雾"


def test_a_level_needs_a_condition_or_an_official_warning(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        rules:
          - id: empty
            hazard: fog
            zones: {}
            levels:
              yellow: {within: 12h}
        """,
    )

    assert len(found) == 1
    assert (
        "a level needs when: (a forecast condition), official: (an official warning)" in (found[0])
    )


def test_a_level_comparison_that_is_not_one_is_refused_at_its_line(tmp_path: Path) -> None:
    (found,) = problems(
        tmp_path,
        """
        rules:
          - id: bad
            hazard: cold_wave
            zones: {}
            levels:
              yellow: {official: {event: 寒潮, level: "at least yellow"}}
        """,
    )

    assert found.startswith(f"{tmp_path / 'rules.yaml'}:7:")
    assert "'at least yellow' is not a level comparison; write e.g. \">= yellow\"" in found


RELAY = """
hazards: {cold_wave: {name: 寒潮}}
rules:
  - id: relay
    hazard: cold_wave
    zones: {}
    levels:
      yellow: {within: 24h, official: {event: [寒潮, 强寒潮], level: ">= yellow"}}
  - id: forecast
    hazard: cold_wave
    zones: {}
    levels:
      red: {within: 24h, when: temperature_2m < -20}
      blue: {within: 24h, when: temperature_2m < 0}
"""


def test_the_higher_level_wins_between_a_relay_and_a_forecast_rule(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, RELAY)
    cold = batch(temperature_2m=[-5.0] * 8 + [-25.0] + [-5.0] * 23)
    mild = batch(temperature_2m=[-5.0] * 32)
    warning = signal(Level.ORANGE, 3, 20)

    (red,) = evaluate(ruleset, cold, [zone()], at(0), official=[warning])
    (yellow,) = evaluate(ruleset, mild, [zone()], at(0), official=[warning])

    assert (red.rule_id, red.level, red.onset, red.authority) == ("forecast", Level.RED, at(8), "")
    assert (yellow.rule_id, yellow.level, yellow.onset, yellow.until) == (
        "relay",
        Level.YELLOW,
        at(3),
        at(20),
    )
    assert yellow.authority == "吕梁市气象台"


def test_a_relay_needs_its_level_its_event_and_the_window(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, RELAY)
    warm = batch(temperature_2m=[5.0] * 32)

    def fired(warning: OfficialWarning) -> bool:
        return bool(evaluate(ruleset, warm, [zone()], at(0), official=[warning]))

    assert fired(signal(Level.YELLOW, 0, None, event="强寒潮"))
    assert not fired(signal(Level.BLUE, 0, 10))  # below yellow
    assert not fired(signal(Level.RED, 0, 10, event="大风"))  # another event
    assert not fired(signal(Level.RED, 24, 30))  # begins after the 24 h window
    assert not fired(signal(Level.RED, -10, 0))  # expired now


def test_with_a_forecast_condition_it_must_hold_during_the_warning(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        rules:
          - id: both
            hazard: road_icing
            zones: {}
            levels:
              orange:
                official: {event: 道路结冰}
                when: soil_temperature_0cm <= 0
        """,
    )

    def onset(frozen: int, warning: OfficialWarning) -> datetime | None:
        soil = [2.0] * 24
        soil[frozen] = -1.0
        found = evaluate(
            ruleset, batch(soil_temperature_0cm=soil), [zone()], at(0), official=[warning]
        )
        return found[0].onset if found else None

    icing = signal(Level.YELLOW, 4, 8, event="道路结冰")
    assert onset(4, icing) == at(4)
    assert onset(7, icing) == at(7)  # the hour before its expiry
    assert onset(8, icing) is None  # at its expiry
    assert onset(3, icing) is None  # before its onset
    assert onset(20, signal(Level.YELLOW, 4, None, event="道路结冰")) == at(20)


def test_a_warning_for_other_zones_does_not_fire(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, RELAY)
    elsewhere = OfficialWarning("w", "寒潮", Level.RED, frozenset({"Z9"}), at(0), None, "x")

    assert (
        evaluate(ruleset, batch(temperature_2m=[5.0] * 32), [zone()], at(0), official=[elsewhere])
        == []
    )
