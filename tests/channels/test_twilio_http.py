"""The httpx-backed twilio HTTP clients: twilio builds the request, httpx sends it."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.rest import Client

from channels.twilio_http import AsyncHttpxTwilioClient, HttpxTwilioClient, rebase_url

ACCOUNT_SID = "AC" + "3f" * 16
AUTH_TOKEN = "9c1e5b7d2a4f6e8c0b3d5f7a9e1c3b5d"
MESSAGE_SID = "SM" + "a1" * 16
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"sid": MESSAGE_SID, "status": "queued"})


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8099", "http://127.0.0.1:8099/2010-04-01/x.json?a=1"),
        ("http://fake.test/twilio/", "http://fake.test/twilio/2010-04-01/x.json?a=1"),
        ("http://fake.test/twilio", "http://fake.test/twilio/2010-04-01/x.json?a=1"),
        ("https://fake.test:8443/", "https://fake.test:8443/2010-04-01/x.json?a=1"),
    ],
)
def test_rebase_url_moves_scheme_host_and_port_onto_the_base(base: str, expected: str) -> None:
    url = "https://api.twilio.com/2010-04-01/x.json?a=1"

    assert rebase_url(url, httpx.URL(base)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twilio.com",
        "https://api.twilio.com/",
        "https://messaging.twilio.com/v1/Services/MG1/PhoneNumbers.json?PageSize=50&x=%20y",
        "https://user@api.twilio.com:443/2010-04-01/Calls.json",
    ],
)
def test_rebase_url_keeps_path_and_query_exactly(url: str) -> None:
    base = httpx.URL("http://127.0.0.1:8099/fake/")
    original = httpx.URL(url)
    moved = httpx.URL(rebase_url(url, base))

    assert (moved.scheme, moved.host, moved.port) == ("http", "127.0.0.1", 8099)
    assert moved.raw_path == b"/fake" + original.raw_path


def test_rebase_url_without_a_base_leaves_the_url_alone() -> None:
    assert rebase_url(MESSAGES_URL, None) == MESSAGES_URL


@pytest.mark.parametrize("base", ["ftp://example.com", "api.twilio.com", "http://"])
async def test_an_api_base_that_is_not_an_http_url_is_refused(base: str) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="not an http"):
            AsyncHttpxTwilioClient(http, api_base=base)


async def test_create_async_goes_through_the_shared_async_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return created(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=AsyncHttpxTwilioClient(http))

        message = await client.messages.create_async(
            to="+8613800138000", from_="+15005550006", body="测试"
        )

    assert message.sid == MESSAGE_SID
    [request] = seen
    assert request.url == MESSAGES_URL
    assert parse_qs(request.content.decode()) == {
        "To": ["+8613800138000"],
        "From": ["+15005550006"],
        "Body": ["测试"],
    }


async def test_the_async_client_declares_itself_async_for_twilio() -> None:
    # twilio's Client.request_async refuses clients whose is_async is false.
    async with httpx.AsyncClient() as http:
        assert AsyncHttpxTwilioClient(http).is_async is True


async def test_no_timeout_from_twilio_keeps_the_shared_clients_timeouts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return created(request)

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, timeout=3.5) as http:
        await AsyncHttpxTwilioClient(http).request("POST", MESSAGES_URL, data={"To": "+1"})
        await AsyncHttpxTwilioClient(http).request("POST", MESSAGES_URL, timeout=1.25)

    assert seen[0].extensions["timeout"]["read"] == 3.5
    assert seen[1].extensions["timeout"]["read"] == 1.25


async def test_a_json_content_type_sends_the_data_as_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        await AsyncHttpxTwilioClient(http).request(
            "POST", MESSAGES_URL, data={"a": [1, 2]}, headers={"Content-Type": "application/json"}
        )

    assert json.loads(seen[0].content) == {"a": [1, 2]}


async def test_the_response_keeps_status_text_and_case_insensitive_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, text='{"code": 20429}', headers={"Retry-After": "7"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        response = await AsyncHttpxTwilioClient(http).request("POST", MESSAGES_URL)

    assert (response.status_code, response.ok, response.text) == (429, False, '{"code": 20429}')
    assert response.headers["retry-after"] == "7"


async def test_last_response_is_kept_per_asyncio_task() -> None:
    # Two concurrent requests on one client; the slower one answers last, yet
    # each task must see its own response (Retry-After comes from it).
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["n"] == "slow":
            await release.wait()
            return httpx.Response(500)
        release.set()
        return httpx.Response(201)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        twilio_http = AsyncHttpxTwilioClient(http)

        async def call(n: str) -> int | None:
            await twilio_http.request("GET", MESSAGES_URL, params={"n": n})
            last = twilio_http.last_response
            return None if last is None else int(last.status_code)

        slow, fast = await asyncio.gather(call("slow"), call("fast"))

    assert (slow, fast) == (500, 201)


async def test_last_response_is_cleared_when_a_request_fails_without_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200)
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        twilio_http = AsyncHttpxTwilioClient(http)
        await twilio_http.request("GET", MESSAGES_URL)
        with pytest.raises(httpx.ConnectError):
            await twilio_http.request("POST", MESSAGES_URL)

    assert twilio_http.last_response is None


def test_the_sync_client_serves_twilios_synchronous_calls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return created(request)

    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport) as http:
        twilio_http = HttpxTwilioClient(http, api_base="http://127.0.0.1:8099")
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=twilio_http)

        message = client.messages.create(to="+8613800138000", from_="+15005550006", body="测试")

    assert message.sid == MESSAGE_SID
    assert twilio_http.is_async is False
    assert str(seen[0].url).startswith("http://127.0.0.1:8099/2010-04-01/Accounts/")
    assert seen[0].headers["Authorization"].startswith("Basic ")
