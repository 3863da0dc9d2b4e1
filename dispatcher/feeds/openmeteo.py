"""The live Open-Meteo forecast feed (https://open-meteo.com/en/docs).

One GET per batch of points (multi-location request), batches fetched
concurrently on the shared client, retried on 429/5xx/timeouts/connection
errors, and the answers validated and merged by `parse_openmeteo`.

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
from pydantic import SecretStr

from dispatcher.feeds.base import FeedError, ForecastPoint, check_variables, parse_openmeteo
from rules.types import ForecastBatch

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
        attempts = self._retries + 1
        problem = "no attempt made"
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                if self._timeout is None:
                    response = await self._client.get(self._url, params=params)
                else:
                    response = await self._client.get(
                        self._url, params=params, timeout=self._timeout
                    )
            except httpx.TimeoutException as exc:
                problem = f"timeout ({type(exc).__name__})"
            except httpx.UnsupportedProtocol as exc:
                raise FeedError(self._redact(f"bad feed URL: {exc}")) from None
            except httpx.TransportError as exc:
                problem = self._redact(f"connection error ({type(exc).__name__}: {exc})")
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                # Not transient (bad URL, undecodable body): report, don't retry.
                raise FeedError(
                    self._redact(f"request failed: {type(exc).__name__}: {exc}")
                ) from None
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise FeedError("HTTP 200 but the body is not JSON") from None
                reason = self._redact(_reason(_json_or_none(response)))
                if status != 429 and status < 500:
                    # 400 with {"error": true, "reason": ...}: the request is wrong;
                    # repeating it cannot help.
                    raise FeedError(f"HTTP {status}: {reason}" if reason else f"HTTP {status}")
                problem = f"HTTP {status}" + (f" ({reason})" if reason else "")
                if status in (429, 503):
                    retry_after = _retry_after(response, self._clock())
            if attempt == attempts - 1:
                break
            delay = self._backoff * 2**attempt
            if retry_after is not None:
                if retry_after > self._max_retry_after:
                    raise FeedError(
                        f"{problem}: server asks to wait {retry_after:.0f} s (Retry-After), "
                        f"more than {self._max_retry_after:.0f} s; not retrying this poll"
                    )
                delay = retry_after
            log.warning(
                "%s: request for %d points failed: %s; retry %d of %d in %.1f s",
                self.source,
                points,
                problem,
                attempt + 1,
                self._retries,
                delay,
            )
            await self._sleep(delay)
        raise FeedError(f"{problem} after {attempts} attempts")

    def _redact(self, text: str) -> str:
        """`text` with the API key masked, should a server or exception echo it."""
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "***")
        return text


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


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
