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
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from rules.expr import Series, Var
from rules.types import FloatArray, ForecastBatch

IntArray = npt.NDArray[np.int64]
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


def beaufort(speed: FloatArray) -> FloatArray:
    """Beaufort force of a wind speed in m/s (the scale is defined to 0.1 m/s)."""
    tenths = np.floor(speed * 10 + 0.5)  # round half up: 7.95 m/s is force 5
    force = np.searchsorted(_BEAUFORT_TENTHS, tenths, side="right").astype(np.float64)
    return np.where(np.isnan(speed), np.nan, force)


def _utc(value: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(value.astype("datetime64[s]").astype(np.int64)), tz=UTC)
