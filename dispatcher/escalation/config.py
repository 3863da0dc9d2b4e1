"""escalation.yaml: its schema, its checks, and the policies it gives.

The file is read with the project's YAML loader and strict base
(`rules.config`), and its durations (`after: 90s`, `every: 1h30m`) in the
one duration grammar, `rules.config.Duration`. Every problem names
file:line:column; `yujing rules check` lists them with the roster's.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError

from channels.broadcast import load_broadcast_directory, village_address
from dispatcher.county import ROLE_LABELS, County, unknown_group_message
from dispatcher.escalation.policy import (
    DEFAULT_CHANNEL,
    DEFAULT_POLICIES,
    SYSTEM_POLICY,
    TOWNSHIP,
    Policies,
    Policy,
    Step,
)
from dispatcher.roster import load_roster
from dispatcher.routing import BROADCAST_CHANNEL, TARGETS, reaches_people
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

__all__ = [
    "ESCALATION_FILE",
    "load_policies",
    "roster_and_escalation_problems",
    "warn_unconfigured",
]

log = logging.getLogger("yujing.escalation")

ESCALATION_FILE: Final = "escalation.yaml"
BROADCAST_FILE: Final = "broadcast.yaml"

_LEVELS: Final = tuple(level.key for level in Level)


class _StepConfig(Strict):
    after: Duration
    notify: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=lambda: [DEFAULT_CHANNEL], min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)
    every: Duration | None = None
    broadcast: list[Literal["village"]] = Field(default_factory=list)
    im: list[str] = Field(default_factory=list)


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
    problems.extend(_check_audiences(doc, config, county, config_dir / BROADCAST_FILE))
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
                broadcast=tuple(dict.fromkeys(s.broadcast)),
                im=tuple(dict.fromkeys(s.im)),
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
            if not (step.notify or step.people or step.broadcast or step.im):
                yield doc.problem(
                    at,
                    "a step must notify someone: give notify: [targets], people: [ids], "
                    "broadcast: [village] and/or im: [township, group]",
                )
            if zone_less and (step.broadcast or step.im.count(TOWNSHIP)):
                key = "broadcast" if step.broadcast else "im"
                yield doc.problem(
                    (*at, key),
                    "system alerts have no zone, so village and township mean nobody; "
                    "name a group of county.yaml groups: instead",
                )
            for position, channel in enumerate(step.channels):
                # people are reached by phone; a group or the loudspeakers are audiences
                if channel != DEFAULT_CHANNEL and not reaches_people(channel):
                    yield doc.problem(
                        (*at, "channels", position),
                        f"channel {channel!r} does not reach a person's phone, so the step's "
                        "people would get nothing on it; name the group under im: (a group of "
                        "county.yaml groups:) or the loudspeakers as broadcast: [village], and "
                        "keep channels: for SMS or voice",
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


def _check_audiences(
    doc: Document, config: _EscalationConfig, county: County, broadcast_file: Path
) -> Iterator[Problem]:
    """Every `im:` name is a group; the audiences a step can reach exist.

    A step's `im: [township]` can reach any zone's township, and `broadcast:
    [village]` any zone's village: each must have its group (county.yaml
    `townships:`) or its loudspeakers (broadcast.yaml), or a warning would
    silently reach nobody there. Each missing one is reported once, at the
    first step that needs it.
    """
    groups = sorted(county.groups)
    first_township: tuple[str | int, ...] | None = None
    first_village: tuple[str | int, ...] | None = None
    for loc, policy in _policies_in(config):
        for index, step in enumerate(policy.steps):
            at = (*loc, "steps", index)
            for position, name in enumerate(step.im):
                where = (*at, "im", position)
                if name == TOWNSHIP:
                    first_township = first_township or where
                elif name not in county.groups:
                    yield doc.problem(
                        where,
                        unknown_group_message(name, groups, township=True),
                    )
            if step.broadcast:
                first_village = first_village or (*at, "broadcast", 0)
    if first_township is not None:
        for township in sorted({zone.township for zone in county.zones}):
            group = county.township_group(township)
            if group is None:
                yield doc.problem(
                    first_township,
                    f"township {township!r} has no group, so im: [township] reaches nobody "
                    f"there; add '{township}: <group>' under townships: in county.yaml",
                )
    if first_village is not None:
        yield from _villages_without_terminals(doc, first_village, county, broadcast_file)


def _villages_without_terminals(
    doc: Document, at: tuple[str | int, ...], county: County, broadcast_file: Path
) -> Iterator[Problem]:
    if not broadcast_file.exists():
        yield doc.problem(
            at,
            f"broadcast: [village] needs {broadcast_file.name} beside escalation.yaml: the "
            "loudspeakers (groups/terminals) of each village (docs/channels.md)",
        )
        return
    try:
        directory = load_broadcast_directory(load_yaml(broadcast_file).data)
    except (ConfigError, ValidationError):
        # `yujing rules check` and the broadcast channel report the file's own problems
        return
    zones_of: dict[str, list[str]] = {}
    for zone in county.zones:
        zones_of.setdefault(village_address(zone.township, zone.village), []).append(zone.id)
    for address in directory.missing(zones_of):
        zones = ", ".join(zones_of[address])
        if address.endswith("/"):
            what = f"zone(s) {zones} have no village: in zones.yaml"
        else:
            what = f"village {address} (zone(s) {zones}) has no terminals in {broadcast_file.name}"
        yield doc.problem(
            at,
            f"{what}, so broadcast: [village] reaches no loudspeaker there; add the village "
            f"with its groups:/terminals: to {broadcast_file.name}",
        )


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


def warn_unconfigured(
    policies: Policies, county: County, configured: frozenset[str], default_channel: str
) -> None:
    """Log the channels the policies name that this instance has not configured.

    People's messages on such a channel go by the default channel instead;
    audiences on it (a village, a group) are not reached at all.
    """
    steps = [step for policy in policies.all() for step in policy.steps]
    named = {name for step in steps for name in step.channels if name != DEFAULT_CHANNEL}
    for name in sorted(named - configured - {default_channel}):
        log.warning(
            "escalation policies name channel %s, which is not configured here: "
            "its messages go by %s instead",
            name,
            default_channel,
        )
    heard = {BROADCAST_CHANNEL for step in steps if step.broadcast}
    for step in steps:
        for name in step.im:
            keys = set(county.townships.values()) if name == TOWNSHIP else {name}
            heard |= {county.groups[k].channel for k in keys if k in county.groups}
    for name in sorted(heard - configured):
        log.warning(
            "escalation policies post to audiences on channel %s, which is not "
            "configured here: those audiences will not be reached",
            name,
        )
