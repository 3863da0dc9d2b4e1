"""OpenMeteoFeed: batching, request parameters, retries and error handling.

HTTP is mocked with respx at the edge; waiting is a recorded fake sleep.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx
from pydantic import SecretStr

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.openmeteo import OpenMeteoFeed

URL = "https://api.open-meteo.com/v1/forecast"
DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 1, 3, 0, 5, tzinfo=UTC)
VARIABLES = {"temperature_2m", "weather_code", "wind_speed_10m"}
POINTS = [
    ForecastPoint(f"p37.{41 + 2 * k:02d}00_110.8900", round(37.41 + 0.02 * k, 4), 110.89)
    for k in range(5)
]


def location(latitude: float, longitude: float) -> dict[str, Any]:
    """A recorded one-location answer (unixtime) moved to the given grid cell."""
    recorded = json.loads((DATA / "single_unixtime.json").read_text(encoding="utf-8"))
    return {**recorded, "latitude": latitude + 0.0004, "longitude": longitude - 0.0003}


def two_locations() -> httpx.Response:
    """A good answer for POINTS[:2]."""
    return httpx.Response(200, json=[location(37.41, 110.89), location(37.43, 110.89)])


def answer(request: httpx.Request) -> httpx.Response:
    """Open-Meteo's shape: one object for one location, a list for several."""
    lats = [float(v) for v in request.url.params["latitude"].split(",")]
    lons = [float(v) for v in request.url.params["longitude"].split(",")]
    locations = [location(lat, lon) for lat, lon in zip(lats, lons, strict=True)]
    return httpx.Response(200, json=locations[0] if len(locations) == 1 else locations)


class FakeSleep:
    """Records requested delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def make_feed(client: httpx.AsyncClient, sleep: FakeSleep) -> Callable[..., OpenMeteoFeed]:
    def make(**overrides: Any) -> OpenMeteoFeed:
        options: dict[str, Any] = {
            "url": URL,
            "api_key": None,
            "batch_size": 50,
            "forecast_days": 7,
            "past_days": 3,
            "retries": 4,
            "backoff_seconds": 2.0,
            "sleep": sleep,
            "clock": lambda: NOW,
        }
        options.update(overrides)
        return OpenMeteoFeed(client, **options)

    return make


@respx.mock
async def test_points_are_fetched_in_batches(make_feed: Callable[..., OpenMeteoFeed]) -> None:
    route = respx.get(URL).mock(side_effect=answer)

    batch = await make_feed(batch_size=2).fetch(POINTS, VARIABLES)

    assert route.call_count == 3
    sent = sorted(call.request.url.params["latitude"] for call in route.calls)
    assert sent == ["37.4100,37.4300", "37.4500,37.4700", "37.4900"]
    assert batch.point_ids == tuple(p.id for p in POINTS)
    assert batch.shape == (5, 24)


@respx.mock
async def test_request_asks_only_for_what_is_needed_in_si_units_and_gmt(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    route = respx.get(URL).mock(side_effect=answer)

    await make_feed().fetch(POINTS[:2], VARIABLES)

    params = route.calls.last.request.url.params
    assert params["latitude"] == "37.4100,37.4300"
    assert params["longitude"] == "110.8900,110.8900"
    assert params["hourly"] == "temperature_2m,weather_code,wind_speed_10m"
    assert params["timezone"] == "GMT"
    assert params["wind_speed_unit"] == "ms"
    assert params["forecast_days"] == "7"
    assert params["past_days"] == "3"
    assert "apikey" not in params


@respx.mock
async def test_api_key_is_sent_when_configured(make_feed: Callable[..., OpenMeteoFeed]) -> None:
    route = respx.get(URL).mock(side_effect=answer)

    await make_feed(api_key=SecretStr("k-123")).fetch(POINTS[:1], VARIABLES)

    assert route.calls.last.request.url.params["apikey"] == "k-123"


@respx.mock
async def test_single_object_answer_for_one_point(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, json=location(37.41, 110.89)))

    batch = await make_feed().fetch(POINTS[:1], VARIABLES)

    assert batch.point_ids == (POINTS[0].id,)
    assert batch.variables["temperature_2m"][0, 0] == pytest.approx(-2.1)
    assert batch.source == "open-meteo"
    assert batch.issued_at == NOW


@respx.mock
async def test_list_answer_keeps_request_order(make_feed: Callable[..., OpenMeteoFeed]) -> None:
    first, second = location(37.41, 110.89), location(37.43, 110.89)
    second["hourly"] = {**second["hourly"], "temperature_2m": [-9.0] * 24}
    respx.get(URL).mock(return_value=httpx.Response(200, json=[first, second]))

    batch = await make_feed().fetch(POINTS[:2], VARIABLES)

    assert batch.variables["temperature_2m"][0, 0] == pytest.approx(-2.1)
    assert np.all(batch.variables["temperature_2m"][1] == -9.0)


@respx.mock
async def test_batches_are_fetched_concurrently_but_bounded(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    in_flight, peak = 0, 0

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return answer(request)

    respx.get(URL).mock(side_effect=slow_answer)
    points = [ForecastPoint(f"p{k}", 30.0 + k * 0.1, 110.0) for k in range(10)]

    await make_feed(batch_size=1, max_concurrency=3).fetch(points, VARIABLES)

    assert peak == 3


@respx.mock
async def test_error_body_is_not_retried_and_its_reason_is_reported(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    reason = "Cannot initialize WeatherVariable from invalid String value tempeture_2m"
    route = respx.get(URL).mock(
        return_value=httpx.Response(400, json={"error": True, "reason": reason})
    )

    with pytest.raises(FeedError, match="HTTP 400: Cannot initialize WeatherVariable"):
        await make_feed().fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 1
    assert sleep.calls == []


@respx.mock
async def test_429_waits_for_retry_after_then_succeeds(
    make_feed: Callable[..., OpenMeteoFeed],
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": True, "reason": "Minutely API request limit exceeded"},
    )
    route = respx.get(URL).mock(side_effect=[limited, two_locations()])

    with caplog.at_level(logging.WARNING, logger="yujing.feed"):
        batch = await make_feed().fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 2
    assert sleep.calls == [7.0]
    assert batch.shape == (2, 24)
    assert "HTTP 429 (Minutely API request limit exceeded)" in caplog.text


@respx.mock
async def test_retry_after_as_http_date_is_honoured(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "Sat, 03 Jan 2026 00:05:30 GMT"})
    respx.get(URL).mock(side_effect=[limited, two_locations()])

    await make_feed().fetch(POINTS[:2], VARIABLES)

    assert sleep.calls == [30.0]


@respx.mock
async def test_a_retry_after_longer_than_allowed_fails_the_poll_at_once(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    daily = httpx.Response(
        429,
        headers={"Retry-After": "3600"},
        json={"error": True, "reason": "Daily API request limit exceeded"},
    )
    route = respx.get(URL).mock(return_value=daily)

    with pytest.raises(FeedError, match=r"Daily API request limit exceeded.*3600 s"):
        await make_feed().fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 1
    assert sleep.calls == []


@respx.mock
async def test_server_error_is_retried_with_backoff_then_succeeds(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    route = respx.get(URL).mock(
        side_effect=[httpx.Response(500), httpx.Response(502), two_locations()]
    )

    batch = await make_feed().fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 3
    assert sleep.calls == [2.0, 4.0]
    assert batch.shape == (2, 24)


@respx.mock
async def test_timeouts_are_retried_then_fail_after_the_last_attempt(
    make_feed: Callable[..., OpenMeteoFeed],
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = respx.get(URL).mock(side_effect=httpx.ReadTimeout)

    with (
        caplog.at_level(logging.WARNING, logger="yujing.feed"),
        pytest.raises(FeedError, match=r"timeout \(ReadTimeout\) after 4 attempts"),
    ):
        await make_feed(retries=3).fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 4
    assert sleep.calls == [2.0, 4.0, 8.0]
    assert caplog.text.count("timeout (ReadTimeout)") == 3


@respx.mock
async def test_connection_errors_are_retried(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    route = respx.get(URL).mock(side_effect=[httpx.ConnectError("refused"), two_locations()])

    await make_feed().fetch(POINTS[:2], VARIABLES)

    assert route.call_count == 2
    assert sleep.calls == [2.0]


@respx.mock
async def test_persistent_429_reports_status_and_attempts(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    respx.get(URL).mock(return_value=httpx.Response(429))

    with pytest.raises(FeedError, match=r"^HTTP 429 after 5 attempts$"):
        await make_feed().fetch(POINTS[:2], VARIABLES)


@respx.mock
async def test_the_api_key_never_appears_in_errors(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    body = {"error": True, "reason": "API key secret-k-123 is not valid"}
    respx.get(URL).mock(return_value=httpx.Response(400, json=body))

    with pytest.raises(FeedError) as raised:
        await make_feed(api_key=SecretStr("secret-k-123")).fetch(POINTS[:1], VARIABLES)

    assert "secret-k-123" not in str(raised.value)
    assert "***" in raised.value.reason


@respx.mock
async def test_one_failed_batch_fails_the_whole_poll(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    def answer_except_last(request: httpx.Request) -> httpx.Response:
        if request.url.params["latitude"] == "37.4900":
            return httpx.Response(400, json={"error": True, "reason": "Latitude invalid"})
        return answer(request)

    respx.get(URL).mock(side_effect=answer_except_last)

    with pytest.raises(FeedError, match="Latitude invalid"):
        await make_feed(batch_size=2).fetch(POINTS, VARIABLES)


@respx.mock
async def test_batches_with_different_time_axes_are_refused(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    def shifted_last_batch(request: httpx.Request) -> httpx.Response:
        if request.url.params["latitude"] != "37.4900":
            return answer(request)
        late = location(37.49, 110.89)
        late["hourly"] = {**late["hourly"], "time": [t + 3600 for t in late["hourly"]["time"]]}
        return httpx.Response(200, json=late)

    respx.get(URL).mock(side_effect=shifted_last_batch)

    with pytest.raises(FeedError, match=r"location 4 \(p37.4900_110.8900\).*differs"):
        await make_feed(batch_size=2).fetch(POINTS, VARIABLES)


@respx.mock
async def test_a_response_with_too_few_locations_is_refused(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, json=[location(37.41, 110.89)] * 2))

    with pytest.raises(FeedError, match="3 points returned 2 locations"):
        await make_feed().fetch(POINTS[:3], VARIABLES)


@respx.mock
async def test_a_malformed_answer_is_refused_not_retried(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    bad = location(37.41, 110.89)
    bad["hourly"] = {**bad["hourly"], "time": list(reversed(bad["hourly"]["time"]))}
    bad["hourly_units"] = {**bad["hourly_units"], "wind_speed_10m": "km/h"}
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=bad))

    with pytest.raises(FeedError, match=r"not hourly ascending") as refused:
        await make_feed().fetch(POINTS[:1], VARIABLES)

    assert route.call_count == 1
    assert sleep.calls == []
    # every problem of the answer in the one message, not only the first
    assert "hourly_units.wind_speed_10m is 'km/h'" in refused.value.reason


@respx.mock
async def test_a_variable_in_another_unit_is_masked_not_retried(
    make_feed: Callable[..., OpenMeteoFeed], sleep: FakeSleep
) -> None:
    bad = location(37.41, 110.89)
    bad["hourly_units"] = {**bad["hourly_units"], "wind_speed_10m": "km/h"}
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=bad))

    batch = await make_feed().fetch(POINTS[:1], VARIABLES)

    assert route.call_count == 1
    assert sleep.calls == []
    assert "wind_speed_10m" not in batch.variables
    assert set(batch.variables) == set(VARIABLES) - {"wind_speed_10m"}
    assert batch.problems == (
        "location 0 (p37.4100_110.8900): hourly_units.wind_speed_10m is 'km/h', expected 'm/s'",
    )


@respx.mock
async def test_a_non_json_200_is_refused(make_feed: Callable[..., OpenMeteoFeed]) -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, text="<html>gateway</html>"))

    with pytest.raises(FeedError, match="not JSON"):
        await make_feed().fetch(POINTS[:1], VARIABLES)


@respx.mock
async def test_an_unknown_variable_fails_before_any_request(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    route = respx.get(URL).mock(side_effect=answer)

    with pytest.raises(FeedError, match="unknown forecast variable"):
        await make_feed().fetch(POINTS, {"temperature_2m", "cloud_cover"})

    assert not route.called


async def test_no_points_makes_no_request_and_an_empty_batch(
    make_feed: Callable[..., OpenMeteoFeed],
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(URL).mock(side_effect=answer)

        batch = await make_feed().fetch([], VARIABLES)

    assert not route.called
    assert batch.shape == (0, 0)
