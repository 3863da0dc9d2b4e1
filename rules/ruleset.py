"""The loaded rule set: rules with parsed conditions, ready to evaluate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rules.expr import Condition
from rules.types import Level, ZoneSpec


@dataclass(frozen=True)
class ZoneSelector:
    """Which zones a rule applies to; None means "any", each given key narrows."""

    ids: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    townships: frozenset[str] | None = None
    risk: frozenset[str] | None = None
    tags: frozenset[str] | None = None

    def matches(self, zone: ZoneSpec) -> bool:
        """Whether the zone is selected (tags: at least one in common)."""
        return (
            (self.ids is None or zone.id in self.ids)
            and (self.kinds is None or zone.kind in self.kinds)
            and (self.townships is None or zone.township in self.townships)
            and (self.risk is None or zone.risk_level in self.risk)
            and (self.tags is None or not self.tags.isdisjoint(zone.tags))
        )


@dataclass(frozen=True)
class RuleLevel:
    """One level of a rule: fires when `when` holds at some hour of the window.

    `within_hours` None means the window runs to the end of the forecast.
    """

    level: Level
    when: Condition
    within_hours: int | None = None


@dataclass(frozen=True)
class Rule:
    """One rule; `levels` are ordered from lowest to highest."""

    id: str
    hazard: str
    zones: ZoneSelector
    levels: tuple[RuleLevel, ...]
    source: str = ""
    title: str = ""
    description: str = ""
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class Hazard:
    """Display name and advice of a hazard; advice keys are level names or `default`."""

    key: str
    name: str
    advice: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSet:
    """Every loaded rule and hazard.

    `variables` are the raw forecast variables the rules read (the feed requests
    only these); `lookback_hours` is the history before `now` the rules need (the
    feed requests at least this many past hours); `content_hash` is the sha256 of
    the files' bytes in load order.
    """

    rules: tuple[Rule, ...]
    hazards: Mapping[str, Hazard]
    variables: frozenset[str]
    content_hash: str
    lookback_hours: int = 0

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
