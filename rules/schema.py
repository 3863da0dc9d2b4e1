"""The YAML shape of a rules file (docs/rules.md), as strict pydantic models.

These models check structure only; condition strings stay text here and are
parsed by the loader, which knows their position in the file and can point at
the exact character of an error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
)

from rules.expr import whole_hours
from rules.types import Level

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


Identifier = Annotated[str, AfterValidator(_identifier)]
LevelName = Annotated[str, AfterValidator(_level_name)]
WindowHours = Annotated[int, BeforeValidator(_window_hours)]
AdviceKey = Literal["default", "blue", "yellow", "orange", "red"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AllOf(_Strict):
    """`all: [cond, ...]`: every item holds at the same hour."""

    all: list[ConditionDecl] = Field(min_length=1)


class AnyOf(_Strict):
    """`any: [cond, ...]`: at least one item holds."""

    any: list[ConditionDecl] = Field(min_length=1)


class NotOf(_Strict):
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


# Tags are bracketed so that yamlsource drops them from error locations (they are
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


class LevelDecl(_Strict):
    """One level of a rule: the condition and the window it must hold in."""

    within: WindowHours | None = None
    when: ConditionDecl


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


class SelectorDecl(_Strict):
    """Which zones a rule applies to; each given key narrows the selection."""

    # An empty list would select nothing, silently: refuse it.
    ids: list[str] | None = Field(default=None, min_length=1)
    kinds: list[ZoneKind] | None = Field(default=None, min_length=1)
    townships: list[str] | None = Field(default=None, min_length=1)
    risk: list[RiskLevel] | None = Field(default=None, min_length=1)
    tags: list[str] | None = Field(default=None, min_length=1)


class RuleDecl(_Strict):
    """One rule as written in YAML."""

    id: Identifier
    hazard: Identifier
    source: str | None = None
    title: str | None = None
    description: str | None = None
    zones: SelectorDecl
    levels: dict[LevelName, LevelDecl] = Field(min_length=1)


class HazardDecl(_Strict):
    """Display name and advice of a hazard."""

    name: str = Field(min_length=1)
    advice: dict[AdviceKey, str] = Field(default_factory=dict)


class RulesFile(_Strict):
    """A whole rules file."""

    hazards: dict[Identifier, HazardDecl] = Field(default_factory=dict)
    rules: list[RuleDecl] = Field(default_factory=list)


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()
