"""Vectorised evaluation of series expressions on a forecast batch.

Every series is a float64 array shaped (points × hours); NaN means missing and
stays missing through every function, so a gap in the feed can never pass for
zero. `SeriesCache` computes each distinct expression once per batch and shares
it across all rules (so `daily_min(temperature_2m)` is computed once however
many rules use it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from rules.expr import CondCall, Series, Var
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


@dataclass(frozen=True)
class LocalDay:
    """The hours [start, stop) of the batch that fall in one local calendar day."""

    start: int
    stop: int
    length: int  # hours the day really has (23 or 25 on daylight-saving days)

    @property
    def complete(self) -> bool:
        return self.stop - self.start == self.length


class SeriesCache:
    """Arrays of series expressions for one batch, each computed at most once."""

    def __init__(self, batch: ForecastBatch, timezone: str = "Asia/Shanghai") -> None:
        self.batch = batch
        self.timezone = ZoneInfo(timezone)
        self.times = batch.times.astype("datetime64[s]")
        if len(self.times) > 1 and np.any(np.diff(self.times) != _HOUR):
            # windows are counted in array steps, which is only right on an hourly grid
            raise ValueError("forecast times must be consecutive hours")
        self._arrays: dict[Series, FloatArray] = {}
        self._days: tuple[LocalDay, ...] | None = None
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

    def get(self, series: Series) -> FloatArray:
        """The (points × hours) array of a series expression."""
        cached = self._arrays.get(series)
        if cached is None:
            cached = self._compute(series)
            self._arrays[series] = cached
        return cached

    @property
    def local_days(self) -> tuple[LocalDay, ...]:
        """The local days the batch touches, computed once per batch."""
        if self._days is None:
            self._days = local_days(self.times, self.timezone)
        return self._days

    def _compute(self, series: Series) -> FloatArray:
        if isinstance(series, Var):
            values = self.batch.variables.get(series.name)
            if values is None:  # the feed did not deliver it: missing, not zero
                return np.full(self.batch.shape, np.nan)
            return np.asarray(values, dtype=np.float64)
        if isinstance(series, CondCall):
            truth = self.truths.get(series.condition)
            if series.function == "count":
                return count(truth.true, truth.known, series.hours)
            if series.function == "run":
                return run(truth.true, truth.known, series.hours)
            raise ValueError(f"unknown function {series.function!r}")
        arg = self.get(series.arg)
        match series.function:
            case "daily_min":
                return daily(arg, self.local_days, np.min)
            case "daily_max":
                return daily(arg, self.local_days, np.max)
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
    for day in days:
        if day.complete and day.stop > day.start:
            # reduce propagates NaN, so one missing hour makes the day missing
            out[:, day.start : day.stop] = reduce(x[:, day.start : day.stop], axis=1)[:, None]
    return out


def shift(x: FloatArray, hours: int) -> FloatArray:
    """`x(t − hours)`; NaN where that is before the batch."""
    if hours == 0:
        return x
    out = np.full(x.shape, np.nan)
    if hours < x.shape[1]:
        out[:, hours:] = x[:, :-hours]
    return out


def drop(x: FloatArray, hours: int) -> FloatArray:
    """`x(t − hours) − x(t)`: how much x fell over the last `hours`."""
    return shift(x, hours) - x


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
    result: FloatArray | None = None
    block, size, offset = x, 1, 0  # block(t) covers (t − size, t]
    while True:
        if hours & size:
            part = shift(block, offset)
            result = part if result is None else combine(result, part)
            offset += size
        if size * 2 > hours:
            break
        block = combine(block, shift(block, size))
        size *= 2
    assert result is not None  # hours >= 1 has at least one bit set
    return result


def _window_sums(x: IntArray, hours: int) -> IntArray:
    """Sum of the integers x over the trailing window (t − hours, t], exact."""
    total = np.cumsum(x, axis=1)
    out = total.copy()
    out[:, hours:] -= total[:, :-hours] if hours < x.shape[1] else total[:, :0]
    return out


def _complete(known: BoolArray, hours: int) -> BoolArray:
    """Where the trailing window (t − hours, t] lies in the batch with every hour known."""
    unknown = _window_sums((~known).astype(np.int64), hours)
    ok = unknown == 0
    ok[:, : hours - 1] = False  # the window reaches before the batch
    return ok


def count(true: BoolArray, known: BoolArray, hours: int) -> FloatArray:
    """Hours of the trailing window (t − hours, t] in which the condition holds.

    Missing where any hour of the window is unknown or before the batch.
    """
    counts = _window_sums(true.astype(np.int64), hours).astype(np.float64)
    return np.where(_complete(known, hours), counts, np.nan)


def run(true: BoolArray, known: BoolArray, hours: int) -> FloatArray:
    """Consecutive hours ending with t in which the condition holds, at most `hours`.

    Counting back from t stops at the first hour where the condition does not
    hold (known false: the run is exact) or after `hours` hours (the run is
    capped). Missing where counting back meets an unknown hour or the batch start
    first: 0 at an hour where the condition is false, missing where it is unknown.
    """
    points, steps = true.shape
    index = np.arange(steps, dtype=np.int64)
    # last hour ≤ t where the condition does not hold (false or unknown); -1: none
    breaks = np.where(true, -1, index[None, :])
    last = np.maximum.accumulate(breaks, axis=1)
    length = index[None, :] - last
    capped = length >= hours
    # the hour that ended the run: known false → exact; unknown or before the batch → missing
    stop = np.maximum(last, 0)
    ended_known = (last >= 0) & np.take_along_axis(known, stop, axis=1)
    value = np.minimum(length, hours).astype(np.float64)
    return np.where(capped | ended_known, value, np.nan)


def freeze_thaw(x: FloatArray, hours: int) -> FloatArray:
    """Completed freeze-thaw cycles of x in the trailing window (t − hours, t].

    An hour is *thawed* when x > 0 and *frozen* when x < 0; an hour at exactly 0
    is neither. A cycle is a thawed hour, then one or more frozen hours, then a
    thawed hour (hours at 0 may lie between them), all in the window: each run
    of frozen hours with a thawed hour before and after it inside the window is
    one cycle. Missing where any hour of the window is missing or before the batch.
    """
    points, steps = x.shape
    index = np.arange(steps, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        thawed = x > 0
        frozen = x < 0
    # last thawed hour and last frozen hour at or before t (-1: none)
    last_thaw = np.maximum.accumulate(np.where(thawed, index[None, :], -1), axis=1)
    last_frost = np.maximum.accumulate(np.where(frozen, index[None, :], -1), axis=1)
    prev_thaw = np.full_like(last_thaw, -1)
    prev_frost = np.full_like(last_frost, -1)
    prev_thaw[:, 1:] = last_thaw[:, :-1]
    prev_frost[:, 1:] = last_frost[:, :-1]
    # a cycle completes at a thawed hour u whose last sign-bearing hour before it
    # was frozen and that frozen spell had a thawed hour `a` before it
    completes = thawed & (prev_frost > prev_thaw) & (prev_thaw >= 0)
    # each cycle is counted from its start a = the last thawed hour before u
    started = np.zeros((points, steps), dtype=np.int64)
    rows, cols = np.nonzero(completes)
    started[rows, prev_thaw[rows, cols]] = 1
    done = np.cumsum(completes, axis=1, dtype=np.int64)
    begun = np.cumsum(started, axis=1, dtype=np.int64)
    # cycles with u ≤ t and a > t − hours; both are prefixes of the cycles in time order
    before = np.zeros_like(begun)
    if hours < steps:
        before[:, hours:] = begun[:, :-hours]
    cycles = np.maximum(done - before, 0).astype(np.float64)
    return np.where(_complete(~np.isnan(x), hours), cycles, np.nan)


def beaufort(speed: FloatArray) -> FloatArray:
    """Beaufort force of a wind speed in m/s (the scale is defined to 0.1 m/s)."""
    tenths = np.floor(speed * 10 + 0.5)  # round half up: 7.95 m/s is force 5
    force = np.searchsorted(_BEAUFORT_TENTHS, tenths, side="right").astype(np.float64)
    return np.where(np.isnan(speed), np.nan, force)


def _utc(value: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(value.astype("datetime64[s]").astype(np.int64)), tz=UTC)
