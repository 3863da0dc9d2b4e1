"""The plain data the rule engine consumes and produces.

`dispatcher/` builds these from feeds and configuration. The only I/O in
`rules/` is reading YAML files (rules, rule tests, the county's configuration
via `rules.config`); it never touches the network, a database or the clock, so
evaluation is a pure function of these values.
Times are timezone-aware UTC `datetime`s at the edges and `numpy.datetime64[s]`
(UTC, naive) inside arrays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Level → its Chinese colour name (`Level.zh`), by value
_LEVEL_ZH: Final = {1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}


class Level(enum.IntEnum):
    """Warning level; ordering is severity (blue < yellow < orange < red)."""

    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    # `_name_` and `_value_`, not the `name` and `value` properties: a province's
    # poll reads these a few times per alert, and an enum's property costs a call

    @property
    def key(self) -> str:
        """Lower-case English name as written in YAML and stored in the database."""
        return self._name_.lower()

    @property
    def zh(self) -> str:
        """Chinese colour name as used in official signals (蓝色/黄色/橙色/红色)."""
        return _LEVEL_ZH[self._value_]

    @classmethod
    def parse(cls, text: str) -> Level:
        """Level from its YAML/database name (`blue`, `yellow`, `orange`, `red`)."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown level {text!r}; expected one of blue, yellow, orange, red"
            ) from None


@dataclass(frozen=True)
class ForecastBatch:
    """One poll of one source: hourly values for deduplicated forecast points.

    `variables[name]` has shape (len(point_ids), len(times)); missing or invalid
    values are NaN (masked), never zero. `times` are hourly, UTC, ascending.
    A variable the feed could not deliver at all is absent from `variables`: the
    rules read it as missing everywhere, exactly like all-NaN values. `problems`
    says, in plain words, what the feed could not deliver (each masked as missing).
    """

    source: str
    issued_at: datetime
    point_ids: tuple[str, ...]
    latitudes: FloatArray
    longitudes: FloatArray
    times: npt.NDArray[np.datetime64]
    variables: Mapping[str, FloatArray]
    units: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    """Which feed served each variable, when several were fused (`dispatcher/feeds/chain.py`);
    empty when every variable came from `source`."""

    def __post_init__(self) -> None:
        shape = (len(self.point_ids), len(self.times))
        for name, values in self.variables.items():
            if values.shape != shape:
                raise ValueError(
                    f"variable {name!r} has shape {values.shape}, expected {shape} (points × hours)"
                )

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.point_ids), len(self.times))


@dataclass(frozen=True)
class ZoneSpec:
    """What the rule engine knows of a zone: attributes for selectors and its point."""

    id: str
    name: str
    kind: str
    township: str
    risk_level: str
    tags: frozenset[str]
    latitude: float
    longitude: float
    point_id: str
    village: str = ""


NO_EVIDENCE: Mapping[str, float] = MappingProxyType({})
"""The (read-only, shared) evidence of an assessment without numbers."""


class Assessment(NamedTuple):
    """The verdict of the rules on one hazard at one zone at evaluation time.

    `level` is None when no level fires but the data needed to decide was
    missing (masked). `undecided_above` is the highest level that could not be
    decided for missing data, when it is above `level`: the lifecycle must not
    step a warning down (or clear it) on such a verdict. `evidence` holds the
    numbers that decided it, keyed by the expression text (read-only:
    assessments with the same numbers may share one mapping).

    A named tuple, not a dataclass: a national evaluation makes hundreds of
    thousands of them, and tuples are built in C (no `__init__` call each) and
    drop out of the cyclic garbage collector after its first look.
    """

    rule_id: str
    hazard: str
    zone_id: str
    level: Level | None
    onset: datetime | None
    until: datetime | None
    evidence: Mapping[str, float] = NO_EVIDENCE
    title: str = ""
    undecided_above: Level | None = None
    authority: str = ""  # who issued the official warning the level relays ("" for forecasts)

    @property
    def firing(self) -> bool:
        return self.level is not None


@dataclass(frozen=True)
class OfficialWarning:
    """An official warning signal in force, already mapped onto the county's zones.

    The dispatcher builds these from received CAP messages (`dispatcher/official/`):
    one per `<info>` block of a message in force. `event` is the signal's name as
    issued (寒潮, 寒潮蓝色预警 …; rules compare it by `rules.official.event_name`);
    `onset`/`expires` are its own window (`expires` None: until cancelled);
    `authority` names who issued it (CAP senderName, else sender).
    """

    id: str
    event: str
    level: Level
    zone_ids: frozenset[str]
    onset: datetime
    expires: datetime | None
    authority: str

    def __post_init__(self) -> None:
        if self.onset.tzinfo is None or (self.expires is not None and self.expires.tzinfo is None):
            raise ValueError("official warning times must be timezone-aware")

    def in_force(self, now: datetime) -> bool:
        """Not yet expired at `now` (a warning whose onset is ahead is in force)."""
        return self.expires is None or self.expires > now
