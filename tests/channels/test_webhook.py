"""Generic webhook: signed JSON with an idempotency key, and status classification."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, ChannelLimits, Outcome, OutgoingMessage, SendResult
from channels.webhook import WebhookChannel, WebhookTarget

URL = "https://emergency.liulin.example.cn/hooks/yujing"
SECRET = "whsec_5b1f0c9e8d7a6b5c4d3e2f1a0b9c8d7e"
NOW = 1767657600.75

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:system:emergency-office:webhook",
    address="emergency-office",
    body="【柳林县自然资源局】寒潮黄色预警：12个隐患点今夜降温10℃以上。编号Y7K2",
    recipient_name="县应急管理局",
    notification_id=4711,
)


@pytest.fixture
def receiver() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make_channel(http: httpx.AsyncClient, **overrides: Any) -> WebhookChannel:
    arguments: dict[str, Any] = {
        "targets": {"emergency-office": WebhookTarget(url=URL, secret=SecretStr(SECRET))},
        "http": http,
        "clock": lambda: NOW,
    }
    return WebhookChannel(**(arguments | overrides))


# --- the request


async def test_posts_the_message_as_json(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).respond(204)

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    assert request.headers["Content-Type"].startswith("application/json")
    assert json.loads(request.content) == {
        "idempotency_key": WARNING.idempotency_key,
        "notification_id": 4711,
        "address": "emergency-office",
        "recipient_name": "县应急管理局",
        "body": WARNING.body,
        "mentions": [],
        "timestamp": 1767657600,
    }


async def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).respond(204)

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Yujing-Signature"] == f"sha256={expected}"


async def test_the_timestamp_header_matches_the_signed_timestamp_in_the_body(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).respond(204)

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    assert request.headers["X-Yujing-Timestamp"] == "1767657600"
    assert json.loads(request.content)["timestamp"] == 1767657600


async def test_every_retry_carries_the_same_idempotency_key(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    channel = make_channel(http)

    await channel.send(WARNING)
    await channel.send(WARNING)

    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == [WARNING.idempotency_key, WARNING.idempotency_key]


async def test_an_unknown_target_is_permanent_without_a_request(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).respond(204)

    result = await make_channel(http).send(OutgoingMessage("k", "nobody", "测试"))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "unknown_target")
    assert route.call_count == 0


# --- classification


async def test_a_2xx_is_ok_with_the_receivers_id_when_it_gives_one(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    receiver.post(URL).respond(202, json={"id": "evt_01HZX"})

    assert await make_channel(http).send(WARNING) == SendResult.ok(provider_id="evt_01HZX")


async def test_a_2xx_without_a_body_is_ok(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    receiver.post(URL).respond(204)

    assert await make_channel(http).send(WARNING) == SendResult.ok()


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503])
async def test_transient_statuses_are_retryable(
    http: httpx.AsyncClient, receiver: respx.MockRouter, status: int
) -> None:
    receiver.post(URL).respond(status)

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, f"http_{status}")


async def test_retry_after_is_honoured(http: httpx.AsyncClient, receiver: respx.MockRouter) -> None:
    receiver.post(URL).respond(429, headers={"Retry-After": "45"})

    result = await make_channel(http).send(WARNING)

    assert result.retry_after == 45.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_client_errors_are_permanent(
    http: httpx.AsyncClient, receiver: respx.MockRouter, status: int
) -> None:
    receiver.post(URL).respond(status, text="nope")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, f"http_{status}")
    assert "nope" in result.reason


@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
async def test_network_failures_are_retryable(
    http: httpx.AsyncClient, receiver: respx.MockRouter, error: Exception
) -> None:
    receiver.post(URL).mock(side_effect=error)

    assert (await make_channel(http).send(WARNING)).outcome is Outcome.RETRYABLE


# --- limits


async def test_declares_no_limits_by_default(http: httpx.AsyncClient) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "webhook"
    assert channel.limits == ChannelLimits()


async def test_declares_the_receivers_limits_and_refuses_a_longer_body(
    http: httpx.AsyncClient, receiver: respx.MockRouter
) -> None:
    route = receiver.post(URL).respond(204)
    limits = ChannelLimits(max_chars=10, per_second=2.0)
    channel = make_channel(http, limits=limits)

    result = await channel.send(OutgoingMessage("k", "emergency-office", "预" * 11))

    assert channel.limits == limits
    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


# --- configuration


@pytest.mark.parametrize(
    "targets",
    [
        {},
        {"x": WebhookTarget(url="ftp://example.cn/", secret=SecretStr(SECRET))},
        {"x": WebhookTarget(url=URL, secret=SecretStr(""))},
    ],
    ids=["no target", "not http", "empty secret"],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, targets: dict[str, WebhookTarget]
) -> None:
    with pytest.raises(ValueError, match="YUJING_WEBHOOK_TARGETS"):
        make_channel(http, targets=targets)
