"""The feed contract: forecast points, feed errors, the variables a feed may serve, checksums.

A feed turns a request for some points and variables into one `ForecastBatch`,
or raises `FeedError`. It never returns a guessed batch. What it cannot read in
one variable at one location (the variable absent, in another unit, malformed)
is masked as missing there and said in `ForecastBatch.problems`: the rules that
read it cannot decide those zones (they are undecided, which neither creates nor
clears a warning), the others go on. What leaves a location without a usable
time axis rejects the whole poll, and the previous state stands until the next
good one. Either way every problem is reported at once (`at_locations`), not
only the first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rules.types import FloatArray, ForecastBatch
from rules.variables import EXPECTED_UNITS

log = logging.getLogger("yujing.feed")


@dataclass(frozen=True)
class ForecastPoint:
    """A deduplicated forecast location shared by the zones snapped to it."""

    id: str
    latitude: float
    longitude: float


class FeedError(Exception):
    """A poll failed; `reason` says what failed, in plain words and without secrets.

    `problems` lists every problem found (`reason` joins them), when there were several.
    """

    def __init__(self, reason: str, problems: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = tuple(problems) or (reason,)


SHOWN_LOCATIONS = 5  # locations a grouped problem names before "…"
SHOWN_PROBLEMS = 50  # distinct problems said before "… and N more" (a national feed is large)


def at_locations(found: Sequence[tuple[int, str]], labels: Sequence[str]) -> list[str]:
    """Problems found at locations, each said once with the locations it concerns.

    `found` holds (location index, problem text) pairs, `labels` each location's
    label (e.g. ``location 3 (p37.29_110.75)``). A problem at one location is
    prefixed with its label; at several, with their labels (the first few, then
    how many); at every one of several, it says so — one line per variable gone
    missing everywhere, not one per location. Past `SHOWN_PROBLEMS` lines, the
    rest are counted.
    """
    where: dict[str, list[int]] = {}
    for index, text in found:
        where.setdefault(text, []).append(index)
    lines = []
    for text, indices in where.items():
        indices = sorted(set(indices))
        if len(indices) == 1:
            lines.append(f"{labels[indices[0]]}: {text}")
        elif len(indices) == len(labels):
            lines.append(f"{text} (all {len(labels)} locations)")
        else:
            shown = ", ".join(labels[k] for k in indices[:SHOWN_LOCATIONS])
            more = " …" if len(indices) > SHOWN_LOCATIONS else ""
            lines.append(f"{text} ({len(indices)} of {len(labels)} locations: {shown}{more})")
    if len(lines) > SHOWN_PROBLEMS:
        rest = len(lines) - SHOWN_PROBLEMS
        lines = [*lines[:SHOWN_PROBLEMS], f"… and {rest} more problem(s)"]
    return lines


class Feed(Protocol):
    """One forecast source. `fetch` returns a whole batch or raises `FeedError`."""

    @property
    def source(self) -> str:
        """Name recorded in `ForecastBatch.source`, e.g. ``open-meteo``."""
        ...

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        """Hourly values of `variables` at `points`, in the order of `points`."""
        ...


def check_variables(variables: Collection[str]) -> tuple[str, ...]:
    """The requested variables, sorted; `FeedError` if none or any is unknown.

    Unknown variables are refused (rather than passed through with whatever unit
    the server reports) because no unit check would guard them.
    """
    names = tuple(sorted(set(variables)))
    if not names:
        raise FeedError("no forecast variables requested")
    unknown = [name for name in names if name not in EXPECTED_UNITS]
    if unknown:
        raise FeedError(
            f"unknown forecast variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(EXPECTED_UNITS))}"
        )
    return names


def batch_checksum(batch: ForecastBatch) -> str:
    """SHA-256 (hex) of a batch's content: point ids, times, variable names and values.

    Source and issue time are left out so two polls returning the same forecast
    compare equal. NaN and −0.0 are canonicalised so equal data hashes equally
    whatever bit patterns produced it.
    """
    digest = hashlib.sha256()

    def field(data: bytes) -> None:
        # Length-prefix every field so adjacent fields cannot run into each other.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    field(b"yujing-forecast-batch-v1")
    field(len(batch.point_ids).to_bytes(8, "little"))
    for point_id in batch.point_ids:
        field(point_id.encode("utf-8"))
    field(np.ascontiguousarray(batch.times.astype("datetime64[s]").view("<i8")).tobytes())
    for name in sorted(batch.variables):
        values = np.asarray(batch.variables[name], dtype="<f8")
        canonical = np.where(np.isnan(values), np.nan, values + 0.0)  # + 0.0 turns −0 into 0
        field(name.encode("utf-8"))
        field(np.ascontiguousarray(canonical, dtype="<f8").tobytes())
    return digest.hexdigest()


def log_missing_values(batch: ForecastBatch) -> None:
    """Log (INFO) how many values of each variable of `batch` are missing (NaN)."""
    nulls = ", ".join(
        f"{n}={c}" for n, v in batch.variables.items() if (c := int(np.isnan(v).sum()))
    )
    if nulls:
        total = batch.shape[0] * batch.shape[1]
        log.info(
            "%s: missing values masked as NaN (of %d per variable): %s", batch.source, total, nulls
        )


_HOUR = np.timedelta64(3600, "s")


def union_hours(axes: Sequence[npt.NDArray[np.datetime64]]) -> npt.NDArray[np.datetime64]:
    """The hourly axis from the earliest to the latest hour of `axes` (each hourly
    ascending, all on the same minute of the hour; `FeedError` otherwise)."""
    firsts = [axis[0].astype("datetime64[s]").astype(np.int64) for axis in axes]
    if len({int(first) % 3600 for first in firsts}) > 1:
        raise FeedError("the forecasts' hours are not on the same minute of the hour")
    start = min(axis[0] for axis in axes).astype("datetime64[s]")
    stop = max(axis[-1] for axis in axes).astype("datetime64[s]")
    return np.arange(start, stop + _HOUR, _HOUR).astype("datetime64[s]")


def on_hours(
    times: npt.NDArray[np.datetime64], axis: npt.NDArray[np.datetime64], values: FloatArray
) -> FloatArray:
    """`values` (on hourly `axis`) placed on the longer hourly `times`; NaN elsewhere."""
    out = np.full(len(times), np.nan, dtype=np.float64)
    offset = int((axis[0].astype("datetime64[s]") - times[0]) // _HOUR)
    out[offset : offset + len(axis)] = values
    return out


__all__ = [
    "Feed",
    "FeedError",
    "ForecastPoint",
    "at_locations",
    "batch_checksum",
    "check_variables",
    "log_missing_values",
    "on_hours",
    "union_hours",
]
