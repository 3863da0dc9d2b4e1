"""Evaluate a rule set on a forecast batch: which zones face which hazard, how badly.

Each rule level is evaluated once per forecast *point* over whole arrays, then
mapped to the zones its selector picks (zones share points). A rule with
per-zone parameter overrides is evaluated once per distinct parameter set.
Per (zone, hazard) the highest firing level over all rules of the hazard wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from rules.expr import Series, bind, condition_series
from rules.ruleset import Rule, RuleLevel, RuleSet, ZoneSelector, in_polygon
from rules.series import SeriesCache
from rules.truth import BoolArray, Truth
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

    `now` (timezone-aware) places each level's window (the hour containing it,
    minus `since`, plus `within`); `timezone` defines the local days of
    `daily_min`/`daily_max`. A zone gets an Assessment with the winning level
    when some level fires, with `level=None` when none fires but some window
    held unknown (missing) hours, and none at all when every window is known and
    quiet. Sorted by (zone_id, hazard).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    series = SeriesCache(batch, timezone)
    truths = series.truths
    table = _ZoneTable(zones, batch.point_ids)
    start = _hour_index(batch, now)

    variants: list[_Variant] = []
    verdicts: dict[str, _Verdict] = {}
    for rule_index, rule in enumerate(ruleset.rules):
        verdict = verdicts.setdefault(rule.hazard, _Verdict.empty(len(zones)))
        for params, selected in _parameter_sets(rule, table):
            variant = _Variant(rule_index, rule, _bound_levels(rule, params))
            variants.append(variant)
            for rule_level in variant.levels:
                window = _window(truths.get(rule_level.when), start, rule_level)
                verdict.add(len(variants) - 1, rule_index, rule_level, window, table, selected)

    hours = [_datetime(time) for time in batch.times]
    assessments: list[Assessment] = []
    for hazard, verdict in verdicts.items():
        assessments.extend(
            _assessments(hazard, verdict, ruleset, variants, series, table, zones, hours)
        )
    assessments.sort(key=lambda a: (a.zone_id, a.hazard))
    return assessments


@dataclass(frozen=True)
class _Variant:
    """One rule with one set of parameter values bound into its conditions."""

    rule_index: int
    rule: Rule
    levels: tuple[RuleLevel, ...]

    def level(self, level: Level) -> RuleLevel:
        return next(item for item in self.levels if item.level == level)


def _bound_levels(rule: Rule, params: Mapping[str, float]) -> tuple[RuleLevel, ...]:
    if not params:
        return rule.levels
    return tuple(
        RuleLevel(lv.level, bind(lv.when, params), lv.within_hours, lv.for_hours, lv.since_hours)
        for lv in rule.levels
    )


def _parameter_sets(rule: Rule, table: _ZoneTable) -> list[tuple[Mapping[str, float], BoolArray]]:
    """The distinct parameter values of a rule and the zones that get each."""
    selected = table.select(rule.zones)
    if not rule.overrides:
        return [(rule.params, selected)]
    # which overrides select each zone, as a bit set; zones with equal sets share values
    codes = np.zeros(table.count, dtype=np.int64)
    for bit, override in enumerate(rule.overrides):
        codes |= table.select(override.zones).astype(np.int64) << bit
    groups: dict[tuple[tuple[str, float], ...], list[int]] = {}
    for code in np.unique(codes[selected]).tolist():
        params = dict(rule.params)
        for bit, override in enumerate(rule.overrides):
            if code >> bit & 1:
                params.update(override.params)
        groups.setdefault(tuple(sorted(params.items())), []).append(code)
    return [
        (dict(key), selected & np.isin(codes, group_codes))
        for key, group_codes in groups.items()
    ]


@dataclass(frozen=True)
class _Window:
    """One rule level's outcome per point (arrays have one extra "no data" row)."""

    fires: BoolArray
    onset: IntArray
    until: IntArray
    unknown: BoolArray


def _window(truth: Truth, start: int, level: RuleLevel) -> _Window:
    """Fire/onset/until/unknown per point for the level's window.

    The window is [start − since, start + within) (to the end of the batch when
    `within` is None). With `for` N, an hour t of the window "holds" when the
    condition holds at the N hours t − N + 1 … t, all inside the window; the
    onset is the first hour of the first such stretch.
    """
    points, hours = truth.true.shape
    first_hour = start - level.since_hours
    stop = hours if level.within_hours is None else start + level.within_hours
    lo, hi = max(first_hour, 0), min(stop, hours)
    # hours of the window outside the batch are missing data, not quiet hours
    outside = first_hour < 0 or stop > hours or lo >= hi
    fires = np.zeros(points + 1, dtype=np.bool_)
    onset = np.zeros(points + 1, dtype=np.int64)
    until = np.zeros(points + 1, dtype=np.int64)
    unknown = np.ones(points + 1, dtype=np.bool_)
    span = level.for_hours
    if hi - lo >= span:
        true = truth.true[:, lo:hi]
        known = truth.known[:, lo:hi]
        if span > 1:
            true, known = _sustained(true, known, span)
        fires[:points] = true.any(axis=1)
        first = true.argmax(axis=1)  # with `for`: the first hour of the first full stretch
        onset[:points] = lo + first
        # the run may outlast the window (or the stretch): follow it to the end of the batch
        end = lo + first + (span - 1)
        rest = ~truth.true[:, lo:]
        rest &= np.arange(lo, hours)[None, :] > end[:, None]
        ends = np.where(rest.any(axis=1), lo + rest.argmax(axis=1), hours)
        until[:points] = ends - 1
        unknown[:points] = outside | ~known.all(axis=1)
    return _Window(fires, onset, until, unknown)


def _sustained(true: BoolArray, known: BoolArray, span: int) -> tuple[BoolArray, BoolArray]:
    """Truth of "held at each of the `span` hours ending here", for each complete stretch.

    Three-valued: true when every hour is true, false when some hour is known
    false, unknown otherwise. The result has `span − 1` fewer hours (the first
    stretch ends at the window's hour `span − 1`).
    """
    trues = np.cumsum(true, axis=1, dtype=np.int64)
    falses = np.cumsum(known & ~true, axis=1, dtype=np.int64)
    pad = np.zeros((true.shape[0], 1), dtype=np.int64)
    trues = np.concatenate([pad, trues], axis=1)
    falses = np.concatenate([pad, falses], axis=1)
    held = (trues[:, span:] - trues[:, :-span]) == span
    broken = (falses[:, span:] - falses[:, :-span]) > 0
    return held, held | broken


@dataclass
class _Verdict:
    """Best level so far per zone for one hazard (0 = none)."""

    level: npt.NDArray[np.int8]
    variant: IntArray
    onset: IntArray
    until: IntArray
    unknown_rule: IntArray  # first rule with an unknown window, -1 if none
    unknown_level: npt.NDArray[np.int8]  # highest level left undecided by missing data (0: none)

    @classmethod
    def empty(cls, zones: int) -> _Verdict:
        return cls(
            level=np.zeros(zones, dtype=np.int8),
            variant=np.full(zones, -1, dtype=np.int64),
            onset=np.zeros(zones, dtype=np.int64),
            until=np.zeros(zones, dtype=np.int64),
            unknown_rule=np.full(zones, -1, dtype=np.int64),
            unknown_level=np.zeros(zones, dtype=np.int8),
        )

    def add(
        self,
        variant: int,
        rule_index: int,
        level: RuleLevel,
        window: _Window,
        table: _ZoneTable,
        selected: BoolArray,
    ) -> None:
        point_index = table.point_index
        fires = window.fires[point_index] & selected
        value = int(level.level)
        unknown = window.unknown[point_index] & selected
        if fires.any():
            onset = window.onset[point_index]
            # higher level wins; on a tie the earlier onset, then the earlier rule
            better = fires & (
                (value > self.level) | ((value == self.level) & (onset < self.onset))
            )
            self.level[better] = value
            self.variant[better] = variant
            self.onset[better] = onset[better]
            self.until[better] = window.until[point_index][better]
        if unknown.any():
            first = unknown & (self.unknown_rule < 0)
            self.unknown_rule[first] = rule_index
            undecided = unknown & ~fires & (value > self.unknown_level)
            self.unknown_level[undecided] = value


def _assessments(
    hazard: str,
    verdict: _Verdict,
    ruleset: RuleSet,
    variants: list[_Variant],
    series: SeriesCache,
    table: _ZoneTable,
    zones: Sequence[ZoneSpec],
    hours: list[datetime],
) -> list[Assessment]:
    """Assessments of one hazard; evidence is gathered per (rule variant, level) group."""
    title = ruleset.hazard_name(hazard)
    out: list[Assessment] = []
    levels = [None, *Level]
    undecided_level = np.where(
        verdict.unknown_level > verdict.level, verdict.unknown_level, 0
    ).tolist()

    unknown_only = np.flatnonzero((verdict.level == 0) & (verdict.unknown_rule >= 0))
    for z, rule_index in zip(
        unknown_only.tolist(), verdict.unknown_rule[unknown_only].tolist(), strict=True
    ):
        rule = ruleset.rules[rule_index]
        above = levels[undecided_level[z]]
        out.append(Assessment(rule.id, hazard, zones[z].id, None, None, None, {}, title, above))

    firing = np.flatnonzero(verdict.level > 0)
    if len(firing) == 0:
        return out
    keys = verdict.variant[firing] * 8 + verdict.level[firing]
    for key in np.unique(keys).tolist():
        group = firing[keys == key]
        variant = variants[key // 8]
        level = Level(key % 8)
        rule_id = variant.rule.id
        compared: tuple[Series, ...] = condition_series(variant.level(level).when)
        onsets = verdict.onset[group]
        points = table.point_index[group]
        values = [series.get(expr)[points, onsets].tolist() for expr in compared]
        names = [str(expr) for expr in compared]
        for i, (z, onset, until) in enumerate(
            zip(group.tolist(), onsets.tolist(), verdict.until[group].tolist(), strict=True)
        ):
            evidence = {
                name: round(column[i], 2)
                for name, column in zip(names, values, strict=True)
                if column[i] == column[i]  # not NaN
            }
            out.append(
                Assessment(
                    rule_id,
                    hazard,
                    zones[z].id,
                    level,
                    hours[onset],
                    hours[until],
                    evidence,
                    title,
                    levels[undecided_level[z]],
                )
            )
    return out


class _ZoneTable:
    """Zone attributes as arrays, so selectors are evaluated without loops over zones."""

    def __init__(self, zones: Sequence[ZoneSpec], point_ids: Sequence[str]) -> None:
        points = {point_id: index for index, point_id in enumerate(point_ids)}
        missing = len(point_ids)
        # a zone whose point is not in the batch reads the extra "no data" row
        self.point_index = np.array(
            [points.get(zone.point_id, missing) for zone in zones], dtype=np.int64
        )
        self.ids = np.array([zone.id for zone in zones], dtype=object)
        self.kinds = np.array([zone.kind for zone in zones], dtype=object)
        self.townships = np.array([zone.township for zone in zones], dtype=object)
        self.risk = np.array([zone.risk_level for zone in zones], dtype=object)
        self.latitudes = np.array([zone.latitude for zone in zones], dtype=np.float64)
        self.longitudes = np.array([zone.longitude for zone in zones], dtype=np.float64)
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
        if selector.polygon is not None:
            mask &= in_polygon(self.latitudes, self.longitudes, selector.polygon)
        if selector.exclude is not None:
            mask &= ~self.select(selector.exclude)
        self._selections[selector] = mask
        return mask


def _hour_index(batch: ForecastBatch, now: datetime) -> int:
    """Index of the batch hour containing `now` (may lie outside the batch)."""
    if len(batch.times) == 0:
        return 0
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    first = batch.times[0].astype("datetime64[s]")
    return int((np.datetime64(hour, "s") - first) // np.timedelta64(3600, "s"))


def _datetime(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
