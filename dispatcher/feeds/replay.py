"""Replay a recorded Open-Meteo or QWeather response: drills, demos and offline tests.

An Open-Meteo recording is exactly what the API returned (one location object
or a list of them), so recording is
`curl 'https://api.open-meteo.com/v1/forecast?...' > f.json`.

A QWeather recording (told apart by its content) is a JSON object mapping each
recorded location, as the request's `location` parameter wrote it (`lon,lat`),
to the response QWeather returned for it: `{"110.95,37.41": {"code": "200",
"hourly": [...]}, ...}` — QWeather's answer does not say where it is for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeGuard

import numpy as np

from dispatcher.feeds.base import FeedError, ForecastPoint, check_variables, log_missing_values
from dispatcher.feeds.openmeteo import hourly_times, parse_openmeteo, utc_datetime
from dispatcher.feeds.qweather import is_qweather, location_param, parse_qweather
from rules.collector import collector_paused
from rules.types import ForecastBatch

log = logging.getLogger("yujing.feed")

# (file, content digest, points, variables, issued_at, past_days, reach) → the batch it gave
_Key = tuple[
    str,
    bytes,
    tuple[ForecastPoint, ...],
    tuple[str, ...],
    datetime | None,
    int,
    float,
]
_KEPT = 2  # batches kept (a drill may chain two recordings): a province's is ~60 MB of arrays
_recent: OrderedDict[_Key, tuple[ForecastBatch, bool]] = OrderedDict()  # batch, Open-Meteo?
_recent_lock = threading.Lock()  # fetches read in worker threads
# points per block of the nearest-location search: a block's distances stay a few MB
_BLOCK_CELLS = 1_000_000


class ReplayFeed:
    """Serves a recorded Open-Meteo or QWeather response file as if it were the live API.

    Each requested point takes the recorded location nearest to it (Open-Meteo
    echoes grid-cell coordinates, which differ slightly from those requested);
    none within `max_distance_deg` (Euclidean, in degrees; the daemon and the
    drill pass the point resolution) is an error naming the point: a location
    farther away is never substituted. Only the requested variables are read;
    one not recorded is masked as missing and said in the batch's `problems`,
    as the live feed does. Every problem is reported at once.

    With `rebase_to` (a clock), the recording is shifted by whole days so its
    issue day is the current one (`rebase_days`: "now" stands for the recorded
    instant that many days earlier): the daemon can rehearse a recorded event as if it were
    happening now (`yujing run` with YUJING_FEED=replay), with local days,
    daylight and night where they were recorded — so it warns exactly as
    `yujing drill --at` that recorded instant does.

    `issued_at` is deterministic: the value given to the constructor or, without
    one, the first recorded hour plus `past_days` days — i.e. 00:00 UTC of the day
    the recording was requested, when it was made with that `past_days`. The file
    is read on every fetch, so a drill may swap it between polls; an unchanged
    file gives the batch it gave before without being decoded again.
    """

    def __init__(
        self,
        path: Path,
        *,
        issued_at: datetime | None = None,
        past_days: int = 0,
        max_distance_deg: float = 0.25,
        rebase_to: Callable[[], datetime] | None = None,
    ) -> None:
        if issued_at is not None and issued_at.tzinfo is None:
            raise ValueError("issued_at must be timezone-aware")
        if past_days < 0:
            raise ValueError("past_days must not be negative")
        self.path = path
        self.source = f"replay:{path.name}"
        self._issued_at = issued_at
        self._past_days = past_days
        self._max_distance = max_distance_deg
        self._rebase_to = rebase_to

    def __repr__(self) -> str:
        return f"ReplayFeed({str(self.path)!r})"

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        """Hourly `variables` at `points` from the recording, or `FeedError`."""
        names = check_variables(variables)
        batch = await asyncio.to_thread(self._batch, points, names)
        if self._rebase_to is None:
            return batch
        days = rebase_days(batch.issued_at, self._rebase_to())
        shift = np.timedelta64(days * 86400, "s")
        return replace(
            batch, issued_at=batch.issued_at + timedelta(days=days), times=batch.times + shift
        )

    def _batch(self, points: Sequence[ForecastPoint], names: tuple[str, ...]) -> ForecastBatch:
        """The batch the file holds now for `points`: decoded, or as decoded before when
        the file's content and the request are the same (see the module docstring)."""
        data = self._read_bytes()
        key: _Key = (
            str(self.path),
            hashlib.sha256(data).digest(),
            tuple(points),
            names,
            self._issued_at,
            self._past_days,
            self._max_distance,
        )
        with _recent_lock:
            kept = _recent.get(key)
            if kept is not None:
                _recent.move_to_end(key)
        if kept is not None:
            batch, openmeteo = kept
            # said again, as a live feed says them every poll
            if batch.problems:
                log.warning("%s: masked as missing: %s", batch.source, "; ".join(batch.problems))
            if openmeteo:
                log_missing_values(batch)
            return batch
        # a province's recording decodes to millions of objects, none in a cycle
        with collector_paused():
            payload = self._decode(data)
            openmeteo = not is_qweather_recording(payload)
            if openmeteo:
                batch = self._openmeteo(payload, points, names)
            else:
                assert isinstance(payload, Mapping)
                batch = self._qweather(payload, points, names)
            del payload  # freed here, by reference counting
        for values in batch.variables.values():
            values.setflags(write=False)  # shared by the polls that reuse it
        with _recent_lock:
            _recent[key] = (batch, openmeteo)
            while len(_recent) > _KEPT:
                _recent.popitem(last=False)
        return batch

    def _qweather(
        self, payload: Mapping[str, object], points: Sequence[ForecastPoint], names: Sequence[str]
    ) -> ForecastBatch:
        """The batch from a QWeather recording: each point takes the nearest recorded location."""
        keys = list(payload)
        problems: list[str] = []
        coordinates = [self._qweather_coordinates(key, problems) for key in keys]
        nearest = self._nearest(points, coordinates, problems)
        if problems:  # every malformed location key, every point without a location
            raise FeedError("; ".join(problems), problems)
        responses = {
            location_param(point): payload[keys[index]]
            for point, index in zip(points, nearest, strict=True)
        }
        if self._issued_at is not None:
            issued_at = self._issued_at.astimezone(UTC)
        else:
            issued_at = _first_fx_time(payload[keys[0]], self.path.name)
        try:
            return parse_qweather(responses, points, names, self.source, issued_at)
        except FeedError as error:
            raise FeedError(f"{self.path.name}: {error.reason}", error.problems) from None

    def _qweather_coordinates(self, key: str, problems: list[str]) -> tuple[float, float]:
        """The recorded location's (latitude, longitude); NaN (never nearest) with a
        problem noted when its key is not `longitude,latitude`."""
        parts = key.split(",")
        try:
            longitude, latitude = (float(part) for part in parts)
        except ValueError:
            problems.append(
                f"{self.path.name}: recorded location {key!r} is not 'longitude,latitude'"
            )
            return math.nan, math.nan
        return latitude, longitude

    def _openmeteo(
        self, payload: object, points: Sequence[ForecastPoint], names: Sequence[str]
    ) -> ForecastBatch:
        recorded = self._recorded_locations(payload)
        problems: list[str] = []
        coordinates = [
            self._coordinates(index, loc, problems) for index, loc in enumerate(recorded)
        ]
        nearest = self._nearest(points, coordinates, problems)
        if problems:  # every location without coordinates, every point without a location
            raise FeedError("; ".join(problems), problems)
        chosen = [recorded[index] for index in nearest]
        if self._issued_at is not None:
            issued_at = self._issued_at.astimezone(UTC)
        else:
            first_hour = hourly_times(recorded[0], f"{self.path.name}: location 0")[0]
            issued_at = utc_datetime(first_hour) + timedelta(days=self._past_days)
        try:
            return parse_openmeteo(chosen, points, names, self.source, issued_at)
        except FeedError as error:
            raise FeedError(f"{self.path.name}: {error.reason}", error.problems) from None

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise FeedError(f"cannot read replay file {self.path}: {error.strerror}") from None

    def _decode(self, data: bytes) -> object:
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise FeedError(
                f"cannot read replay file {self.path}: not UTF-8 "
                f"(byte {error.start}: {error.reason})"
            ) from None
        except json.JSONDecodeError as error:
            raise FeedError(
                f"replay file {self.path} is not JSON (line {error.lineno}, "
                f"column {error.colno}: {error.msg})"
            ) from None

    def _recorded_locations(self, payload: object) -> list[Mapping[str, object]]:
        if isinstance(payload, Mapping):
            if payload.get("error") is True:
                raise FeedError(f"{self.path.name} records an Open-Meteo error, not a forecast")
            return [payload]
        if isinstance(payload, list) and payload:
            if not all(isinstance(item, Mapping) for item in payload):
                raise FeedError(f"{self.path.name}: the list holds non-object entries")
            return payload
        raise FeedError(f"{self.path.name}: expected an Open-Meteo object or a non-empty list")

    def _coordinates(
        self, index: int, location: Mapping[str, object], problems: list[str]
    ) -> tuple[float, float]:
        """The location's coordinates; NaN (never nearest) with a problem noted when it has none."""
        latitude, longitude = location.get("latitude"), location.get("longitude")
        if _is_number(latitude) and _is_number(longitude):
            return float(latitude), float(longitude)
        problems.append(f"{self.path.name}: location {index} has no numeric latitude/longitude")
        return math.nan, math.nan

    def _nearest(
        self,
        points: Sequence[ForecastPoint],
        coordinates: Sequence[tuple[float, float]],
        problems: list[str],
    ) -> list[int]:
        """Per point, the index of the recorded location nearest to it (first one on a
        tie); -1 with a problem noted when none is within reach.

        The distances are computed in numpy, a block of points at a time (a province
        is thousands of points × thousands of locations); the few locations within a
        rounding error of the nearest are measured again with `math.hypot`, so the
        one chosen, and the distance compared with the reach, are exactly those of
        measuring every location one by one.
        """
        if not points:
            return []
        lats = np.array([lat for lat, _ in coordinates], dtype=np.float64)
        lons = np.array([lon for _, lon in coordinates], dtype=np.float64)
        step = max(1, _BLOCK_CELLS // max(1, len(coordinates)))
        candidates: list[list[int]] = [[] for _ in points]
        for start in range(0, len(points), step):
            block = points[start : start + step]
            plat = np.array([p.latitude for p in block], dtype=np.float64)
            plon = np.array([p.longitude for p in block], dtype=np.float64)
            distances = np.hypot(lats[None, :] - plat[:, None], lons[None, :] - plon[:, None])
            known = ~np.isnan(distances)  # NaN: a location without coordinates, never nearest
            least = np.where(known, distances, np.inf).min(axis=1)
            # within a rounding error of the least (an infinite least: every infinite one)
            near = known & (distances <= (least + least * 1e-12)[:, None])
            for row, column in zip(*np.nonzero(near), strict=True):
                candidates[start + int(row)].append(int(column))
        out = []
        for point, near_ones in zip(points, candidates, strict=True):
            if not near_ones:
                out.append(-1)  # no location has coordinates: said once per location already
                continue
            measured = {
                k: math.hypot(
                    coordinates[k][0] - point.latitude, coordinates[k][1] - point.longitude
                )
                for k in near_ones
            }
            best = min(measured, key=lambda k: (measured[k], k))
            # at the distance itself is within it (one grid step, whatever the rounding)
            if measured[best] > self._max_distance + 1e-9:
                problems.append(
                    f"{self.path.name}: no recorded location within {self._max_distance}° of "
                    f"point {point.id} ({point.latitude:.4f}, {point.longitude:.4f}); "
                    f"the nearest, location {best}, is {measured[best]:.3f}° away: substituting "
                    "it is refused (record that point, or set YUJING_POINT_RESOLUTION_DEG)"
                )
                out.append(-1)
            else:
                out.append(best)
        return out


def rebase_days(issued_at: datetime, now: datetime) -> int:
    """Whole days a rebased replay moves the recording issued at `issued_at` by, at `now`.

    The recorded instant `now` stands for is `now` minus that many days: the day
    after `issued_at` at the hour of `now`.
    """
    return (now.astimezone(UTC) - issued_at.astimezone(UTC)) // timedelta(days=1)


def is_qweather_recording(payload: object) -> bool:
    """A QWeather recording: a non-empty object whose every value is a QWeather response."""
    return (
        isinstance(payload, Mapping)
        and bool(payload)
        and all(is_qweather(value) for value in payload.values())
    )


def _first_fx_time(response: object, name: str) -> datetime:
    hourly = response.get("hourly") if isinstance(response, Mapping) else None
    first = hourly[0] if isinstance(hourly, list) and hourly else None
    text = first.get("fxTime") if isinstance(first, Mapping) else None
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise FeedError(f"{name}: the first recorded location has no valid hourly[0].fxTime")
    return moment.astimezone(UTC)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
