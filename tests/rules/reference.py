"""A deliberately simple reference evaluator: plain Python loops, one point, hour by hour.

It implements docs/rules.md directly from the text — no array arithmetic (numpy
only reads the batch's values), no code shared with `rules.series`,
`rules.truth` or `rules.evaluate` — so that the differential test
(test_differential.py) can hold the vectorised engine to it, and the benchmark
can say how much faster the engine is. Clarity over speed: every value is
computed from its definition, with a memo per point only so the test finishes.
Which rule an indeterminate assessment names is not documented; like the engine,
it is the first rule (in load order) with an undecided window.

Truth values are three-valued: True, False, or None (unknown, from missing data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import numpy as np

from rules.expr import (
    And,
    Call,
    Compare,
    CondCall,
    Condition,
    InSet,
    Not,
    Number,
    Or,
    Param,
    Series,
    Var,
)
from rules.ruleset import Rule, RuleLevel, RuleSet, ZoneSelector
from rules.types import Assessment, ForecastBatch, Level, ZoneSpec

Truth = bool | None
NAN = float("nan")

# Lower bound (m/s, to 0.1) of Beaufort forces 1..17, GB/T 28591-2012.
BEAUFORT_FROM = tuple(
    Decimal(text)
    for text in (
        *("0.3", "1.6", "3.4", "5.5", "8.0", "10.8", "13.9", "17.2", "20.8"),
        *("24.5", "28.5", "32.7", "37.0", "41.5", "46.2", "51.0", "56.1"),
    )
)


def reference_evaluate(
    ruleset: RuleSet,
    batch: ForecastBatch,
    zones: Sequence[ZoneSpec],
    now: datetime,
    timezone: str = "Asia/Shanghai",
) -> list[Assessment]:
    """What docs/rules.md says `evaluate` returns, computed zone by zone, hour by hour."""
    tz = ZoneInfo(timezone)
    hours = [_utc(value) for value in batch.times]
    start = _hour_containing(now, hours)
    points = {point_id: index for index, point_id in enumerate(batch.point_ids)}
    cache: dict[int, PointSeries] = {}

    def point(index: int) -> PointSeries:
        if index not in cache:
            cache[index] = PointSeries(batch, index, hours, tz)
        return cache[index]

    hazards = list(dict.fromkeys(rule.hazard for rule in ruleset.rules))
    out: list[Assessment] = []
    for zone in zones:
        index = points.get(zone.point_id)
        series = None if index is None else point(index)
        for hazard in hazards:
            assessment = _assess(ruleset, hazard, zone, series, start, hours)
            if assessment is not None:
                out.append(assessment)
    return sorted(out, key=lambda a: (a.zone_id, a.hazard))


def _assess(
    ruleset: RuleSet,
    hazard: str,
    zone: ZoneSpec,
    series: PointSeries | None,
    start: int,
    hours: list[datetime],
) -> Assessment | None:
    best: tuple[int, int, int, int] | None = None  # level, onset, until, rule index
    best_level: RuleLevel | None = None
    unknown_rule: int | None = None
    undecided = 0
    for rule_index, rule in enumerate(ruleset.rules):
        if rule.hazard != hazard or not selects(rule.zones, zone):
            continue
        params = zone_params(rule, zone)
        for declared in rule.levels:
            assert declared.when is not None, "the reference reads forecast conditions only"
            rule_level = RuleLevel(
                declared.level,
                substitute(declared.when, params),
                declared.within_hours,
                declared.for_hours,
                declared.since_hours,
            )
            fires, onset, until, unknown = _window(rule_level, series, start, len(hours))
            if unknown and unknown_rule is None:
                unknown_rule = rule_index
            value = int(rule_level.level)
            if unknown and not fires:
                undecided = max(undecided, value)
            if not fires:
                continue
            if best is None or value > best[0] or (value == best[0] and onset < best[1]):
                best = (value, onset, until, rule_index)
                best_level = rule_level
    title = ruleset.hazard_name(hazard)
    if best is None:
        if unknown_rule is None:
            return None
        rule = ruleset.rules[unknown_rule]
        return Assessment(rule.id, hazard, zone.id, None, None, None, {}, title, Level(undecided))
    level, onset, until, rule_index = best
    assert best_level is not None and series is not None
    evidence: dict[str, float] = {}
    assert best_level.when is not None
    for expression in _compared(best_level.when):
        number = series.value(expression, onset)
        if not math.isnan(number):
            evidence[str(expression)] = round(number, 2)
    return Assessment(
        rule_id=ruleset.rules[rule_index].id,
        hazard=hazard,
        zone_id=zone.id,
        level=Level(level),
        onset=hours[onset],
        until=hours[until],
        evidence=evidence,
        title=title,
        undecided_above=Level(undecided) if undecided > level else None,
    )


def _window(
    rule_level: RuleLevel, series: PointSeries | None, start: int, count: int
) -> tuple[bool, int, int, bool]:
    """(fires, onset, until, unknown) of one level at one point.

    The window is the hours [start − since, start + within) (to the end of the
    forecast without `within`); hours of it outside the forecast are unknown. With
    `for` N the level fires at the first hour t of the window from which the
    condition holds N hours running, t … t + N − 1 all inside the window.
    """
    if series is None:
        return False, 0, 0, True
    when = rule_level.when
    assert when is not None
    first = start - rule_level.since_hours
    stop = count if rule_level.within_hours is None else start + rule_level.within_hours
    span = rule_level.for_hours
    window = range(first, stop)
    unknown = first < 0 or stop > count
    onset = None
    stretches = 0
    for hour in window:
        if hour + span > stop:
            break
        stretches += 1
        truths = [series.holds(when, h) for h in range(hour, hour + span)]
        if False in truths:
            continue
        if None in truths:
            unknown = True
        elif onset is None:
            onset = hour
    if stretches == 0:
        unknown = True  # not one whole stretch in the window (or no window at all)
    if onset is None:
        return False, 0, 0, unknown
    until = onset + span - 1
    while until + 1 < count and series.holds(when, until + 1) is True:
        until += 1
    return True, onset, until, unknown


def zone_params(rule: Rule, zone: ZoneSpec) -> dict[str, float]:
    """The rule's parameter values at a zone: defaults, then each override that selects it."""
    params = dict(rule.params)
    for override in rule.overrides:
        if selects(override.zones, zone):
            params.update(override.params)
    return params


def substitute(condition: Condition, params: dict[str, float]) -> Condition:
    """The condition with every `$name` replaced by its value at the zone."""

    def number(value: Number) -> float:
        return float(params[value.name]) if isinstance(value, Param) else value

    def series(node: Series) -> Series:
        if isinstance(node, CondCall):
            return CondCall(node.function, substitute(node.condition, params), node.hours)
        if isinstance(node, Call):
            return Call(node.function, series(node.arg), node.hours)
        return node

    match condition:
        case Compare(series=s, op=op, value=value):
            return Compare(series(s), op, number(value))
        case InSet(series=s, values=values):
            return InSet(series(s), tuple(number(v) for v in values))
        case And(items=items):
            return And(tuple(substitute(item, params) for item in items))
        case Or(items=items):
            return Or(tuple(substitute(item, params) for item in items))
        case Not(item=item):
            return Not(substitute(item, params))
    raise NotImplementedError(f"reference evaluator: no condition {condition!r}")


def selects(selector: ZoneSelector, zone: ZoneSpec) -> bool:
    """Every given key of the selector matches the zone (tags: one in common)."""
    if selector.ids is not None and zone.id not in selector.ids:
        return False
    if selector.kinds is not None and zone.kind not in selector.kinds:
        return False
    if selector.townships is not None and zone.township not in selector.townships:
        return False
    if selector.risk is not None and zone.risk_level not in selector.risk:
        return False
    if selector.tags is not None and not any(tag in selector.tags for tag in zone.tags):
        return False
    if selector.polygon is not None and not inside(zone.latitude, zone.longitude, selector.polygon):
        return False
    return selector.exclude is None or not selects(selector.exclude, zone)


def inside(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd rule: a ray from the point towards the east crosses the edges an odd number
    of times. Vertices are (latitude, longitude); the last joins the first."""
    crossings = 0
    for k, (lat1, lon1) in enumerate(polygon):
        lat2, lon2 = polygon[(k + 1) % len(polygon)]
        if (lat1 > lat) == (lat2 > lat):
            continue  # the edge is wholly above or below the ray
        at = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
        if lon < at:
            crossings += 1
    return crossings % 2 == 1


def _compared(condition: Condition) -> list[Series]:
    match condition:
        case Compare(series=series) | InSet(series=series):
            return [series]
        case And(items=items) | Or(items=items):
            return [s for item in items for s in _compared(item)]
        case Not(item=item):
            return _compared(item)
    raise NotImplementedError(f"reference evaluator: no condition {condition!r}")


class PointSeries:
    """The hourly values of every series expression at one forecast point."""

    def __init__(
        self, batch: ForecastBatch, index: int, hours: list[datetime], tz: ZoneInfo
    ) -> None:
        self.batch = batch
        self.index = index
        self.hours = hours
        self.tz = tz
        self.memo: dict[tuple[Series, int], float] = {}
        self.truths: dict[tuple[Condition, int], Truth] = {}
        self.days: dict[date, list[int]] = {}
        for h, moment in enumerate(hours):
            self.days.setdefault(moment.astimezone(tz).date(), []).append(h)

    # --- conditions

    def holds(self, condition: Condition, hour: int) -> Truth:
        key = (condition, hour)
        if key not in self.truths:
            self.truths[key] = self._holds(condition, hour)
        return self.truths[key]

    def _holds(self, condition: Condition, hour: int) -> Truth:
        match condition:
            case Compare(series=series, op=op, value=threshold):
                assert not isinstance(threshold, Param), "substitute parameters first"
                x = self.value(series, hour)
                if math.isnan(x):
                    return None
                # decimal data in binary floats: within 1e-9 is at the threshold
                tol = 1e-9
                return {
                    "<": x < threshold - tol,
                    "<=": x <= threshold + tol,
                    ">": x > threshold + tol,
                    ">=": x >= threshold - tol,
                    "==": abs(x - threshold) <= tol,
                    "!=": abs(x - threshold) > tol,
                }[op]
            case InSet(series=series, values=values):
                assert not any(isinstance(v, Param) for v in values)
                x = self.value(series, hour)
                return None if math.isnan(x) else x in values
            case And(items=items):
                truths = [self.holds(item, hour) for item in items]
                if False in truths:
                    return False
                return None if None in truths else True
            case Or(items=items):
                truths = [self.holds(item, hour) for item in items]
                if True in truths:
                    return True
                return None if None in truths else False
            case Not(item=item):
                truth = self.holds(item, hour)
                return None if truth is None else not truth
        raise NotImplementedError(f"reference evaluator: no condition {condition!r}")

    # --- series

    def value(self, series: Series, hour: int) -> float:
        key = (series, hour)
        if key not in self.memo:
            self.memo[key] = self._value(series, hour)
        return self.memo[key]

    def _value(self, series: Series, hour: int) -> float:
        if hour < 0 or hour >= len(self.hours):
            return NAN
        if isinstance(series, Var):
            column = self.batch.variables.get(series.name)
            return NAN if column is None else float(column[self.index, hour])
        if isinstance(series, CondCall):
            return self._condition_function(series, hour)
        assert isinstance(series, Call)
        function, arg, window = series.function, series.arg, series.hours
        if function in ("daily_min", "daily_max"):
            day = [self.value(arg, h) for h in self.local_day(hour)]
            if not day or any(math.isnan(v) for v in day):
                return NAN
            return min(day) if function == "daily_min" else max(day)
        if function == "beaufort":
            return beaufort(self.value(arg, hour))
        assert window is not None
        if function == "drop":
            return self.value(arg, hour - window) - self.value(arg, hour)
        values = [self.value(arg, h) for h in range(hour - window + 1, hour + 1)]
        if any(math.isnan(v) for v in values):
            return NAN
        if function == "freeze_thaw":
            return float(freeze_thaw_cycles(values))
        if function == "sum":
            total = 0.0
            for v in values:
                total += v
            return total
        if function == "mean":
            total = 0.0
            for v in values:
                total += v
            return total / window
        if function == "min":
            return min(values)
        if function == "max":
            return max(values)
        raise NotImplementedError(f"reference evaluator: no function {function!r}")

    def _condition_function(self, series: CondCall, hour: int) -> float:
        window = range(hour - series.hours + 1, hour + 1)
        if series.function == "count":
            truths = [self.holds(series.condition, h) if h >= 0 else None for h in window]
            return NAN if None in truths else float(truths.count(True))
        if series.function == "run":
            length = 0
            for h in reversed(window):  # back from this hour
                truth = self.holds(series.condition, h) if h >= 0 else None
                if truth is None:
                    return NAN  # the run may go on into hours we cannot see
                if truth is False:
                    break
                length += 1
            return float(length)
        raise NotImplementedError(f"reference evaluator: no function {series.function!r}")

    def local_day(self, hour: int) -> list[int]:
        """The batch hours of the local day containing `hour`; [] if not all of it is there."""
        day = self.hours[hour].astimezone(self.tz).date()
        members = self.days[day]
        return members if len(members) == _day_length(day, self.tz) else []


def freeze_thaw_cycles(values: list[float]) -> int:
    """Frozen spells (x < 0) with a thawed hour (x > 0) before and after them.

    Hours at exactly 0 are neither frozen nor thawed and are skipped.
    """
    signs = [v > 0 for v in values if v != 0]  # True: thawed, False: frozen
    cycles = 0
    for k in range(1, len(signs) - 1):
        # a frozen spell ends at k: the next sign is thawed
        if not signs[k] and signs[k + 1]:
            spell_start = k
            while spell_start > 0 and not signs[spell_start - 1]:
                spell_start -= 1
            if spell_start > 0:  # a thawed hour before the spell
                cycles += 1
    return cycles


def beaufort(speed: float) -> float:
    """Beaufort force of a wind speed in m/s, first rounded half up to 0.1 m/s."""
    if math.isnan(speed):
        return NAN
    tenths = Decimal(repr(speed)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return float(sum(1 for bound in BEAUFORT_FROM if bound <= tenths))


def _day_length(day: date, tz: ZoneInfo) -> int:
    midnight = datetime.combine(day, time(), tzinfo=tz)
    following = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return int((following.timestamp() - midnight.timestamp()) // 3600)


def _hour_containing(now: datetime, hours: list[datetime]) -> int:
    if not hours:
        return 0
    return math.floor((now - hours[0]).total_seconds() / 3600)


def _utc(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
