"""Plain-data builders for rule-engine tests: batches and zones in one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from rules.expr import parse_condition
from rules.ruleset import Hazard, ParamOverride, Rule, RuleLevel, RuleSet, ZoneSelector
from rules.types import ForecastBatch, Level, ZoneSpec

NaN = float("nan")
START = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai


def batch(
    start: datetime = START,
    points: Sequence[str] = ("p0",),
    **variables: Sequence[float] | Sequence[Sequence[float]],
) -> ForecastBatch:
    """A batch of hourly values from `start`; a flat list is one point's series."""
    return forecast(variables, start, points)


def forecast(
    variables: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    start: datetime = START,
    points: Sequence[str] = ("p0",),
) -> ForecastBatch:
    """Like `batch`, with the variables as a mapping."""
    arrays = {}
    for name, values in variables.items():
        array = np.array(values, dtype=np.float64)
        arrays[name] = array.reshape(1, -1) if array.ndim == 1 else array
    hours = next(iter(arrays.values())).shape[1] if arrays else 0
    first = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "s")
    return ForecastBatch(
        source="test",
        issued_at=start,
        point_ids=tuple(points),
        latitudes=np.zeros(len(points)),
        longitudes=np.zeros(len(points)),
        times=first + np.arange(hours) * np.timedelta64(3600, "s"),
        variables=arrays,
    )


def zone(
    id: str = "Z1",
    point_id: str = "p0",
    kind: str = "landslide",
    township: str = "穆村镇",
    risk: str = "high",
    tags: Sequence[str] = (),
) -> ZoneSpec:
    """A zone with defaults for everything a test does not care about."""
    return ZoneSpec(
        id=id,
        name=f"zone {id}",
        kind=kind,
        township=township,
        risk_level=risk,
        tags=frozenset(tags),
        latitude=0.0,
        longitude=0.0,
        point_id=point_id,
    )


def rule(
    id: str,
    hazard: str,
    levels: dict[str, str | tuple[str, int] | RuleLevel],
    zones: ZoneSelector | None = None,
    params: dict[str, float] | None = None,
    overrides: tuple[ParamOverride, ...] = (),
) -> Rule:
    """A rule from level name → condition text, (condition text, within hours) or RuleLevel."""
    parsed = []
    for name, spec in levels.items():
        if isinstance(spec, RuleLevel):
            parsed.append(spec)
            continue
        text, within = (spec, None) if isinstance(spec, str) else spec
        parsed.append(RuleLevel(Level.parse(name), parse_condition(text, params or {}), within))
    return Rule(
        id,
        hazard,
        zones or ZoneSelector(),
        tuple(sorted(parsed, key=lambda r: r.level)),
        params=params or {},
        overrides=overrides,
    )


def level(
    name: str,
    when: str,
    within: int | None = None,
    for_hours: int = 1,
    since: int = 0,
    params: dict[str, float] | None = None,
) -> RuleLevel:
    """One rule level with every window setting."""
    return RuleLevel(
        Level.parse(name), parse_condition(when, params or {}), within, for_hours, since
    )


def ruleset(*rules: Rule, hazards: dict[str, str] | None = None) -> RuleSet:
    """A rule set; `hazards` maps hazard key → display name."""
    return RuleSet(
        rules=rules,
        hazards={key: Hazard(key, name) for key, name in (hazards or {}).items()},
        variables=frozenset(),
        content_hash="",
    )
