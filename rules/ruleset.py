"""The loaded rule set: rules with parsed conditions, ready to evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from rules.expr import Condition
from rules.official import OfficialCondition
from rules.types import FloatArray, Level, ZoneSpec

BoolArray = npt.NDArray[np.bool_]
Polygon = tuple[tuple[float, float], ...]  # (latitude, longitude) vertices


@dataclass(frozen=True)
class ZoneSelector:
    """Which zones a rule applies to; None means "any", each given key narrows.

    `polygon` keeps the zones whose location lies inside it (even-odd rule);
    `exclude` then leaves out the zones another selector picks.
    """

    ids: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    townships: frozenset[str] | None = None
    risk: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    polygon: Polygon | None = None
    exclude: ZoneSelector | None = None

    def matches(self, zone: ZoneSpec) -> bool:
        """Whether the zone is selected (tags: at least one in common)."""
        return (
            (self.ids is None or zone.id in self.ids)
            and (self.kinds is None or zone.kind in self.kinds)
            and (self.townships is None or zone.township in self.townships)
            and (self.risk is None or zone.risk_level in self.risk)
            and (self.tags is None or not self.tags.isdisjoint(zone.tags))
            and (
                self.polygon is None
                or bool(
                    in_polygon(np.array([zone.latitude]), np.array([zone.longitude]), self.polygon)[
                        0
                    ]
                )
            )
            and (self.exclude is None or not self.exclude.matches(zone))
        )


def in_polygon(
    latitudes: FloatArray, longitudes: FloatArray, polygon: Sequence[tuple[float, float]]
) -> BoolArray:
    """Which (latitude, longitude) points lie inside the polygon (even-odd rule).

    A horizontal ray from each point towards increasing longitude crosses the
    polygon's edges; an odd number of crossings is inside. Vertices are
    (latitude, longitude); the polygon closes itself (last vertex to first).
    Vectorised over points, one pass per edge. A point exactly on an edge may
    fall on either side: draw the polygon with a margin around the zones it
    should hold.
    """
    inside = np.zeros(latitudes.shape, dtype=np.bool_)
    count = len(polygon)
    for k in range(count):
        lat1, lon1 = polygon[k]
        lat2, lon2 = polygon[(k + 1) % count]
        if lat1 == lat2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        straddles = (lat1 > latitudes) != (lat2 > latitudes)
        crossing = lon1 + (latitudes - lat1) * (lon2 - lon1) / (lat2 - lat1)
        inside ^= straddles & (longitudes < crossing)
    return inside


@dataclass(frozen=True)
class RuleLevel:
    """One level of a rule: fires when `when` holds at some hour of the window.

    The window is the hours [h − since_hours, h + within_hours) where h is the
    hour containing the evaluation time; `within_hours` None means to the end of
    the forecast. With `for_hours` N > 1 the condition must hold N consecutive
    hours inside the window. `when` may contain parameters (`$name`): bind them
    with the rule's parameters for the zone (`Rule.variants`).

    With `official` the level relays official warnings (`rules.official`): it
    fires at the zones a matching warning covers, inside the warning's own
    window; with `when` too, the forecast condition must also hold there.
    `when` is None for a level on official warnings alone.
    """

    level: Level
    when: Condition | None
    within_hours: int | None = None
    for_hours: int = 1
    since_hours: int = 0
    official: OfficialCondition | None = None


@dataclass(frozen=True)
class ParamOverride:
    """Other parameter values for the zones a selector picks."""

    zones: ZoneSelector
    params: Mapping[str, float]


TEMPLATE_KINDS: tuple[str, ...] = ("sms", "voice", "broadcast", "im")


@dataclass(frozen=True)
class Rule:
    """One rule; `levels` are ordered from lowest to highest.

    `params` are the default values of the rule's parameters; `overrides` give
    other values to the zones they select (a later override wins over an earlier
    one for a zone both select). `hold` and `cooldown` are applied by the
    dispatcher; `templates` map a channel kind (sms, voice, broadcast, im) to a
    Jinja2 text.
    """

    id: str
    hazard: str
    zones: ZoneSelector
    levels: tuple[RuleLevel, ...]
    source: str = ""
    title: str = ""
    description: str = ""
    file: str = ""
    line: int = 0
    params: Mapping[str, float] = field(default_factory=dict)
    overrides: tuple[ParamOverride, ...] = ()
    hold: timedelta | None = None
    cooldown: timedelta | None = None
    templates: Mapping[str, str] = field(default_factory=dict)

    def params_for(self, zone: ZoneSpec) -> dict[str, float]:
        """The parameter values the rule uses at a zone (defaults, then matching overrides)."""
        values = dict(self.params)
        for override in self.overrides:
            if override.zones.matches(zone):
                values.update(override.params)
        return values


@dataclass(frozen=True)
class Hazard:
    """Display name, advice and message templates of a hazard.

    Advice keys are level names or `default`; template keys are channel kinds.
    """

    key: str
    name: str
    advice: Mapping[str, str] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSet:
    """Every loaded rule and hazard.

    `variables` are the raw forecast variables the rules read (the feed requests
    only these); `lookback_hours` is the history before `now` the rules need (the
    feed requests at least this many past hours); `content_hash` is the sha256 of
    the files' bytes in load order (included library files too); `files` are
    the files read, in load order (watch these for changes).
    """

    rules: tuple[Rule, ...]
    hazards: Mapping[str, Hazard]
    variables: frozenset[str]
    content_hash: str
    lookback_hours: int = 0
    files: tuple[str, ...] = ()

    def hazard_name(self, key: str) -> str:
        """Display name of a hazard, or its key when it is not declared."""
        hazard = self.hazards.get(key)
        return hazard.name if hazard else key

    def advice(self, hazard: str, level: Level) -> str:
        """Advice for a hazard at a level: the level's own, else `default`, else ""."""
        declared = self.hazards.get(hazard)
        if declared is None:
            return ""
        return declared.advice.get(level.key, declared.advice.get("default", ""))

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with this id, or None."""
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def params(self, rule_id: str, zone: ZoneSpec) -> dict[str, float]:
        """The parameter values of a rule at a zone ({} for an unknown rule)."""
        rule = self.rule(rule_id)
        return rule.params_for(zone) if rule else {}

    def hold(self, hazard: str) -> timedelta | None:
        """How long a hazard's condition must stay clear before a downgrade or resolve.

        The longest `hold` of the hazard's rules; None when none sets one.
        """
        return _longest(rule.hold for rule in self.rules if rule.hazard == hazard)

    def cooldown(self, hazard: str) -> timedelta | None:
        """How long a resolved warning of the hazard is not re-issued at the same level.

        The longest `cooldown` of the hazard's rules; None when none sets one.
        """
        return _longest(rule.cooldown for rule in self.rules if rule.hazard == hazard)

    def template(self, hazard: str, rule_id: str | None, kind: str) -> str | None:
        """The message template for a channel kind: the rule's own, else the hazard's.

        None when neither declares one (the dispatcher then uses its built-in text).
        """
        rule = self.rule(rule_id) if rule_id else None
        if rule is not None and rule.hazard == hazard and kind in rule.templates:
            return rule.templates[kind]
        declared = self.hazards.get(hazard)
        return declared.templates.get(kind) if declared else None


def _longest(values: Iterable[timedelta | None]) -> timedelta | None:
    found = [value for value in values if value is not None]
    return max(found) if found else None
