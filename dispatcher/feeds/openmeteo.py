"""Open-Meteo (https://open-meteo.com/en/docs): the live feed and its response parser.

One GET per batch of points (multi-location request), batches fetched
concurrently on the shared client, retried on 429/5xx/timeouts/connection
errors, and the answers validated and merged by `parse_openmeteo` — which the
replay of a recorded response (`feeds/replay.py`) uses too.

The commercial API key travels as the `apikey` query parameter (Open-Meteo
offers no header). It is redacted from every message this module produces, but
httpx's own logger ("httpx") prints request URLs at INFO: keep that logger at
WARNING when a key is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from dispatcher.feeds.base import (
    FeedError,
    ForecastPoint,
    at_locations,
    check_variables,
    log_missing_values,
)
from dispatcher.feeds.http import Retry, get_once, json_or_none, with_retries
from rules.types import FloatArray, ForecastBatch
from rules.variables import EXPECTED_UNITS

log = logging.getLogger("yujing.feed")

SOURCE = "open-meteo"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OpenMeteoFeed:
    """Polls the Open-Meteo forecast API for a set of points.

    `batch_size` locations go in one request; at most `max_concurrency` requests
    are in flight. A failed request is retried `retries` times after
    `backoff_seconds × 2^attempt` (or the server's Retry-After on 429/503, up to
    `max_retry_after_seconds`; a longer demand — e.g. a daily quota — fails the
    poll at once and the next poll tries again). An Open-Meteo error body
    (HTTP 400 `{"error": true, "reason": ...}`) is a request problem and is not
    retried. `issued_at` of the batch is `clock()` when the fetch starts.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        url: str,
        api_key: SecretStr | None,
        batch_size: int,
        forecast_days: int,
        past_days: int,
        retries: int,
        backoff_seconds: float,
        timeout_seconds: float | None = None,
        max_concurrency: int = 4,
        max_retry_after_seconds: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.source = SOURCE
        self._client = client
        self._url = url
        self._api_key = api_key
        self._batch_size = batch_size
        self._forecast_days = forecast_days
        self._past_days = past_days
        self._retries = retries
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds  # None: the shared client's own timeout
        self._max_concurrency = max_concurrency
        self._max_retry_after = max_retry_after_seconds
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"OpenMeteoFeed(url={self._url!r}, batch_size={self._batch_size})"

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        """Hourly `variables` at `points` as one batch; `FeedError` if any request fails."""
        names = check_variables(variables)  # fail before any request on a config error
        issued_at = self._clock()
        batches = [
            points[start : start + self._batch_size]
            for start in range(0, len(points), self._batch_size)
        ]
        results: list[list[Mapping[str, object]]] = [[] for _ in batches]
        slots = asyncio.Semaphore(self._max_concurrency)

        async def run(index: int, batch: Sequence[ForecastPoint]) -> None:
            async with slots:
                results[index] = await self._fetch_batch(batch, names)

        try:
            # A TaskGroup cancels the other batches as soon as one fails: the
            # whole poll is rejected anyway, so finishing them would be wasted.
            async with asyncio.TaskGroup() as group:
                for index, batch in enumerate(batches):
                    group.create_task(run(index, batch))
        except ExceptionGroup as failures:
            first = next((e for e in failures.exceptions if isinstance(e, FeedError)), None)
            if first is None:
                raise
            raise first from None

        # One parse over all batches also checks they share one time axis.
        locations = [location for result in results for location in result]
        return parse_openmeteo(locations, points, names, self.source, issued_at)

    async def _fetch_batch(
        self, batch: Sequence[ForecastPoint], names: Sequence[str]
    ) -> list[Mapping[str, object]]:
        """The location objects for one batch, in request order."""
        params: dict[str, str | int] = {
            "latitude": ",".join(f"{point.latitude:.4f}" for point in batch),
            "longitude": ",".join(f"{point.longitude:.4f}" for point in batch),
            "hourly": ",".join(names),
            "timezone": "GMT",
            "timeformat": "unixtime",  # unambiguous UTC, no string parsing
            "wind_speed_unit": "ms",
            "forecast_days": self._forecast_days,
            "past_days": self._past_days,
        }
        if self._api_key is not None and self._api_key.get_secret_value():
            params["apikey"] = self._api_key.get_secret_value()
        payload = await self._get(params, len(batch))
        if isinstance(payload, Mapping):
            if payload.get("error") is True:
                raise FeedError(self._redact(f"Open-Meteo error: {_reason(payload)}"))
            # Open-Meteo answers a single-location request with a bare object.
            return [payload]
        if isinstance(payload, list):
            if len(payload) != len(batch):
                raise FeedError(
                    f"a request for {len(batch)} points returned {len(payload)} locations"
                )
            if not all(isinstance(item, Mapping) for item in payload):
                raise FeedError("response list holds something other than location objects")
            return payload
        raise FeedError(f"response is a JSON {type(payload).__name__}, expected object or list")

    async def _get(self, params: Mapping[str, str | int], points: int) -> object:
        """GET with retries; the decoded JSON body of a 200 response."""

        async def attempt() -> object:
            answer = await get_once(
                self._client,
                self._url,
                params=params,
                timeout=self._timeout,
                redact=self._redact,
                bad_url="bad feed URL",
            )
            if isinstance(answer, str):
                return Retry(answer)
            status = answer.status_code
            if status == 200:
                try:
                    return answer.json()
                except ValueError:
                    raise FeedError("HTTP 200 but the body is not JSON") from None
            reason = self._redact(_reason(json_or_none(answer)))
            if status != 429 and status < 500:
                # 400 with {"error": true, "reason": ...}: the request is wrong;
                # repeating it cannot help.
                raise FeedError(f"HTTP {status}: {reason}" if reason else f"HTTP {status}")
            problem = f"HTTP {status}" + (f" ({reason})" if reason else "")
            wait = _retry_after(answer, self._clock()) if status in (429, 503) else None
            return Retry(problem, wait)

        def warn(problem: str, number: int, delay: float) -> None:
            log.warning(
                "%s: request for %d points failed: %s; retry %d of %d in %.1f s",
                self.source,
                points,
                problem,
                number,
                self._retries,
                delay,
            )

        return await with_retries(
            attempt,
            retries=self._retries,
            backoff=self._backoff,
            sleep=self._sleep,
            warn=warn,
            max_wait=self._max_retry_after,
        )

    def _redact(self, text: str) -> str:
        """`text` with the API key masked, should a server or exception echo it."""
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "***")
        return text


def _reason(body: object) -> str:
    """Open-Meteo's `reason` from an error body, or ''."""
    if isinstance(body, Mapping):
        reason = body.get("reason")
        if isinstance(reason, str):
            return reason.strip()[:300]
    return ""


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --- the response parser (the live feed and the replay of a recording both use it)

_HOUR = np.timedelta64(3600, "s")
_NUMBER_TYPES: frozenset[type] = frozenset({int, float, type(None)})


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

    Every problem is collected. A variable absent, malformed or in another unit
    at a location is masked as missing (NaN) there and said in the batch's
    `problems`; one no location delivered is left out. A location without a
    usable time axis (or another one than the rest) raises `FeedError` listing
    every problem found. Nulls, NaN and infinities become NaN, never zero.

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
    labels = [f"location {index} ({point.id})" for index, point in enumerate(points)]

    times: npt.NDArray[np.datetime64] | None = None
    reference = 0  # the location whose time axis the others must match
    first_raw_time: object = None
    first_offset: object = None
    units: dict[str, str] = {}
    arrays: dict[str, FloatArray] = {}
    delivered: dict[str, int] = dict.fromkeys(names, 0)  # locations that delivered each
    fatal: list[tuple[int, str]] = []  # (location, problem): the batch is refused
    masked: list[tuple[int, str]] = []  # (location, problem): masked as missing
    seen: dict[tuple[int, int, str, int | None], tuple[FloatArray | None, list[str]]] = {}
    for index, location in enumerate(locations):
        where = labels[index]
        hourly, hourly_units = location.get("hourly"), location.get("hourly_units")
        hours: int | None = None  # the location's hours, once its time axis is usable
        try:
            hourly = _section(location, "hourly", where)
            hourly_units = _section(location, "hourly_units", where)
            raw_time = hourly.get("time")
            offset = location.get("utc_offset_seconds", 0)
            if times is None:
                times = hourly_times(location, where)
                reference, first_raw_time, first_offset = index, raw_time, offset
                arrays = {name: np.full((len(points), len(times)), np.nan) for name in names}
            elif raw_time != first_raw_time or offset != first_offset:
                # Raw lists differ (e.g. one batch answered in unixtime): compare as times.
                other = hourly_times(location, where)
                if other.shape != times.shape or not np.array_equal(other, times):
                    raise FeedError(
                        f"{where}: hourly.time differs from location {reference} "
                        f"({_describe_axis(other)} vs {_describe_axis(times)})"
                    )
            hours = len(times)
        except FeedError as error:
            fatal.append((index, error.reason.removeprefix(f"{where}: ")))
        if not isinstance(hourly, Mapping) or not isinstance(hourly_units, Mapping):
            continue
        for name in names:  # checked even without a usable axis: every problem is told
            key = (id(hourly), id(hourly_units), name, hours)  # a replay repeats locations
            read = seen[key] = seen.get(key) or _variable(hourly, hourly_units, name, hours)
            values, problems = read
            masked.extend((index, problem) for problem in problems)
            if values is not None and hours is not None:
                arrays[name][index] = values
                units.setdefault(name, str(hourly_units.get(name)))
                delivered[name] += 1

    if fatal:
        found = at_locations(fatal, labels) + at_locations(masked, labels)
        raise FeedError("; ".join(found), found)
    if times is None:  # no points asked for
        times = np.empty(0, dtype="datetime64[s]")
    said = tuple(at_locations(masked, labels))
    if said:
        log.warning("%s: masked as missing: %s", source, "; ".join(said))
    arrays = {name: values for name, values in arrays.items() if delivered[name]}
    batch = ForecastBatch(
        source=source,
        issued_at=issued_at.astimezone(UTC),
        point_ids=tuple(ids),
        latitudes=np.array([point.latitude for point in points], dtype=np.float64),
        longitudes=np.array([point.longitude for point in points], dtype=np.float64),
        times=times,
        variables=arrays,
        units=units,
        problems=said,
    )
    log_missing_values(batch)
    return batch


def _variable(
    hourly: Mapping[str, object], hourly_units: Mapping[str, object], name: str, hours: int | None
) -> tuple[FloatArray | None, list[str]]:
    """One variable of one location: its values when usable, and every problem with it."""
    problems = []
    values: FloatArray | None = None
    try:
        values = _values(hourly.get(name), name, hours)
    except FeedError as error:
        problems.append(error.reason)
    unit = hourly_units.get(name)
    if unit is None and hourly.get(name) is None:
        return None, problems  # the variable is missing, its unit with it: one problem
    if unit not in EXPECTED_UNITS[name]:
        expected = " or ".join(repr(u) for u in sorted(EXPECTED_UNITS[name]))
        # a value in another unit is never converted nor guessed at: it is missing
        problems.append(f"hourly_units.{name} is {unit!r}, expected {expected}")
        values = None
    return values, problems


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
    wrong = [
        f"location {index}: is a JSON {type(item).__name__}, expected object"
        for index, item in enumerate(items)
        if not isinstance(item, Mapping)
    ]
    if wrong:
        raise FeedError("; ".join(wrong), wrong)
    return [item for item in items if isinstance(item, Mapping)]


def _section(location: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    section = location.get(key)
    if not isinstance(section, Mapping):
        raise FeedError(f"{where}: {key} is missing or not an object")
    return section


def hourly_times(location: Mapping[str, object], where: str) -> npt.NDArray[np.datetime64]:
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


def _values(raw: object, name: str, hours: int | None) -> FloatArray:
    """One variable's hourly values as float64; null/NaN/±inf become NaN.

    `hours` None (no usable time axis): the length is not checked."""
    if raw is None:
        raise FeedError(f"hourly.{name} is missing")
    if not isinstance(raw, list):
        raise FeedError(f"hourly.{name} is not a list")
    if hours is not None and len(raw) != hours:
        raise FeedError(f"hourly.{name} has {len(raw)} values, expected {hours}")
    # A type scan first: numpy would silently turn "1.5" into 1.5 and True into 1.0.
    if not set(map(type, raw)) <= _NUMBER_TYPES:
        index, value = next((k, v) for k, v in enumerate(raw) if type(v) not in _NUMBER_TYPES)
        raise FeedError(f"hourly.{name}[{index}] is {value!r}, expected a number or null")
    try:
        values = np.array(raw, dtype=np.float64)
    except OverflowError:
        raise FeedError(f"hourly.{name} has a number out of range") from None
    values[~np.isfinite(values)] = np.nan
    return values


def _describe_axis(times: npt.NDArray[np.datetime64]) -> str:
    return f"{len(times)} hours from {times[0]}" if len(times) else "empty"


def utc_datetime(moment: npt.NDArray[np.datetime64] | np.datetime64) -> datetime:
    """A naive-UTC datetime64 as an aware UTC datetime."""
    seconds = int(np.asarray(moment).astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
