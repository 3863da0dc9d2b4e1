"""The YAML shape of a rules file (docs/rules.md), as strict pydantic models.

These models check structure only; condition strings stay text here and are
parsed by the loader, which knows their position in the file and can point at
the exact character of an error.
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from rules.config import Strict, parse_duration
from rules.expr import whole_hours
from rules.official import parse_level_comparison
from rules.types import Level

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EXPOSURE_TAGS: tuple[str, ...] = (
    "school",
    "hospital",
    "scenic_area",
    "trunk_road",
    "work_shed",
    "slope_cut_housing",
    "hillside_resettlement",
    "high_steep_slope",
    "urban_village",
    "residential",
    "mining_site",
    "industrial_site",
)
"""What a zone may expose (zones.yaml `tags`, rule selectors `tags`): one list for both."""


def _identifier(text: str) -> str:
    if not _IDENTIFIER.match(text):
        raise ValueError(
            f"{text!r} is not a valid key; use letters, digits, '-', '_' or '.', "
            "e.g. cma-road-icing"
        )
    return text


def _level_name(text: str) -> str:
    Level.parse(text)  # raises the 'unknown level ...; expected one of ...' message
    return text


def _window_hours(value: Any) -> Any:
    # YAML `within: 12` (no unit) is refused: 12 what? Say so rather than guess.
    if not isinstance(value, str):
        raise ValueError("write a duration with a unit, e.g. 12h or 2d")
    return whole_hours(value)


def _since_hours(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("write a duration with a unit, e.g. 3h")
    if parse_duration(value) == timedelta(0):
        return 0
    return whole_hours(value)


def _any_duration(value: Any) -> Any:
    # hold/cooldown steer the dispatcher, not hourly data: any duration will do
    if not isinstance(value, str):
        raise ValueError("write a duration with a unit, e.g. 3h or 90m")
    return parse_duration(value)


def _tag(text: str) -> str:
    if text not in EXPOSURE_TAGS:
        close = difflib.get_close_matches(text, EXPOSURE_TAGS, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown tag {text!r}; {guess}expected one of {', '.join(EXPOSURE_TAGS)}")
    return text


def _param_name(text: str) -> str:
    if not _PARAM_NAME.match(text):
        raise ValueError(
            f"{text!r} is not a valid parameter name; use letters, digits and '_', "
            "starting with a letter, e.g. drop"
        )
    return text


def _vertex(value: Any) -> Any:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError("a vertex is [latitude, longitude] in degrees, e.g. [37.43, 110.89]")
    lat, lon = float(value[0]), float(value[1])
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise ValueError(
            f"[{value[0]}, {value[1]}] is not [latitude, longitude]: latitude is -90..90 and "
            "longitude -180..180 (in China, about [37.4, 110.9])"
        )
    return (lat, lon)


Identifier = Annotated[str, AfterValidator(_identifier)]
LevelName = Annotated[str, AfterValidator(_level_name)]
WindowHours = Annotated[int, BeforeValidator(_window_hours)]
SinceHours = Annotated[int, BeforeValidator(_since_hours)]
AnyDuration = Annotated[timedelta, BeforeValidator(_any_duration)]
ExposureTag = Annotated[str, AfterValidator(_tag)]
ParamName = Annotated[str, AfterValidator(_param_name)]
Vertex = Annotated[tuple[float, float], BeforeValidator(_vertex)]
AdviceKey = Literal["default", "blue", "yellow", "orange", "red"]


class Uncoerced(Strict):
    """The base of rule and rule-test file schemas: `Strict`, and no type coercion.

    An administrator's `within: "12"` or `enabled: "no"` is an error, not a guess:
    a quoted number or word that silently became another type could change
    which zones are warned.
    """

    model_config = ConfigDict(strict=True)


class AllOf(Uncoerced):
    """`all: [cond, ...]`: every item holds at the same hour."""

    all: list[ConditionDecl] = Field(min_length=1)


class AnyOf(Uncoerced):
    """`any: [cond, ...]`: at least one item holds."""

    any: list[ConditionDecl] = Field(min_length=1)


class NotOf(Uncoerced):
    """`not: cond`."""

    model_config = ConfigDict(populate_by_name=True)
    not_: ConditionDecl = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "[text]"
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in ("all", "any", "not"):
            return f"[{key}]"
    return None


# Tags are bracketed so that rules.config drops them from error locations (they are
# not data keys); the error then points at the YAML node itself.
ConditionDecl = Annotated[
    Annotated[str, Tag("[text]")]
    | Annotated[AllOf, Tag("[all]")]
    | Annotated[AnyOf, Tag("[any]")]
    | Annotated[NotOf, Tag("[not]")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message=(
            "a condition is a comparison string such as 'visibility < 500' or a mapping "
            "with exactly one key: all, any or not"
        ),
    ),
]


def _official_level(text: str) -> str:
    parse_level_comparison(text)  # raises the message the administrator sees
    return text


OfficialLevel = Annotated[str, AfterValidator(_official_level)]


class OfficialDecl(Uncoerced):
    """`official: {event: 寒潮, level: ">= yellow"}`: relay official warnings."""

    event: str | list[str] = Field(min_length=1)
    level: OfficialLevel | None = None


class LevelDecl(Uncoerced):
    """One level of a rule: the condition and the window it must hold in."""

    model_config = ConfigDict(populate_by_name=True)
    since: SinceHours = 0
    within: WindowHours | None = None
    for_: WindowHours = Field(default=1, alias="for")
    when: ConditionDecl | None = None
    official: OfficialDecl | None = None

    @model_validator(mode="after")
    def _something_to_hold(self) -> LevelDecl:
        if self.when is None and self.official is None:
            raise ValueError(
                "a level needs when: (a forecast condition), official: (an official "
                "warning) or both"
            )
        return self


ZoneKind = Literal[
    "landslide",
    "collapse",
    "debris_flow",
    "subsidence",
    "ground_fissure",
    "unstable_slope",
]
RiskLevel = Literal["low", "medium", "high", "very_high"]
ZONE_KINDS: tuple[str, ...] = get_args(ZoneKind)
RISK_LEVELS: tuple[str, ...] = get_args(RiskLevel)


class SelectorDecl(Uncoerced):
    """Which zones a rule applies to; each given key narrows the selection."""

    # An empty list would select nothing, silently: refuse it.
    ids: list[str] | None = Field(default=None, min_length=1)
    kinds: list[ZoneKind] | None = Field(default=None, min_length=1)
    townships: list[str] | None = Field(default=None, min_length=1)
    risk: list[RiskLevel] | None = Field(default=None, min_length=1)
    tags: list[ExposureTag] | None = Field(default=None, min_length=1)
    polygon: list[Vertex] | None = Field(default=None, min_length=3)
    exclude: SelectorDecl | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


Params = dict[ParamName, float]


class ParamOverrideDecl(Uncoerced):
    """`overrides:` item: other parameter values for the zones a selector picks."""

    zones: SelectorDecl
    params: Params = Field(min_length=1)


class TemplatesDecl(Uncoerced):
    """Jinja2 message templates per channel kind (rules/templates.py)."""

    sms: str | None = None
    voice: str | None = None
    broadcast: str | None = None
    im: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.model_dump().items() if text is not None]


class RuleDecl(Uncoerced):
    """One rule as written in YAML."""

    id: Identifier
    hazard: Identifier
    source: str | None = None
    title: str | None = None
    description: str | None = None
    zones: SelectorDecl
    params: Params = Field(default_factory=dict)
    overrides: list[ParamOverrideDecl] = Field(default_factory=list, max_length=60)
    hold: AnyDuration | None = None
    cooldown: AnyDuration | None = None
    templates: TemplatesDecl | None = None
    levels: dict[LevelName, LevelDecl] = Field(min_length=1)


class RuleOverrideDecl(Uncoerced):
    """`override:` item: change an (included) rule by id; each given key replaces its own."""

    id: Identifier
    enabled: bool = True
    source: str | None = None
    title: str | None = None
    description: str | None = None
    zones: SelectorDecl | None = None
    params: Params | None = None
    overrides: list[ParamOverrideDecl] | None = Field(default=None, max_length=60)
    hold: AnyDuration | None = None
    cooldown: AnyDuration | None = None
    templates: TemplatesDecl | None = None
    levels: dict[LevelName, LevelDecl] | None = Field(default=None, min_length=1)


class HazardDecl(Uncoerced):
    """Display name, advice and message templates of a hazard."""

    name: str = Field(min_length=1)
    advice: dict[AdviceKey, str] = Field(default_factory=dict)
    templates: TemplatesDecl | None = None


class RulesFile(Uncoerced):
    """A whole rules file."""

    include: list[str] = Field(default_factory=list)
    hazards: dict[Identifier, HazardDecl] = Field(default_factory=dict)
    rules: list[RuleDecl] = Field(default_factory=list)
    override: list[RuleOverrideDecl] = Field(default_factory=list)


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()
SelectorDecl.model_rebuild()
