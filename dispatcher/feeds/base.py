"""The feed contract: forecast points, feed errors, and the Open-Meteo response parser.

A feed turns a request for some points and variables into one `ForecastBatch`,
or raises `FeedError`. It never returns a partial or guessed batch: a malformed
response must neither create nor clear a warning, so the whole poll is rejected
and the previous state stands until the next good one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rules.types import FloatArray, ForecastBatch
from rules.variables import EXPECTED_UNITS

log = logging.getLogger("yujing.feed")

_HOUR = np.timedelta64(3600, "s")
_NUMBER_TYPES: frozenset[type] = frozenset({int, float, type(None)})


@dataclass(frozen=True)
class ForecastPoint:
    """A deduplicated forecast location shared by the zones snapped to it."""

    id: str
    latitude: float
    longitude: float


class FeedError(Exception):
    """A poll failed; `reason` says what failed, in plain words and without secrets."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def parse_openmeteo(
    payload: object,
    points: Sequence[ForecastPoint],
    variables: Collection[str],
    source: str,
    issued_at: datetime,
) -> ForecastBatch:
    """Validate an Open-Meteo forecast response and turn it into a `ForecastBatch`.

    `payload` is the decoded JSON: one location object (single-point request) or
    a list of them, one per point in request order. Every location must carry the
    same hourly UTC time axis (ISO-8601 strings in GMT, or unixtime integers) and,
    for each requested variable, exactly one value per hour in the expected unit.
    Anything else raises `FeedError` naming the location and field — the whole
    batch is rejected. Nulls, NaN and infinities become NaN (masked), never zero.

    Coordinates in the batch are the requested points', not the grid-cell
    coordinates Open-Meteo echoes back, so zone → point lookups stay exact.
    """
    names = check_variables(variables)
    ids = [point.id for point in points]
    if len(set(ids)) != len(ids):
        raise ValueError("forecast point ids must be unique")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    locations = _locations(payload, len(points))

    times: npt.NDArray[np.datetime64] = np.empty(0, dtype="datetime64[s]")
    first_raw_time: object = None
    first_offset: object = None
    units: dict[str, str] = {}
    arrays: dict[str, FloatArray] = {name: np.empty((0, 0)) for name in names}
    for index, (location, point) in enumerate(zip(locations, points, strict=True)):
        where = f"location {index} ({point.id})"
        hourly = _section(location, "hourly", where)
        hourly_units = _section(location, "hourly_units", where)
        raw_time = hourly.get("time")
        offset = location.get("utc_offset_seconds", 0)
        if index == 0:
            times = _hourly_times(location, where)
            first_raw_time, first_offset = raw_time, offset
            arrays = {name: np.empty((len(points), len(times))) for name in names}
        elif raw_time != first_raw_time or offset != first_offset:
            # Raw lists differ (e.g. one batch answered in unixtime): compare as times.
            other = _hourly_times(location, where)
            if other.shape != times.shape or not np.array_equal(other, times):
                raise FeedError(
                    f"{where}: hourly.time differs from location 0 "
                    f"({_describe_axis(other)} vs {_describe_axis(times)})"
                )
        for name in names:
            values = _values(hourly.get(name), name, len(times), where)
            unit = hourly_units.get(name)
            if unit not in EXPECTED_UNITS[name]:
                expected = " or ".join(repr(u) for u in sorted(EXPECTED_UNITS[name]))
                raise FeedError(f"{where}: hourly_units.{name} is {unit!r}, expected {expected}")
            units.setdefault(name, str(unit))
            arrays[name][index] = values

    masked = {name: int(np.isnan(values).sum()) for name, values in arrays.items()}
    if any(masked.values()):
        total = len(points) * len(times)
        log.info(
            "%s: missing values masked as NaN (of %d per variable): %s",
            source,
            total,
            ", ".join(f"{name}={count}" for name, count in masked.items() if count),
        )
    return ForecastBatch(
        source=source,
        issued_at=issued_at.astimezone(UTC),
        point_ids=tuple(ids),
        latitudes=np.array([point.latitude for point in points], dtype=np.float64),
        longitudes=np.array([point.longitude for point in points], dtype=np.float64),
        times=times,
        variables=arrays,
        units=units,
    )


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


def _locations(payload: object, expected: int) -> list[Mapping[str, object]]:
    """The location objects of a response, checked for count and shape."""
    if isinstance(payload, Mapping):
        if payload.get("error") is True:
            raise FeedError(f"Open-Meteo error: {payload.get('reason', 'no reason given')}")
        items: list[object] = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise FeedError(f"response is a JSON {type(payload).__name__}, expected object or list")
    if len(items) != expected:
        raise FeedError(
            f"response has {len(items)} location(s), expected {expected} "
            "(one per requested point, in request order)"
        )
    locations: list[Mapping[str, object]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise FeedError(f"location {index}: is a JSON {type(item).__name__}, expected object")
        locations.append(item)
    return locations


def _section(location: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    section = location.get(key)
    if not isinstance(section, Mapping):
        raise FeedError(f"{where}: {key} is missing or not an object")
    return section


def _hourly_times(location: Mapping[str, object], where: str) -> npt.NDArray[np.datetime64]:
    """The hourly time axis of one location as naive-UTC `datetime64[s]`.

    Accepts unixtime integers (always UTC) or ISO-8601 strings; naive strings are
    local time at `utc_offset_seconds`, so they are accepted only when that is 0
    (we always request timezone=GMT). The axis must step by exactly one hour.
    """
    raw = _section(location, "hourly", where).get("time")
    if not isinstance(raw, list) or not raw:
        raise FeedError(f"{where}: hourly.time is missing or empty")
    kinds = set(map(type, raw))
    if kinds == {int}:
        seconds = np.array(raw, dtype=np.int64)
    elif kinds == {str}:
        offset = location.get("utc_offset_seconds", 0)
        seconds = np.array(
            [_iso_seconds(text, offset, where, k) for k, text in enumerate(raw)], dtype=np.int64
        )
    else:
        raise FeedError(
            f"{where}: hourly.time must be all unixtime integers or all ISO-8601 strings"
        )
    times = seconds.astype("datetime64[s]")
    steps = np.diff(times)
    if len(steps) and not np.all(steps == _HOUR):
        bad = int(np.argmax(steps != _HOUR))
        raise FeedError(
            f"{where}: hourly.time is not hourly ascending: "
            f"{times[bad]} is followed by {times[bad + 1]}"
        )
    return times


def _iso_seconds(text: str, offset: object, where: str, index: int) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FeedError(f"{where}: hourly.time[{index}] is {text!r}, not ISO-8601") from None
    if moment.tzinfo is None:
        if offset != 0:
            raise FeedError(
                f"{where}: times are local (utc_offset_seconds={offset!r}); "
                "the request must use timezone=GMT"
            )
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _values(raw: object, name: str, hours: int, where: str) -> FloatArray:
    """One variable's hourly values as float64; null/NaN/±inf become NaN."""
    if raw is None:
        raise FeedError(f"{where}: hourly.{name} is missing")
    if not isinstance(raw, list):
        raise FeedError(f"{where}: hourly.{name} is not a list")
    if len(raw) != hours:
        raise FeedError(f"{where}: hourly.{name} has {len(raw)} values, expected {hours}")
    # A type scan first: numpy would silently turn "1.5" into 1.5 and True into 1.0.
    if not set(map(type, raw)) <= _NUMBER_TYPES:
        index, value = next((k, v) for k, v in enumerate(raw) if type(v) not in _NUMBER_TYPES)
        raise FeedError(f"{where}: hourly.{name}[{index}] is {value!r}, expected a number or null")
    try:
        values = np.array(raw, dtype=np.float64)
    except OverflowError:
        raise FeedError(f"{where}: hourly.{name} has a number out of range") from None
    values[~np.isfinite(values)] = np.nan
    return values


def _describe_axis(times: npt.NDArray[np.datetime64]) -> str:
    return f"{len(times)} hours from {times[0]}" if len(times) else "empty"


def _utc(moment: npt.NDArray[np.datetime64] | np.datetime64) -> datetime:
    """A naive-UTC datetime64 as an aware UTC datetime."""
    seconds = int(np.asarray(moment).astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)


__all__ = [
    "Feed",
    "FeedError",
    "ForecastPoint",
    "batch_checksum",
    "check_variables",
    "parse_openmeteo",
]
