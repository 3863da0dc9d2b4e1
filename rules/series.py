"""Vectorised evaluation of series expressions on a forecast batch.

Every series is a float64 array shaped (points × hours); NaN means missing and
stays missing through every function, so a gap in the feed can never pass for
zero. `SeriesCache` computes each distinct expression once per batch and shares
it across all rules (so `daily_min(temperature_2m)` is computed once however
many rules use it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from rules.expr import (
    DAILY_FUNCTIONS,
    And,
    Call,
    Compare,
    CondCall,
    Condition,
    InSet,
    Not,
    Or,
    Series,
    Var,
)
from rules.types import FloatArray, ForecastBatch

if TYPE_CHECKING:
    from rules.truth import TruthCache

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Combine = Callable[[FloatArray, FloatArray], FloatArray]

# Lower bounds of Beaufort forces 1..17 in tenths of m/s (force 5 = 8.0–10.7,
# force 6 = 10.8–13.8, ...; 13–17 as extended in China's GB/T 28591-2012).
_BEAUFORT_TENTHS = np.array(
    [3, 16, 34, 55, 80, 108, 139, 172, 208, 245, 285, 327, 370, 415, 462, 510, 561],
    dtype=np.float64,
)
_HOUR = np.timedelta64(3600, "s")
# force of every speed in tenths of m/s up to the top of force 17 and one beyond
_FORCE_OF_TENTHS = np.searchsorted(
    _BEAUFORT_TENTHS, np.arange(_BEAUFORT_TENTHS[-1] + 2), side="right"
).astype(np.float64)


@dataclass(frozen=True)
class LocalDay:
    """The hours [start, stop) of the batch that fall in one local calendar day."""

    start: int
    stop: int
    length: int  # hours the day really has (23 or 25 on daylight-saving days)

    @property
    def complete(self) -> bool:
        return self.stop - self.start == self.length


Node = Series | Condition


Span = tuple[int, int]
"""Hours [start, stop) of the batch (array columns) an expression is computed over."""


class SeriesCache:
    """Arrays of series expressions for one batch, each computed at most once.

    `spans` (see `column_spans`) may say over which hours each expression (and
    condition) is needed: its array then covers those hours only, and what it
    reads is computed over as much more as that needs. An expression without a
    span covers the whole batch.
    """

    def __init__(
        self,
        batch: ForecastBatch,
        timezone: str = "Asia/Shanghai",
        days: tuple[LocalDay, ...] | None = None,
        spans: Mapping[Node, Span] | None = None,
    ) -> None:
        """`days` may pass the local days of another batch with the same times."""
        self.batch = batch
        self.timezone = ZoneInfo(timezone)
        self.times = batch.times.astype("datetime64[s]")
        if len(self.times) > 1 and np.any(np.diff(self.times) != _HOUR):
            # windows are counted in array steps, which is only right on an hourly grid
            raise ValueError("forecast times must be consecutive hours")
        self.spans: Mapping[Node, Span] = spans or {}
        self._whole = (0, batch.shape[1])
        self._arrays: dict[Series, FloatArray] = {}
        self._known: dict[Series, BoolArray | None] = {}
        self._everywhere: dict[Span, BoolArray] = {}
        self._days = days
        self._days_in: dict[Span, tuple[LocalDay, ...]] = {}
        self._truths: TruthCache | None = None

    @property
    def truths(self) -> TruthCache:
        """The truth cache of conditions on this batch (for count/run and the evaluator)."""
        if self._truths is None:
            from rules.truth import TruthCache  # truth builds on series: import late

            self._truths = TruthCache(self)
        return self._truths

    def attach(self, truths: TruthCache) -> None:
        """Share `truths` as this batch's truth cache unless one is attached already."""
        if self._truths is None:
            self._truths = truths

    def clear(self) -> None:
        """Drop every array (and the truth cache, which refers back to this one)."""
        self._arrays.clear()
        self._known.clear()
        self._everywhere.clear()
        self._truths = None

    def span(self, node: Node) -> Span:
        """The hours (batch columns) the array of an expression or condition covers."""
        return self.spans.get(node, self._whole)

    def start(self, node: Node) -> int:
        """The first hour (batch column) the array of an expression or condition covers."""
        return self.span(node)[0]

    def get(self, series: Series) -> FloatArray:
        """The (points × hours) array of a series over its span."""
        cached = self._arrays.get(series)
        if cached is None:
            cached = self._compute(series)
            self._arrays[series] = cached
        return cached

    def at(self, series: Series, span: Span) -> FloatArray:
        """The array of a series over `span`, which lies inside the series' own span."""
        first = self.start(series)
        return self.get(series)[:, span[0] - first : span[1] - first]

    def known(self, series: Series) -> BoolArray | None:
        """Where the series has a value (not missing); None when it has one everywhere."""
        if series not in self._known:
            values = self.get(series)
            # min propagates NaN: one pass without a temporary when nothing is missing
            gaps = values.size > 0 and bool(np.isnan(values.min()))
            self._known[series] = ~np.isnan(values) if gaps else None
        return self._known[series]

    def everywhere(self, span: Span) -> BoolArray:
        """The all-true mask over `span`, one shared (read-only) object per span."""
        mask = self._everywhere.get(span)
        if mask is None:
            mask = np.ones((self.batch.shape[0], span[1] - span[0]), dtype=np.bool_)
            self._everywhere[span] = mask
        return mask

    @property
    def local_days(self) -> tuple[LocalDay, ...]:
        """The local days the batch touches, computed once per batch."""
        if self._days is None:
            self._days = local_days(self.times, self.timezone)
        return self._days

    def _local_days_in(self, span: Span) -> tuple[LocalDay, ...]:
        """The local days as columns of an array over `span` (cut days are incomplete)."""
        if span == self._whole:
            return self.local_days
        days = self._days_in.get(span)
        if days is None:
            start, stop = span
            days = tuple(
                LocalDay(max(day.start, start) - start, min(day.stop, stop) - start, day.length)
                for day in self.local_days
                if day.stop > start and day.start < stop
            )
            self._days_in[span] = days
        return days

    def _compute(self, series: Series) -> FloatArray:
        start, stop = self.span(series)
        if isinstance(series, Var):
            values = self.batch.variables.get(series.name)
            if values is None:  # the feed did not deliver it: missing, not zero
                return np.full((self.batch.shape[0], stop - start), np.nan)
            return np.asarray(values, dtype=np.float64)[:, start:stop]
        if isinstance(series, CondCall):
            base = self.truths.span(series.condition)[0]
            truth = self.truths.get(series.condition)
            if series.function == "count":
                result = count(truth.true, truth.known, series.hours)
            elif series.function == "run":
                result = run(truth.true, truth.known, series.hours)
            else:
                raise ValueError(f"unknown function {series.function!r}")
            return result[:, start - base : stop - base]
        # the argument covers its own span: the function sees a batch that begins
        # there, and the hours it would call "before the batch" are cut off below
        span = self.span(series.arg)
        arg = self.get(series.arg)
        return self._apply(series, arg, span)[:, start - span[0] : stop - span[0]]

    def _apply(self, series: Call, arg: FloatArray, span: Span) -> FloatArray:
        match series.function:
            case "daily_min":
                return daily(arg, self._local_days_in(span), np.min)
            case "daily_max":
                return daily(arg, self._local_days_in(span), np.max)
            case "beaufort":
                return beaufort(arg)
        hours = series.hours
        if hours is None:
            raise ValueError(f"{series.function}() needs a window")
        match series.function:
            case "drop":
                return drop(arg, hours)
            case "sum":
                return trailing(arg, hours, np.add)
            case "min":
                return trailing(arg, hours, np.minimum)
            case "max":
                return trailing(arg, hours, np.maximum)
            case "mean":
                return trailing(arg, hours, np.add) / hours
            case "freeze_thaw":
                return freeze_thaw(arg, hours)
        raise ValueError(f"unknown function {series.function!r}")


def column_spans(needs: Iterable[tuple[Condition, Span]], hours: int) -> dict[Node, Span]:
    """Over which hours each expression must be computed.

    `needs` are the conditions the evaluator reads and the hours it reads each
    over. A condition's series are needed over the same hours; a function's
    argument from as far back as the function looks (a trailing window of N
    hours: N − 1 hours more; drop: N; a local day: up to 24) and, for the daily
    functions, up to the end of the last local day (up to 24 hours on). Spans
    are clamped to the batch's `hours`.
    """
    spans: dict[Node, Span] = {}

    def need(node: Node, start: int, stop: int) -> None:
        start, stop = max(min(start, hours), 0), max(min(stop, hours), 0)
        stop = max(stop, start)
        old = spans.get(node)
        if old is not None:
            if old[0] <= start and old[1] >= stop:
                return  # already needed over as much
            start, stop = min(start, old[0]), max(stop, old[1])
        spans[node] = (start, stop)
        match node:
            case Compare(series=series) | InSet(series=series):
                need(series, start, stop)
            case And(items=items) | Or(items=items):
                for item in items:
                    need(item, start, stop)
            case Not(item=item):
                need(item, start, stop)
            case CondCall(condition=condition, hours=window):
                need(condition, start - window + 1, stop)
            case Call(function=function, arg=arg, hours=window):
                if function in DAILY_FUNCTIONS:
                    need(arg, start - 24, stop + 24)  # whole local days (up to 25 h)
                elif function == "drop":
                    need(arg, start - (window or 0), stop)
                elif window is not None:
                    need(arg, start - window + 1, stop)
                else:
                    need(arg, start, stop)

    for condition, (start, stop) in needs:
        need(condition, start, stop)
    return spans


def local_days(times: npt.NDArray[np.datetime64], timezone: ZoneInfo) -> tuple[LocalDay, ...]:
    """Split hourly UTC times into the local calendar days of `timezone`."""
    if len(times) == 0:
        return ()
    first = _utc(times[0]).astimezone(timezone).date()
    last = _utc(times[-1]).astimezone(timezone).date()
    dates = [first + timedelta(days=k) for k in range((last - first).days + 2)]
    # local midnights as UTC instants: the loop is over days, not hours
    midnights = np.array(
        [int(datetime.combine(d, time(), tzinfo=timezone).timestamp()) for d in dates],
        dtype="datetime64[s]",
    )
    bounds = np.searchsorted(times, midnights, side="left")
    lengths = np.diff(midnights) // _HOUR
    return tuple(
        LocalDay(int(bounds[k]), int(bounds[k + 1]), int(lengths[k])) for k in range(len(dates) - 1)
    )


def daily(
    x: FloatArray, days: tuple[LocalDay, ...], reduce: Callable[..., FloatArray]
) -> FloatArray:
    """Min or max over each local day, spread over that day's hours.

    A day not wholly inside the batch, or with any missing hour, is NaN: a
    partial day's minimum is not the day's minimum and could fake a drop.
    """
    out = np.full(x.shape, np.nan)
    points = x.shape[0]
    # consecutive whole days of one length are reduced together, as (points, days, hours)
    for first, last in _runs_of_whole_days(days):
        start, stop, length = days[first].start, days[last].stop, days[first].length
        count = last - first + 1
        # reduce propagates NaN, so one missing hour makes the day missing
        reduced = reduce(x[:, start:stop].reshape(points, count, length), axis=2)
        out[:, start:stop].reshape(points, count, length)[...] = reduced[:, :, None]
    return out


def _runs_of_whole_days(days: tuple[LocalDay, ...]) -> list[tuple[int, int]]:
    """(first, last) indices of runs of adjacent complete days of equal length."""
    runs: list[tuple[int, int]] = []
    for index, day in enumerate(days):
        if not (day.complete and day.stop > day.start):
            continue
        if runs:
            first, last = runs[-1]
            previous = days[last]
            if last == index - 1 and previous.stop == day.start and previous.length == day.length:
                runs[-1] = (first, index)
                continue
        runs.append((index, index))
    return runs


def shift(x: FloatArray, hours: int) -> FloatArray:
    """`x(t − hours)`; NaN where that is before the batch."""
    if hours == 0:
        return x
    out = np.empty(x.shape)
    out[:, :hours] = np.nan
    if hours < x.shape[1]:
        out[:, hours:] = x[:, :-hours]
    return out


def drop(x: FloatArray, hours: int) -> FloatArray:
    """`x(t − hours) − x(t)`: how much x fell over the last `hours`."""
    out = np.empty(x.shape)
    out[:, :hours] = np.nan
    if hours < x.shape[1]:
        np.subtract(x[:, :-hours], x[:, hours:], out=out[:, hours:])
    return out


def trailing(x: FloatArray, hours: int, combine: Combine) -> FloatArray:
    """Combine (add, minimum, maximum) x over the trailing window (t − hours, t].

    Built from power-of-two blocks (binary decomposition of `hours`): O(log hours)
    array operations, and sums add the same values in the same order whatever
    the hour, so a dry window sums to exactly 0 (a cumulative-sum difference
    could leave 1e-16 and make `sum(...) > 0` true). NaN propagates, so a window
    with a missing hour or reaching before the batch start is NaN.
    """
    if hours < 1:
        raise ValueError("window must be at least one hour")
    steps = x.shape[1]
    out = np.empty(x.shape)
    out[:, : hours - 1] = np.nan
    if hours > steps:
        return out
    # Arrays are kept without their first (size − 1) columns, where a block would
    # reach before the batch: block[:, j] covers the hours (j + size − 1 − size, j + size − 1].
    result: FloatArray | None = None  # covers `offset` hours ending at column j + hours − 1
    block, size, offset = x, 1, 0
    while True:
        if hours & size:
            # this block, ending `offset` hours before the window's last hour
            part = block[:, hours - offset - size : steps - offset - size + 1]
            result = part.copy() if result is None else combine(result, part)
            offset += size
        if size * 2 > hours:
            break
        block = combine(block[:, size:], block[:, :-size])
        size *= 2
    assert result is not None  # hours >= 1 has at least one bit set
    out[:, hours - 1 :] = result
    return out


def _index_type(steps: int) -> type[np.signedinteger[Any]]:
    """The smallest integer type that holds hour indices and counts (memory is the cost)."""
    return np.int16 if steps < 2**15 - 1 else np.int32


def _window_sums(x: BoolArray, hours: int) -> npt.NDArray[np.signedinteger[Any]]:
    """How many hours of the trailing window (t − hours, t] are true, exactly."""
    total = np.cumsum(x, axis=1, dtype=_index_type(x.shape[1]))
    if hours < x.shape[1]:
        total[:, hours:] -= total[:, :-hours].copy()
    return total


def _complete(known: BoolArray, hours: int) -> BoolArray | None:
    """Where the trailing window (t − hours, t] has an unknown hour; None if nowhere.

    (The hours whose window reaches before the batch are left to the caller.)
    """
    if known.all():
        return None
    return _window_sums(~known, hours) > 0


def _masked(values: npt.NDArray[Any], gaps: BoolArray | None, hours: int) -> FloatArray:
    """Values as floats, missing where the trailing window of `hours` is not complete."""
    out = values.astype(np.float64)
    out[:, : hours - 1] = np.nan  # the window reaches before the batch
    if gaps is not None:
        out[gaps] = np.nan
    return out


def count(true: BoolArray, known: BoolArray, hours: int) -> FloatArray:
    """Hours of the trailing window (t − hours, t] in which the condition holds.

    Missing where any hour of the window is unknown or before the batch.
    """
    return _masked(_window_sums(true, hours), _complete(known, hours), hours)


def run(true: BoolArray, known: BoolArray, hours: int) -> FloatArray:
    """Consecutive hours ending with t in which the condition holds, at most `hours`.

    Counting back from t stops at the first hour where the condition does not
    hold (known false: the run is exact) or after `hours` hours (the run is
    capped). Missing where counting back meets an unknown hour or the batch start
    first: 0 at an hour where the condition is false, missing where it is unknown.
    """
    steps = true.shape[1]
    kind = _index_type(steps)
    after = np.arange(1, steps + 1, dtype=kind)  # hour index + 1
    # 1 + the last hour ≤ t where the condition does not hold (false or unknown); 0: none
    last = np.maximum.accumulate(np.multiply(~true, after, dtype=kind), axis=1)
    length = after - last
    # the hour that ended the run, where there is one, and whether it is known
    ended = np.take_along_axis(known, np.maximum(last - 1, 0).astype(np.intp), axis=1)
    ended &= last > 0
    ended |= length >= hours  # capped: what came before does not matter
    out: FloatArray = np.minimum(length, hours).astype(np.float64)
    out[~ended] = np.nan
    return out


def freeze_thaw(x: FloatArray, hours: int) -> FloatArray:
    """Completed freeze-thaw cycles of x in the trailing window (t − hours, t].

    An hour is *thawed* when x > 0 and *frozen* when x < 0; an hour at exactly 0
    is neither. A cycle is a thawed hour, then one or more frozen hours, then a
    thawed hour (hours at 0 may lie between them), all in the window: each run
    of frozen hours with a thawed hour before and after it inside the window is
    one cycle. Missing where any hour of the window is missing or before the batch.
    """
    steps = x.shape[1]
    kind = _index_type(steps)
    after = np.arange(1, steps + 1, dtype=kind)  # hour index + 1
    with np.errstate(invalid="ignore"):
        thawed = x > 0
        frozen = x < 0
    # 1 + the last thawed hour and 1 + the last frozen hour at or before t (0: none);
    # multiplying by a bool array is much faster than np.where with a broadcast row
    last_thaw = np.maximum.accumulate(np.multiply(thawed, after, dtype=kind), axis=1)
    last_frost = np.maximum.accumulate(np.multiply(frozen, after, dtype=kind), axis=1)
    # a cycle completes at a thawed hour u when the last hour before u with a sign
    # was frozen and a thawed hour a came before that frozen spell
    completes = np.zeros(x.shape, dtype=np.bool_)
    before_thaw = last_thaw[:, :-1]
    completes[:, 1:] = thawed[:, 1:] & (last_frost[:, :-1] > before_thaw) & (before_thaw > 0)
    # count each cycle from its start a = the last thawed hour before u
    rows, cols = np.nonzero(completes)
    started = np.zeros(x.shape, dtype=np.bool_)
    started[rows, last_thaw[rows, cols - 1] - 1] = True
    done = np.cumsum(completes, axis=1, dtype=kind)
    begun = np.cumsum(started, axis=1, dtype=kind)
    # cycles with u ≤ t and a > t − hours; both sets are prefixes of the cycles in time order
    if hours < steps:
        done[:, hours:] -= np.minimum(begun[:, :-hours], done[:, hours:])
    return _masked(done, _complete(~np.isnan(x), hours), hours)


def beaufort(speed: FloatArray) -> FloatArray:
    """Beaufort force of a wind speed in m/s (the scale is defined to 0.1 m/s)."""
    tenths = np.floor(speed * 10 + 0.5)  # round half up: 7.95 m/s is force 5
    np.clip(tenths, 0, len(_FORCE_OF_TENTHS) - 1, out=tenths)  # NaN stays NaN
    missing = np.isnan(tenths)
    gaps = bool(missing.any())
    if gaps:
        tenths[missing] = 0
    force = _FORCE_OF_TENTHS[tenths.astype(np.intp)]
    if gaps:
        force[missing] = np.nan
    return force


def _utc(value: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(value.astype("datetime64[s]").astype(np.int64)), tz=UTC)
