"""Evaluate a rule set on a forecast batch: which zones face which hazard, how badly.

Each rule level is evaluated once per forecast *point* over whole arrays, then
mapped to the zones its selector picks (zones share points). Per (zone, hazard)
the highest firing level over all rules of the hazard wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from rules.expr import Series, condition_series
from rules.ruleset import Rule, RuleLevel, RuleSet, ZoneSelector
from rules.series import SeriesCache
from rules.truth import BoolArray, Truth, TruthCache
from rules.types import Assessment, ForecastBatch, Level, ZoneSpec

IntArray = npt.NDArray[np.int64]


def evaluate(
    ruleset: RuleSet,
    batch: ForecastBatch,
    zones: Sequence[ZoneSpec],
    now: datetime,
    timezone: str = "Asia/Shanghai",
) -> list[Assessment]:
    """Assess every hazard at every zone from one forecast batch.

    `now` (timezone-aware) starts each level's window at the hour containing it;
    `timezone` defines the local days of `daily_min`/`daily_max`. A zone gets an
    Assessment with the winning level when some level fires, with `level=None`
    when none fires but some window held unknown (missing) hours, and none at all
    when every window is known and quiet. Sorted by (zone_id, hazard).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    series = SeriesCache(batch, timezone)
    truths = TruthCache(series)
    table = _ZoneTable(zones, batch.point_ids)
    start = _hour_index(batch, now)

    verdicts: dict[str, _Verdict] = {}
    for rule_index, rule in enumerate(ruleset.rules):
        verdict = verdicts.setdefault(rule.hazard, _Verdict.empty(len(zones)))
        selected = table.select(rule.zones)
        for rule_level in rule.levels:
            window = _window(truths.get(rule_level.when), start, rule_level.within_hours)
            verdict.add(rule_index, rule_level, window, table.point_index, selected)

    hours = [_datetime(time) for time in batch.times]
    compared: dict[tuple[int, Level], tuple[Series, ...]] = {}
    assessments: list[Assessment] = []
    for hazard, verdict in verdicts.items():
        title = ruleset.hazard_name(hazard)
        for z in np.flatnonzero((verdict.level > 0) | (verdict.unknown_rule >= 0)).tolist():
            zone = zones[z]
            undecided = int(verdict.unknown_level[z])
            undecided_above = Level(undecided) if undecided > verdict.level[z] else None
            if verdict.level[z] == 0:
                rule = ruleset.rules[verdict.unknown_rule[z]]
                assessments.append(
                    Assessment(
                        rule.id, hazard, zone.id, None, None, None, {}, title, undecided_above
                    )
                )
                continue
            rule_index = int(verdict.rule[z])
            rule = ruleset.rules[rule_index]
            level = Level(int(verdict.level[z]))
            onset = int(verdict.onset[z])
            if (rule_index, level) not in compared:
                compared[rule_index, level] = condition_series(_level_of(rule, level).when)
            assessments.append(
                Assessment(
                    rule_id=rule.id,
                    hazard=hazard,
                    zone_id=zone.id,
                    level=level,
                    onset=hours[onset],
                    until=hours[int(verdict.until[z])],
                    evidence=_evidence(
                        series, compared[rule_index, level], int(table.point_index[z]), onset
                    ),
                    title=title,
                    undecided_above=undecided_above,
                )
            )
    assessments.sort(key=lambda a: (a.zone_id, a.hazard))
    return assessments


@dataclass(frozen=True)
class _Window:
    """One rule level's outcome per point (arrays have one extra "no data" row)."""

    fires: BoolArray
    onset: IntArray
    until: IntArray
    unknown: BoolArray


def _window(truth: Truth, start: int, within: int | None) -> _Window:
    """Fire/onset/until/unknown per point for the window [start, start + within)."""
    points, hours = truth.true.shape
    stop = hours if within is None else start + within
    lo, hi = max(start, 0), min(stop, hours)
    # hours of the window outside the batch are missing data, not quiet hours
    outside = start < 0 or stop > hours or lo >= hi
    fires = np.zeros(points + 1, dtype=np.bool_)
    onset = np.zeros(points + 1, dtype=np.int64)
    until = np.zeros(points + 1, dtype=np.int64)
    unknown = np.ones(points + 1, dtype=np.bool_)
    if lo < hi:
        true = truth.true[:, lo:hi]
        fires[:points] = true.any(axis=1)
        first = true.argmax(axis=1)
        onset[:points] = lo + first
        # the first run may outlast the window: follow it to the end of the batch
        rest = ~truth.true[:, lo:]
        rest &= np.arange(hours - lo)[None, :] > first[:, None]
        ends = np.where(rest.any(axis=1), lo + rest.argmax(axis=1), hours)
        until[:points] = ends - 1
        unknown[:points] = outside | ~truth.known[:, lo:hi].all(axis=1)
    return _Window(fires, onset, until, unknown)


@dataclass
class _Verdict:
    """Best level so far per zone for one hazard (0 = none)."""

    level: npt.NDArray[np.int8]
    rule: IntArray
    onset: IntArray
    until: IntArray
    unknown_rule: IntArray  # first rule with an unknown window, -1 if none
    unknown_level: npt.NDArray[np.int8]  # highest level left undecided by missing data (0: none)

    @classmethod
    def empty(cls, zones: int) -> _Verdict:
        return cls(
            level=np.zeros(zones, dtype=np.int8),
            rule=np.full(zones, -1, dtype=np.int64),
            onset=np.zeros(zones, dtype=np.int64),
            until=np.zeros(zones, dtype=np.int64),
            unknown_rule=np.full(zones, -1, dtype=np.int64),
            unknown_level=np.zeros(zones, dtype=np.int8),
        )

    def add(
        self,
        rule_index: int,
        level: RuleLevel,
        window: _Window,
        point_index: IntArray,
        selected: BoolArray,
    ) -> None:
        fires = window.fires[point_index] & selected
        onset = window.onset[point_index]
        value = int(level.level)
        # higher level wins; on a tie the earlier onset, then the earlier rule
        better = fires & ((value > self.level) | ((value == self.level) & (onset < self.onset)))
        self.level[better] = value
        self.rule[better] = rule_index
        self.onset[better] = onset[better]
        self.until[better] = window.until[point_index][better]
        unknown = window.unknown[point_index] & selected & (self.unknown_rule < 0)
        self.unknown_rule[unknown] = rule_index
        undecided = window.unknown[point_index] & ~fires & selected & (value > self.unknown_level)
        self.unknown_level[undecided] = value


class _ZoneTable:
    """Zone attributes as arrays, so selectors are evaluated without loops over zones."""

    def __init__(self, zones: Sequence[ZoneSpec], point_ids: Sequence[str]) -> None:
        points = {point_id: index for index, point_id in enumerate(point_ids)}
        # a zone whose point is not in the batch reads the extra "no data" row
        self.point_index = np.array(
            [points.get(zone.point_id, len(point_ids)) for zone in zones], dtype=np.int64
        )
        self.ids = np.array([zone.id for zone in zones], dtype=object)
        self.kinds = np.array([zone.kind for zone in zones], dtype=object)
        self.townships = np.array([zone.township for zone in zones], dtype=object)
        self.risk = np.array([zone.risk_level for zone in zones], dtype=object)
        pairs = [(index, tag) for index, zone in enumerate(zones) for tag in zone.tags]
        self.tag_zone = np.array([index for index, _ in pairs], dtype=np.int64)
        self.tag_name = np.array([tag for _, tag in pairs], dtype=object)
        self.count = len(zones)
        self._selections: dict[ZoneSelector, BoolArray] = {}

    def select(self, selector: ZoneSelector) -> BoolArray:
        """Mask of the zones the selector picks."""
        cached = self._selections.get(selector)
        if cached is not None:
            return cached
        mask = np.ones(self.count, dtype=np.bool_)
        for values, wanted in (
            (self.ids, selector.ids),
            (self.kinds, selector.kinds),
            (self.townships, selector.townships),
            (self.risk, selector.risk),
        ):
            if wanted is not None:
                mask &= np.isin(values, list(wanted))
        if selector.tags is not None:
            tagged = np.zeros(self.count, dtype=np.bool_)
            tagged[self.tag_zone[np.isin(self.tag_name, list(selector.tags))]] = True
            mask &= tagged
        self._selections[selector] = mask
        return mask


def _hour_index(batch: ForecastBatch, now: datetime) -> int:
    """Index of the batch hour containing `now` (may lie outside the batch)."""
    if len(batch.times) == 0:
        return 0
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    first = batch.times[0].astype("datetime64[s]")
    return int((np.datetime64(hour, "s") - first) // np.timedelta64(3600, "s"))


def _level_of(rule: Rule, level: Level) -> RuleLevel:
    return next(item for item in rule.levels if item.level == level)


def _evidence(
    series: SeriesCache, compared: tuple[Series, ...], point: int, hour: int
) -> dict[str, float]:
    """Value at the onset hour of every series the winning condition compares."""
    evidence: dict[str, float] = {}
    for expression in compared:
        value = float(series.get(expression)[point, hour])
        if not np.isnan(value):
            evidence[str(expression)] = round(value, 2)
    return evidence


def _datetime(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
