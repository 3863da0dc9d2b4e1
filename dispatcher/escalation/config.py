"""escalation.yaml: its schema, its checks, and the policies it gives.

The file is read with the project's YAML loader and strict base
(`rules.config`), and its durations (`after: 90s`, `every: 1h30m`) in the
one duration grammar, `rules.config.Duration`. Every problem names
file:line:column; `yujing rules check` lists them with the roster's.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import Field, ValidationError

from dispatcher.county import ROLE_LABELS, County
from dispatcher.escalation.policy import (
    DEFAULT_CHANNEL,
    DEFAULT_POLICIES,
    SYSTEM_POLICY,
    Policies,
    Policy,
    Step,
)
from dispatcher.roster import load_roster
from dispatcher.routing import TARGETS
from rules.config import (
    ConfigError,
    Document,
    Duration,
    Problem,
    Strict,
    load_yaml,
    problems_from_validation,
)
from rules.loader import RuleSet
from rules.types import Level

__all__ = ["ESCALATION_FILE", "load_policies", "roster_and_escalation_problems"]

ESCALATION_FILE: Final = "escalation.yaml"

_LEVELS: Final = tuple(level.key for level in Level)


class _StepConfig(Strict):
    after: Duration
    notify: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=lambda: [DEFAULT_CHANNEL], min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)
    every: Duration | None = None


class _PolicyConfig(Strict):
    steps: list[_StepConfig] = Field(min_length=1)


class _LevelsConfig(Strict):
    blue: _PolicyConfig | None = None
    yellow: _PolicyConfig | None = None
    orange: _PolicyConfig | None = None
    red: _PolicyConfig | None = None


class _OverrideConfig(Strict):
    hazard: str | None = None
    rule: str | None = None
    levels: _LevelsConfig


class _EscalationConfig(Strict):
    levels: _LevelsConfig = Field(default_factory=_LevelsConfig)
    system: _PolicyConfig | None = None
    overrides: list[_OverrideConfig] = Field(default_factory=list)


class _EscalationFile(Strict):
    escalation: dict[str, Any]


def load_policies(config_dir: Path, county: County, ruleset: RuleSet | None = None) -> Policies:
    """Read `escalation.yaml` of `config_dir`; without the file, the built-in defaults.

    Levels the file leaves out keep their defaults. With `ruleset`, an override
    naming a hazard or rule it does not have is refused (a typo would otherwise
    silently never apply). Raises ConfigError listing every problem
    (file:line:column).
    """
    path = config_dir / ESCALATION_FILE
    if not path.exists():
        return Policies()
    doc = load_yaml(path)
    problems: list[Problem] = []
    config = _validate(doc, problems)
    if config is None:
        raise ConfigError(problems)
    hazards = rules = None
    if ruleset is not None:
        hazards = set(ruleset.hazards) | {r.hazard for r in ruleset.rules}
        rules = {r.id for r in ruleset.rules}
    problems.extend(_check(doc, config, county, hazards, rules))
    if problems:
        raise ConfigError(problems)

    levels = dict(DEFAULT_POLICIES)
    for level in _LEVELS:
        given = getattr(config.levels, level)
        if given is not None:
            levels[level] = _policy(f"escalation.yaml:{level}", given)
    if config.system is not None:
        levels[SYSTEM_POLICY] = _policy("escalation.yaml:system", config.system)
    by_hazard: dict[tuple[str, str], Policy] = {}
    by_rule: dict[tuple[str, str], Policy] = {}
    for override in config.overrides:
        for level in _LEVELS:
            given = getattr(override.levels, level)
            if given is None:
                continue
            if override.rule is not None:
                by_rule[(override.rule, level)] = _policy(f"rule:{override.rule}:{level}", given)
            elif override.hazard is not None:
                name = f"hazard:{override.hazard}:{level}"
                by_hazard[(override.hazard, level)] = _policy(name, given)
    return Policies(levels, by_hazard, by_rule)


def _policy(name: str, config: _PolicyConfig) -> Policy:
    return Policy(
        name,
        tuple(
            Step(
                after=s.after,
                targets=tuple(s.notify),
                people=tuple(s.people),
                channels=tuple(dict.fromkeys(s.channels)),
                repeat=s.repeat,
                every=s.every,
            )
            for s in config.steps
        ),
    )


def _validate(doc: Document, problems: list[Problem]) -> _EscalationConfig | None:
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        problems.append(
            doc.problem(
                (), f"the file is {what}; expected a mapping with the top-level key escalation:"
            )
        )
        return None
    try:
        _EscalationFile.model_validate(doc.data)
        return _EscalationConfig.model_validate(doc.data["escalation"])
    except ValidationError as exc:
        prefix = ("escalation",) if "escalation" in doc.data else ()
        problems.extend(problems_from_validation(doc, exc, prefix))
        return None


def _policies_in(
    config: _EscalationConfig,
) -> Iterator[tuple[tuple[str | int, ...], _PolicyConfig]]:
    for level in _LEVELS:
        given = getattr(config.levels, level)
        if given is not None:
            yield ("escalation", "levels", level), given
    if config.system is not None:
        yield ("escalation", "system"), config.system
    for index, override in enumerate(config.overrides):
        for level in _LEVELS:
            given = getattr(override.levels, level)
            if given is not None:
                yield ("escalation", "overrides", index, "levels", level), given


def _check(
    doc: Document,
    config: _EscalationConfig,
    county: County,
    hazards: Collection[str] | None,
    rules: Collection[str] | None,
) -> Iterator[Problem]:
    for loc, policy in _policies_in(config):
        zone_less = loc[1] == "system"
        for index, step in enumerate(policy.steps):
            at = (*loc, "steps", index)
            if not step.notify and not step.people:
                yield doc.problem(
                    at, "a step must notify someone: give notify: [targets] and/or people: [ids]"
                )
            if step.repeat and step.every is None:
                yield doc.problem((*at, "repeat"), "repeat needs every: (e.g. every: 30m)")
            if step.every is not None and step.every <= timedelta(0):
                yield doc.problem((*at, "every"), "every must be longer than 0")
            for position, target in enumerate(step.notify):
                if target not in TARGETS:
                    hint = difflib.get_close_matches(target, TARGETS, n=1)
                    guess = f"did you mean {hint[0]!r}? " if hint else ""
                    yield doc.problem(
                        (*at, "notify", position),
                        f"unknown target {target!r}; {guess}expected one of: "
                        f"{', '.join(TARGETS)} (named people go under people:)",
                    )
                elif zone_less and target in ROLE_LABELS:
                    yield doc.problem(
                        (*at, "notify", position),
                        f"system alerts have no zone, so {target!r} means nobody; use "
                        "duty_officer, leader_on_duty or people:",
                    )
            for position, person_id in enumerate(step.people):
                if person_id not in county.people:
                    hint = difflib.get_close_matches(person_id, sorted(county.people), n=1)
                    guess = f"; did you mean {hint[0]!r}?" if hint else ""
                    yield doc.problem(
                        (*at, "people", position),
                        f"unknown person {person_id!r}, not in people.yaml{guess}",
                    )
        if policy.steps and policy.steps[0].after != timedelta(0):
            yield doc.problem(
                (*loc, "steps", 0, "after"),
                "the first step must be 'after: 0' (it goes out with the warning itself)",
            )
    for index, override in enumerate(config.overrides):
        at = ("escalation", "overrides", index)
        if (override.hazard is None) == (override.rule is None):
            yield doc.problem(at, "an override names exactly one of hazard: or rule:")
            continue
        key, name, known = (
            ("rule", override.rule, rules)
            if override.rule is not None
            else ("hazard", override.hazard, hazards)
        )
        if known is not None and name not in known:
            hint = difflib.get_close_matches(str(name), sorted(known), n=1)
            guess = f"; did you mean {hint[0]!r}?" if hint else ""
            yield doc.problem((*at, key), f"unknown {key} {name!r}, not in rules/{guess}")


def roster_and_escalation_problems(
    config_dir: Path, county: County, ruleset: RuleSet | None = None
) -> list[Problem]:
    """Every problem of roster.yaml and escalation.yaml (for `yujing rules check`)."""
    problems: list[Problem] = []
    try:
        load_roster(config_dir, county)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        load_policies(config_dir, county, ruleset)
    except ConfigError as exc:
        problems.extend(exc.problems)
    return problems
