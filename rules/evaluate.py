"""Evaluate a rule set on a forecast batch: which zones face which hazard, how badly.

Each rule level is evaluated once per forecast *point* over whole arrays, then
mapped to the zones its selector picks (zones share points). A rule with
per-zone parameter overrides is evaluated once per distinct parameter set.
Per (zone, hazard) the highest firing level over all rules of the hazard wins.

Levels on official warnings (`official:`, `rules.official`) take the warnings in
force as plain data: a level on a warning alone fires at the zones it covers,
with its onset and expiry (`_official_only`); a level on a warning and the
forecast is evaluated like any other, once per warning, on the zones the
warning covers and with its window narrowed to the warning's hours.

Points are processed in blocks of `BLOCK_POINTS`: the arrays of one block stay
in the CPU cache while every rule reads them, and memory stays bounded however
many points the batch has. Derived series are computed once per block and
shared by every rule (`SeriesCache`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import cast

import numpy as np
import numpy.typing as npt

from rules.collector import collector_paused
from rules.expr import Condition, Series, bind, condition_series, condition_variables
from rules.official import matching, window_overlaps
from rules.ruleset import Rule, RuleLevel, RuleSet, ZoneSelector
from rules.series import LocalDay, SeriesCache, column_spans
from rules.truth import BoolArray, TruthCache
from rules.types import (
    NO_EVIDENCE,
    Assessment,
    FloatArray,
    ForecastBatch,
    Level,
    OfficialWarning,
    ZoneSpec,
)
from rules.zonetable import ZoneTable

IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]
BLOCK_POINTS = 2048
"""Forecast points evaluated together (tuned for cache size; results do not depend on it)."""


def evaluate(
    ruleset: RuleSet,
    batch: ForecastBatch,
    zones: Sequence[ZoneSpec] | ZoneTable,
    now: datetime,
    timezone: str = "Asia/Shanghai",
    official: Sequence[OfficialWarning] = (),
) -> list[Assessment]:
    """Assess every hazard at every zone from one forecast batch.

    `now` (timezone-aware) places each level's window (the hour containing it,
    minus `since`, plus `within`); `timezone` defines the local days of
    `daily_min`/`daily_max`. A zone gets an Assessment with the winning level
    when some level fires, with `level=None` when none fires but some window
    held unknown (missing) hours, and none at all when every window is known and
    quiet. Sorted by (zone_id, hazard).

    `zones` may be a `ZoneTable` built once for many evaluations (the daemon's
    way: it saves turning every zone into arrays again each poll).

    `official` are the official warnings in force, mapped onto zones, for the
    levels with `official:`; an expired one (expiry at or before `now`) is ignored.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Hundreds of thousands of new objects, none in a reference cycle: the cyclic
    # collector would only rescan them again and again (it doubles the time).
    with collector_paused():
        return _evaluate(ruleset, batch, zones, now, timezone, official)


def _evaluate(
    ruleset: RuleSet,
    batch: ForecastBatch,
    zones: Sequence[ZoneSpec] | ZoneTable,
    now: datetime,
    timezone: str,
    official: Sequence[OfficialWarning],
) -> list[Assessment]:
    zone_table = zones if isinstance(zones, ZoneTable) else ZoneTable(zones)
    table = _Zones(zone_table, zone_table.point_index(batch.point_ids))
    start = _hour_index(batch, now)
    warnings = _Warnings(official, now, batch, start)
    slots = _slots(ruleset, table, len(batch.point_ids), warnings)
    _evaluate_points(batch, timezone, start, slots, table)

    verdicts: dict[str, _Verdict] = {}
    for index, slot in enumerate(slots):
        verdict = verdicts.setdefault(slot.variant.rule.hazard, _Verdict.empty(table.count))
        verdict.add(index, slot, table)

    hours = np.array([_datetime(time) for time in batch.times], dtype=object)
    assessments: list[Assessment] = []
    order: list[IntArray] = []  # the zone index of each assessment, for sorting
    for hazard, verdict in verdicts.items():
        made, zones_of = _assessments(hazard, verdict, ruleset, slots, table, hours)
        assessments.extend(made)
        order.append(zones_of)
    ordered = _sorted(assessments, order, list(verdicts), table)
    return _merge_official(ordered, _official_only(ruleset, table, official, now), ruleset)


# --- what to evaluate -----------------------------------------------------------------


@dataclass(frozen=True)
class _Variant:
    """One rule with one set of parameter values, and the zones that get them."""

    rule_index: int
    rule: Rule
    selected: BoolArray
    authority: str = ""  # who issued the official warning this variant relays


@dataclass
class _Slot:
    """One level of one rule variant, with its outcome per forecast point.

    The per-point arrays have one extra "no data" row (index = number of points)
    that zones whose point is missing from the batch read: never fires, unknown.
    Evidence is kept for the points where the level fires: `evidence_rows` (point
    indices, ascending) and `evidence` (one column per compared series, at the onset).
    """

    variant: _Variant
    level: RuleLevel
    when: Condition  # the level's forecast condition (slots are made for levels with one)
    compared: tuple[Series, ...]
    needed: BoolArray  # points some selected zone reads
    fires: BoolArray
    onset: IntArray
    until: IntArray
    unknown: BoolArray
    evidence_rows: list[IntArray] = field(default_factory=list)
    evidence: list[FloatArray] = field(default_factory=list)

    @classmethod
    def empty(cls, variant: _Variant, level: RuleLevel, needed: BoolArray) -> _Slot:
        points = len(needed)
        unknown = np.zeros(points + 1, dtype=np.bool_)
        unknown[points] = True
        assert level.when is not None, "a level on an official warning alone has no slot"
        return cls(
            variant=variant,
            level=level,
            when=level.when,
            compared=condition_series(level.when),
            needed=needed,
            fires=np.zeros(points + 1, dtype=np.bool_),
            onset=np.zeros(points + 1, dtype=np.int64),
            until=np.zeros(points + 1, dtype=np.int64),
            unknown=unknown,
        )

    def evidence_at(self, points: IntArray) -> FloatArray:
        """Evidence rows (one per given firing point), columns as `compared`."""
        rows = np.concatenate(self.evidence_rows) if self.evidence_rows else np.zeros(0, int)
        values = (
            np.concatenate(self.evidence) if self.evidence else np.zeros((0, len(self.compared)))
        )
        self.evidence_rows, self.evidence = [rows], [values]
        return values[np.searchsorted(rows, points)]


def _slots(ruleset: RuleSet, table: _Zones, points: int, warnings: _Warnings) -> list[_Slot]:
    slots = []

    def needed(selected: BoolArray) -> BoolArray:
        wanted = np.zeros(points + 1, dtype=np.bool_)
        wanted[table.point_index[selected]] = True
        return wanted[:points]

    for rule_index, rule in enumerate(ruleset.rules):
        for params, selected in _parameter_sets(rule, table):
            variant = _Variant(rule_index, rule, selected)
            wanted = needed(selected)
            for level in _bound_levels(rule, params):
                if level.when is None:
                    continue  # an official warning alone: `_official_only`
                if level.official is None:
                    slots.append(_Slot.empty(variant, level, wanted))
                    continue
                # once per matching warning: on the zones it covers, in its hours
                for warning in matching(level.official, warnings.official, warnings.now):
                    narrowed = warnings.narrowed(level, warning)
                    covered = selected & _covering(table, warning.zone_ids)
                    if narrowed is None or not covered.any():
                        continue
                    relay = _Variant(rule_index, rule, covered, warning.authority)
                    slots.append(_Slot.empty(relay, narrowed, needed(covered)))
    return slots


def _bound_levels(rule: Rule, params: Mapping[str, float]) -> tuple[RuleLevel, ...]:
    if not params:
        return rule.levels
    return tuple(
        RuleLevel(
            lv.level,
            None if lv.when is None else bind(lv.when, params),
            lv.within_hours,
            lv.for_hours,
            lv.since_hours,
            lv.official,
        )
        for lv in rule.levels
    )


@dataclass(frozen=True)
class _Warnings:
    """The official warnings in force, placed on the hours of one batch."""

    official: Sequence[OfficialWarning]
    now: datetime
    batch: ForecastBatch
    start: int

    def narrowed(self, level: RuleLevel, warning: OfficialWarning) -> RuleLevel | None:
        """The level with its window cut to the warning's hours; None when they do not meet.

        The warning covers the hours from the one containing its onset to the one
        containing the instant before its expiry (to the end without one).
        """
        hours = len(self.batch.times)
        first = _hour_index(self.batch, warning.onset)
        if warning.expires is None:
            stop = max(hours, self.start + 1)
        else:
            stop = _hour_index(self.batch, warning.expires - timedelta(microseconds=1)) + 1
        lo, hi = _window_span(self.start, level, hours)
        lo, hi = max(lo, first), min(hi, stop)
        if lo >= hi:
            return None
        return RuleLevel(
            level.level, level.when, hi - self.start, level.for_hours, self.start - lo, None
        )


def _covering(table: _Zones, zone_ids: frozenset[str]) -> BoolArray:
    """Which zones of the table are among `zone_ids`."""
    return np.fromiter((z in zone_ids for z in table.table.id_list), np.bool_, table.count)


def _official_only(
    ruleset: RuleSet, table: _Zones, official: Sequence[OfficialWarning], now: datetime
) -> list[tuple[int, Assessment]]:
    """Assessments of the levels on an official warning alone, with their rule's index.

    Such a level fires at each selected zone a matching warning in force covers,
    when the warning's hours meet the level's window; onset and until are the
    warning's own (until None: it has no expiry).
    """
    out: list[tuple[int, Assessment]] = []
    if not official:
        return out
    for rule_index, rule in enumerate(ruleset.rules):
        levels = [lv for lv in rule.levels if lv.when is None and lv.official is not None]
        if not levels:
            continue
        selected = table.select(rule.zones)
        title = ruleset.hazard_name(rule.hazard)
        for level in levels:
            assert level.official is not None
            for warning in matching(level.official, official, now):
                if not window_overlaps(warning, now, level.since_hours, level.within_hours):
                    continue
                covered = selected & _covering(table, warning.zone_ids)
                for zone_id in table.ids[covered].tolist():
                    assessment = Assessment(
                        rule.id,
                        rule.hazard,
                        zone_id,
                        level.level,
                        warning.onset,
                        warning.expires,
                        NO_EVIDENCE,
                        title,
                        None,
                        warning.authority,
                    )
                    out.append((rule_index, assessment))
    return out


def _beats(a: Assessment, a_rule: int, b: Assessment, b_rule: int) -> bool:
    """Whether firing assessment `a` wins over firing `b` of the same hazard and zone:
    the higher level, then the earlier onset, then the rule loaded first."""
    assert a.level is not None and b.level is not None
    if a.level != b.level:
        return a.level > b.level
    if a.onset != b.onset and a.onset is not None and b.onset is not None:
        return a.onset < b.onset
    return a_rule < b_rule


def _merge_official(
    assessments: list[Assessment], relayed: list[tuple[int, Assessment]], ruleset: RuleSet
) -> list[Assessment]:
    """The forecast's assessments with those of official warnings alone merged in.

    Per (zone, hazard) the winner is chosen as between any two rules (`_beats`);
    a level left undecided by missing forecast data above the winner stays so.
    """
    if not relayed:
        return assessments
    best: dict[tuple[str, str], tuple[int, Assessment]] = {}
    for index, a in relayed:
        held = best.get((a.zone_id, a.hazard))
        if held is None or _beats(a, index, held[1], held[0]):
            best[(a.zone_id, a.hazard)] = (index, a)
    rank = {rule.id: index for index, rule in enumerate(ruleset.rules)}
    merged: list[Assessment] = []
    for a in assessments:
        held = best.pop((a.zone_id, a.hazard), None)
        if held is None:
            merged.append(a)
            continue
        index, relay = held
        assert relay.level is not None
        if a.level is not None and not _beats(relay, index, a, rank[a.rule_id]):
            merged.append(a)
            continue
        above = a.undecided_above
        merged.append(
            relay._replace(undecided_above=above if above and above > relay.level else None)
        )
    merged.extend(a for _, a in best.values())
    merged.sort(key=lambda a: (a.zone_id, a.hazard))
    return merged


def _parameter_sets(rule: Rule, table: _Zones) -> list[tuple[Mapping[str, float], BoolArray]]:
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
        (dict(key), selected & np.isin(codes, group_codes)) for key, group_codes in groups.items()
    ]


# --- per point ------------------------------------------------------------------------


def _evaluate_points(
    batch: ForecastBatch, timezone: str, start: int, slots: list[_Slot], table: _Zones
) -> None:
    """Fill every slot's per-point outcome, one block of points at a time."""
    count = len(batch.point_ids)
    used = np.zeros(count + 1, dtype=np.bool_)
    used[table.point_index] = True
    days: tuple[LocalDay, ...] | None = None
    hours = len(batch.times)
    spans = column_spans(((slot.when, _needed(start, slot, hours)) for slot in slots), hours)
    for lo in range(0, count, BLOCK_POINTS):
        hi = min(lo + BLOCK_POINTS, count)
        if not used[lo:hi].any():
            continue
        block = _rows(batch, slice(lo, hi))
        series = SeriesCache(block, timezone, days, spans)
        days = series.local_days
        truths = series.truths
        going: list[_Going] = []
        for slot in slots:
            if not slot.needed[lo:hi].any():
                continue
            when = slot.when
            window = _window(truths, when, start, slot.level, hours)
            slot.fires[lo:hi] = window.fires
            slot.onset[lo:hi] = window.onset
            slot.until[lo:hi] = window.until
            slot.unknown[lo:hi] = window.unknown
            if len(window.going):
                going.append(_Going(slot, window.going, truths.span(when)[1]))
            rows = np.flatnonzero(window.fires)
            if len(rows):
                onsets = window.onset[rows]
                slot.evidence_rows.append(rows + lo)
                slot.evidence.append(
                    np.stack(
                        [
                            series.get(expr)[rows, onsets - series.start(expr)]
                            for expr in slot.compared
                        ],
                        axis=1,
                    )
                    if slot.compared
                    else np.zeros((len(rows), 0))
                )
        series.clear()  # free the block's arrays now (the caches refer to each other)
        if going:
            _follow_runs(block, timezone, days, going, lo)


def _needed(start: int, slot: _Slot, hours: int) -> tuple[int, int]:
    """The hours over which a slot's condition is computed in the first pass.

    Its window, and past it to the end of the batch for `until`, which follows
    a firing run as long as it lasts. A condition that reads little of the past
    stops at its window: the few runs still going there are followed afterwards
    on their rows alone (`_follow_runs`). One that reads much of the past (a 72 h
    freeze-thaw count, a drop of daily minima) goes on to the end: following
    its runs would compute that past again, for rows that tend to stay true.
    """
    first, stop = _window_span(start, slot.level, hours)
    if stop < hours and _lookback(slot.when) <= hours - stop:
        return first, stop
    return first, hours


@functools.cache
def _lookback(condition: Condition) -> int:
    """How many hours before an hour the condition reads to decide it."""
    far = 1 << 20  # an hour far from both ends of an imaginary batch
    spans = column_spans([(condition, (far, far + 1))], 2 * far)
    return far - min(begin for begin, _ in spans.values())


@dataclass(frozen=True)
class _Going:
    """Rows of a block whose run of a slot's condition lasts to the end of its array."""

    slot: _Slot
    rows: IntArray
    since: int  # the first batch hour past the array: the run goes on from here


def _follow_runs(
    block: ForecastBatch,
    timezone: str,
    days: tuple[LocalDay, ...] | None,
    going: list[_Going],
    lo: int,
) -> None:
    """Set `until` of runs that outlast the hours their conditions were computed over.

    The conditions are computed again on those rows only, from where their
    arrays stopped to the end of the batch (with the past they read, as in the
    first pass): every series is a function of its own row, so a row's values
    do not depend on which rows are computed with it.
    """
    hours = block.shape[1]
    rows = np.unique(np.concatenate([g.rows for g in going]))
    spans = column_spans(((g.slot.when, (g.since, hours)) for g in going), hours)
    read = set().union(*(_variables(g.slot.when) for g in going))
    series = SeriesCache(_rows(block, rows, read), timezone, days, spans)
    truths = series.truths
    for g in going:
        when = g.slot.when
        base = truths.span(when)[0]
        true = truths.get(when).true[:, g.since - base :]
        # each run goes on from the array's first column: find where it stops
        stops = _run_ends(true, np.searchsorted(rows, g.rows), np.full(len(g.rows), -1))
        g.slot.until[lo + g.rows] = g.since + stops - 1
    series.clear()


def _rows(
    batch: ForecastBatch, rows: slice | IntArray, variables: Collection[str] | None = None
) -> ForecastBatch:
    """The batch restricted to some of its points (views for a slice, copies for indices),
    and to some of its variables (all when None)."""
    ids = batch.point_ids
    return ForecastBatch(
        source=batch.source,
        issued_at=batch.issued_at,
        point_ids=ids[rows] if isinstance(rows, slice) else tuple(ids[k] for k in rows.tolist()),
        latitudes=batch.latitudes[rows],
        longitudes=batch.longitudes[rows],
        times=batch.times,
        variables={
            name: values[rows]
            for name, values in batch.variables.items()
            if variables is None or name in variables
        },
        units=batch.units,
    )


_variables = functools.cache(condition_variables)


def _window_span(start: int, level: RuleLevel, hours: int) -> tuple[int, int]:
    """The hours a level's window covers: [start − since, start + within), or to the end."""
    stop = hours if level.within_hours is None else start + level.within_hours
    return start - level.since_hours, stop


@dataclass(frozen=True)
class _Window:
    """One rule level's outcome per point.

    `going` lists the firing rows whose run lasts to the end of the truth's
    hours, before the end of the batch: their `until` is only a lower bound.
    """

    fires: BoolArray
    onset: IntArray
    until: IntArray
    unknown: BoolArray
    going: IntArray


def _window(
    truths: TruthCache, when: Condition, start: int, level: RuleLevel, hours: int
) -> _Window:
    """Fire/onset/until/unknown per point for the level's window in a batch of `hours`.

    The window is [start − since, start + within) (to the end of the batch when
    `within` is None). With `for` N, an hour t of the window "holds" when the
    condition holds at the N hours t − N + 1 … t, all inside the window; the
    onset is the first hour of the first such stretch, and `until` the last
    hour of the run of the condition from there on (which may outlast the
    window). The truth covers the hours [base, top), which hold the window's
    hours inside the batch. Onset and until are batch hours.
    """
    truth = truths.get(when)
    base, top = truths.span(when)
    points = truth.true.shape[0]
    first_hour, stop = _window_span(start, level, hours)
    lo, hi = max(first_hour, 0), min(stop, hours)
    # hours of the window outside the batch are missing data, not quiet hours
    outside = first_hour < 0 or stop > hours or lo >= hi
    fires = np.zeros(points, dtype=np.bool_)
    onset = np.zeros(points, dtype=np.int64)
    until = np.zeros(points, dtype=np.int64)
    unknown = np.ones(points, dtype=np.bool_)
    going = np.zeros(0, dtype=np.int64)
    span = level.for_hours
    if hi - lo >= span:
        assert base <= lo and top >= hi, "the truth must cover the window"
        true = truth.true[:, lo - base : hi - base]
        known = truth.known[:, lo - base : hi - base]
        if span > 1:
            true, known = _sustained(true, known, span)
        # one pass finds both whether and where it first holds (argmax of all-false is 0)
        firsts = true.argmax(axis=1)
        fired = true[np.arange(points), firsts]
        fires[:] = fired
        if truth.complete:
            unknown[:] = outside
        else:
            unknown[:] = outside | ~known.all(axis=1)
        rows = np.flatnonzero(fired)
        if len(rows):
            # with `for`: the first hour of the first full stretch
            first = firsts[rows]
            onset[rows] = lo + first
            # the run may outlast the window (or the stretch): follow it
            end = lo + first + (span - 1) - base
            stops = _run_ends(truth.true, rows, end)
            until[rows] = base + stops - 1
            if top < hours:
                going = rows[stops == top - base]
    return _Window(fires, onset, until, unknown, going)


def _run_ends(true: BoolArray, rows: IntArray, end: IntArray) -> IntArray:
    """For each row, the first column after `end` at which `true` is false (its width if none)."""
    width = true.shape[1]
    # true, or not yet past the row's end: the first column that is neither ends the run
    ongoing = true[rows] | (np.arange(width)[None, :] <= end[:, None])
    first = ongoing.argmin(axis=1)  # 0 when all are true
    ends: IntArray = np.where(ongoing[np.arange(len(rows)), first], width, first)
    return ends


def _sustained(true: BoolArray, known: BoolArray, span: int) -> tuple[BoolArray, BoolArray]:
    """Truth of "held at each of the `span` hours starting here", per complete stretch.

    Three-valued: true when every hour is true, false when some hour is known
    false, unknown otherwise. The result has `span − 1` fewer hours: column j is
    the stretch of hours j … j + span − 1.
    """
    trues = np.cumsum(true, axis=1, dtype=np.int32)
    falses = np.cumsum(known & ~true, axis=1, dtype=np.int32)
    pad = np.zeros((true.shape[0], 1), dtype=np.int32)
    trues = np.concatenate([pad, trues], axis=1)
    falses = np.concatenate([pad, falses], axis=1)
    held = (trues[:, span:] - trues[:, :-span]) == span
    broken = (falses[:, span:] - falses[:, :-span]) > 0
    return held, held | broken


# --- per zone -------------------------------------------------------------------------


@dataclass
class _Verdict:
    """Best level so far per zone for one hazard (0 = none)."""

    level: npt.NDArray[np.int8]
    slot: IntArray
    onset: IntArray
    until: IntArray
    unknown_rule: IntArray  # first rule with an unknown window, -1 if none
    unknown_level: npt.NDArray[np.int8]  # highest level left undecided by missing data (0: none)

    @classmethod
    def empty(cls, zones: int) -> _Verdict:
        return cls(
            level=np.zeros(zones, dtype=np.int8),
            slot=np.full(zones, -1, dtype=np.int64),
            onset=np.zeros(zones, dtype=np.int64),
            until=np.zeros(zones, dtype=np.int64),
            unknown_rule=np.full(zones, -1, dtype=np.int64),
            unknown_level=np.zeros(zones, dtype=np.int8),
        )

    def add(self, index: int, slot: _Slot, table: _Zones) -> None:
        point_index = table.point_index
        selected = slot.variant.selected
        fires = slot.fires[point_index] & selected
        value = int(slot.level.level)
        unknown = slot.unknown[point_index] & selected
        zones = np.flatnonzero(fires)
        if len(zones):
            points = point_index[zones]
            onset = slot.onset[points]
            level = self.level[zones]
            # higher level wins; on a tie the earlier onset, then the earlier rule
            better = (value > level) | ((value == level) & (onset < self.onset[zones]))
            won = zones[better]
            self.level[won] = value
            self.slot[won] = index
            self.onset[won] = onset[better]
            self.until[won] = slot.until[points[better]]
        if unknown.any():
            first = unknown & (self.unknown_rule < 0)
            self.unknown_rule[first] = slot.variant.rule_index
            undecided = unknown & ~fires & (value > self.unknown_level)
            self.unknown_level[undecided] = value


def _assessments(
    hazard: str,
    verdict: _Verdict,
    ruleset: RuleSet,
    slots: list[_Slot],
    table: _Zones,
    hours: ObjectArray,
) -> tuple[list[Assessment], IntArray]:
    """Assessments of one hazard and the zone index of each.

    Built column by column (arrays of zone ids, times, evidence) and zipped into
    tuples in C: a national evaluation makes hundreds of thousands of them.
    Evidence is gathered once per (slot, point), and zones with the same
    numbers share one (read-only) evidence mapping.
    """
    title = ruleset.hazard_name(hazard)
    levels = np.array([None, *Level], dtype=object)
    undecided = levels[np.where(verdict.unknown_level > verdict.level, verdict.unknown_level, 0)]
    out: list[Assessment] = []

    unknown_only = np.flatnonzero((verdict.level == 0) & (verdict.unknown_rule >= 0))
    if len(unknown_only):
        rule_ids = np.array([rule.id for rule in ruleset.rules], dtype=object)
        out.extend(
            _made(
                rule_ids[verdict.unknown_rule[unknown_only]].tolist(),
                repeat(hazard),
                table.ids[unknown_only].tolist(),
                repeat(None),
                repeat(None),
                repeat(None),
                repeat(NO_EVIDENCE),
                repeat(title),
                undecided[unknown_only].tolist(),
                repeat(""),
            )
        )

    firing = np.flatnonzero(verdict.level > 0)
    chosen = verdict.slot[firing]
    groups = [firing[chosen == index] for index in np.unique(chosen).tolist()]
    for group in groups:
        slot = slots[int(verdict.slot[group[0]])]
        points = table.point_index[group]
        unique, inverse = np.unique(points, return_inverse=True)
        shared = _evidence([str(expr) for expr in slot.compared], slot.evidence_at(unique))
        out.extend(
            _made(
                repeat(slot.variant.rule.id),
                repeat(hazard),
                table.ids[group].tolist(),
                repeat(slot.level.level),
                hours[verdict.onset[group]].tolist(),
                hours[verdict.until[group]].tolist(),
                shared[inverse.ravel()].tolist(),
                repeat(title),
                undecided[group].tolist(),
                repeat(slot.variant.authority),
            )
        )
    return out, np.concatenate([unknown_only, *groups]).astype(np.int64)


def _made(*columns: Iterable[object]) -> Iterator[Assessment]:
    """Assessments from columns of field values, built in C (no Python call each)."""
    # some columns are repeat(value): the finite ones set the length
    return map(_new_tuple, repeat(Assessment), zip(*columns, strict=False))


_new_tuple = cast(Callable[[type[Assessment], tuple[object, ...]], Assessment], tuple.__new__)


def _evidence(names: list[str], values: FloatArray) -> ObjectArray:
    """One evidence mapping per row of values (rounded to 0.01; missing ones left out).

    Rows with equal values share one mapping: neighbouring points often have the
    same rounded numbers, and building the mappings is what costs.
    """
    rounded = np.round(values, 2)
    distinct, inverse = _distinct_rows(rounded)
    gaps = np.isnan(distinct).any(axis=1)
    rows = distinct.tolist()
    made = np.empty(len(rows), dtype=object)
    made[:] = list(map(dict, map(zip, repeat(names), rows)))  # the common case, in C
    for index in np.flatnonzero(gaps).tolist():
        made[index] = {
            name: value for name, value in zip(names, rows[index], strict=True) if value == value
        }
    shared: ObjectArray = made[inverse]
    return shared


def _distinct_rows(values: FloatArray) -> tuple[FloatArray, IntArray]:
    """The distinct rows (bit for bit) of a 2-D array and, per row, which one it is."""
    count, columns = values.shape
    code = np.zeros(count, dtype=np.int64)
    for column in range(columns):
        # number the distinct (row so far, this column) pairs: codes stay below count²
        bits = np.ascontiguousarray(values[:, column]).view(np.int64)
        _, kind = np.unique(bits, return_inverse=True)
        _, code = np.unique(code * count + kind.ravel(), return_inverse=True)
        code = code.ravel()
    firsts = np.zeros(int(code.max()) + 1 if count else 0, dtype=np.int64)
    firsts[code[::-1]] = np.arange(count - 1, -1, -1)  # each code's first row
    return values[firsts], code


def _sorted(
    assessments: list[Assessment], zones_of: list[IntArray], hazards: list[str], table: _Zones
) -> list[Assessment]:
    """Sorted by (zone_id, hazard), with the keys computed as arrays."""
    if len(assessments) < 2:
        return assessments
    ranks = sorted(range(len(hazards)), key=hazards.__getitem__)
    hazard_rank = np.empty(len(hazards), dtype=np.int64)
    hazard_rank[ranks] = np.arange(len(hazards))
    keys = np.concatenate(
        [
            table.id_rank[zones] * len(hazards) + hazard_rank[index]
            for index, zones in enumerate(zones_of)
        ]
    )
    order = np.argsort(keys, kind="stable").tolist()
    return list(itemgetter(*order)(assessments))  # a tuple of them, gathered in C


@dataclass(frozen=True)
class _Zones:
    """A zone table located on the points of one batch."""

    table: ZoneTable
    point_index: IntArray

    @property
    def count(self) -> int:
        return self.table.count

    @property
    def ids(self) -> ObjectArray:
        return self.table.ids

    @property
    def id_rank(self) -> IntArray:
        return self.table.id_rank

    def select(self, selector: ZoneSelector) -> BoolArray:
        return self.table.select(selector)


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
