"""A deliberately simple reference evaluator: plain Python loops, one point, hour by hour.

It implements docs/rules.md directly from the text, without numpy and without
sharing code with `rules.series`, `rules.truth` or `rules.evaluate`, so that the
differential test (test_differential.py) can hold the vectorised engine to it.
Clarity over speed: every value is recomputed from its definition, with a memo
per point only so the test finishes.

Truth values are three-valued: True, False, or None (unknown, from missing data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import numpy as np

from rules.expr import And, Call, Compare, Condition, InSet, Not, Or, Series, Var
from rules.ruleset import RuleLevel, RuleSet, ZoneSelector
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
        for rule_level in rule.levels:
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
    """(fires, onset, until, unknown) of one level at one point."""
    if series is None:
        return False, 0, 0, True
    stop = count if rule_level.within_hours is None else start + rule_level.within_hours
    unknown = False
    onset = None
    for hour in range(start, stop):
        if hour < 0 or hour >= count:
            unknown = True  # outside the forecast: missing, not quiet
            continue
        truth = series.holds(rule_level.when, hour)
        if truth is None:
            unknown = True
        elif truth and onset is None:
            onset = hour
    if start >= stop:
        unknown = True
    if onset is None:
        return False, 0, 0, unknown
    until = onset
    while until + 1 < count and series.holds(rule_level.when, until + 1) is True:
        until += 1
    return True, onset, until, unknown


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
    return selector.tags is None or any(tag in selector.tags for tag in zone.tags)


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
        self.days: dict[date, list[int]] = {}
        for h, moment in enumerate(hours):
            self.days.setdefault(moment.astimezone(tz).date(), []).append(h)

    # --- conditions

    def holds(self, condition: Condition, hour: int) -> Truth:
        match condition:
            case Compare(series=series, op=op, value=threshold):
                x = self.value(series, hour)
                if math.isnan(x):
                    return None
                return {
                    "<": x < threshold,
                    "<=": x <= threshold,
                    ">": x > threshold,
                    ">=": x >= threshold,
                    "==": x == threshold,
                    "!=": x != threshold,
                }[op]
            case InSet(series=series, values=values):
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

    def local_day(self, hour: int) -> list[int]:
        """The batch hours of the local day containing `hour`; [] if not all of it is there."""
        day = self.hours[hour].astimezone(self.tz).date()
        members = self.days[day]
        return members if len(members) == _day_length(day, self.tz) else []


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
