"""DingTalk custom robot: the signed URL, @-mentions, limits and errcode classification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.dingtalk import DingTalkChannel, DingTalkRobot

ACCESS_TOKEN = "b4f3c2d1e0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3"
SECRET = "SEC3a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1"
SEND_URL = "https://oapi.dingtalk.com/robot/send"
NOW = 1767657600.123  # 2026-01-06T00:00:00.123Z
NOW_MS = "1767657600123"

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:robot:duty-room:dingtalk",
    address="duty-room",
    body="【柳林县自然资源局】寒潮黄色预警：12个隐患点今夜降温10℃以上。请值班员确认。编号Y7K2",
    mentions=("13800138000",),
)


def expected_sign(timestamp: str, secret: str) -> str:
    """DOMAIN.md: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))."""
    mac = hmac.new(secret.encode(), (timestamp + "\n" + secret).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


@pytest.fixture
def dingtalk() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make_channel(
    http: httpx.AsyncClient, secret: str | None = SECRET, **overrides: Any
) -> DingTalkChannel:
    robot = DingTalkRobot(
        access_token=SecretStr(ACCESS_TOKEN),
        secret=SecretStr(secret) if secret is not None else None,
    )
    arguments: dict[str, Any] = {"robots": {"duty-room": robot}, "http": http, "clock": lambda: NOW}
    return DingTalkChannel(**(arguments | overrides))


def errcode(code: int, message: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": message}


# --- the signed URL


async def test_the_url_carries_the_access_token_and_the_millisecond_timestamp(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http).send(WARNING)

    params = route.calls.last.request.url.params
    assert params["access_token"] == ACCESS_TOKEN
    assert params["timestamp"] == NOW_MS


async def test_the_sign_is_the_url_encoded_base64_hmac_of_timestamp_and_secret(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http).send(WARNING)

    url = route.calls.last.request.url
    sign = expected_sign(NOW_MS, SECRET)
    assert url.params["sign"] == sign
    assert f"sign={quote_plus(sign)}" in url.query.decode()


async def test_a_robot_without_a_secret_sends_no_signature(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    # Robots secured by keyword or IP allowlist instead of 加签.
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http, secret=None).send(WARNING)

    params = route.calls.last.request.url.params
    assert "sign" not in params
    assert "timestamp" not in params


async def test_the_timestamp_follows_the_clock(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http, clock=lambda: 1767657660.5).send(WARNING)

    url = route.calls.last.request.url
    assert url.params["timestamp"] == "1767657660500"
    assert url.params["sign"] == expected_sign("1767657660500", SECRET)


# --- the body


async def test_sends_text_at_mentioning_the_people_on_duty_by_mobile(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http).send(WARNING)

    assert json.loads(route.calls.last.request.content) == {
        "msgtype": "text",
        "text": {"content": WARNING.body},
        "at": {"atMobiles": ["13800138000"], "isAtAll": False},
    }


async def test_mentioning_all_sets_is_at_all(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    await make_channel(http).send(OutgoingMessage("k", "duty-room", "测试", mentions=("all",)))

    at = json.loads(route.calls.last.request.content)["at"]
    assert at == {"atMobiles": [], "isAtAll": True}


async def test_an_unknown_robot_is_permanent_without_a_request(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    result = await make_channel(http).send(OutgoingMessage("k", "elsewhere", "测试"))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "unknown_robot")
    assert route.call_count == 0


# --- classification


async def test_errcode_0_is_ok(http: httpx.AsyncClient, dingtalk: respx.MockRouter) -> None:
    dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))

    assert await make_channel(http).send(WARNING) == SendResult.ok()


@pytest.mark.parametrize("code", [130101, 410100])
async def test_over_the_limit_is_retryable_after_the_ten_minute_block(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter, code: int
) -> None:
    dingtalk.post(SEND_URL).respond(200, json=errcode(code, "send too fast"))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code, result.retry_after) == (
        Outcome.RETRYABLE,
        str(code),
        600.0,
    )


async def test_system_busy_is_retryable(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    dingtalk.post(SEND_URL).respond(200, json=errcode(-1, "系统繁忙"))

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (310000, "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"),
        (310000, "keywords not in content"),
        (300001, "token is not exist"),
        (400102, "robot is stopped"),
    ],
)
async def test_rejections_are_permanent_with_the_errcode_and_message(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter, code: int, message: str
) -> None:
    dingtalk.post(SEND_URL).respond(200, json=errcode(code, message))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, str(code))
    assert message in result.reason


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_http_429_and_5xx_are_retryable_honouring_retry_after(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter, status: int
) -> None:
    dingtalk.post(SEND_URL).respond(status, text="busy", headers={"Retry-After": "90"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, 90.0)


async def test_a_timeout_is_retryable(http: httpx.AsyncClient, dingtalk: respx.MockRouter) -> None:
    dingtalk.post(SEND_URL).mock(side_effect=httpx.ReadTimeout("slow"))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "timeout")


async def test_a_200_without_an_errcode_is_retryable(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    dingtalk.post(SEND_URL).respond(200, json={"status": "?"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "unreadable")


# --- limits


async def test_declares_20_per_minute_per_robot(http: httpx.AsyncClient) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "dingtalk"
    assert (channel.limits.per_minute, channel.limits.rate_scope) == (20, "address")
    assert channel.limits.per_second is None


async def test_content_over_the_byte_limit_is_refused_not_truncated(
    http: httpx.AsyncClient, dingtalk: respx.MockRouter
) -> None:
    route = dingtalk.post(SEND_URL).respond(200, json=errcode(0, "ok"))
    channel = make_channel(http)
    assert channel.limits.max_bytes is not None
    body = "a" * (channel.limits.max_bytes + 1)

    result = await channel.send(OutgoingMessage("k", "duty-room", body))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


# --- configuration


@pytest.mark.parametrize(
    "robots",
    [{}, {"duty-room": DingTalkRobot(access_token=SecretStr(""))}],
    ids=["no robot", "empty token"],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, robots: dict[str, DingTalkRobot]
) -> None:
    with pytest.raises(ValueError, match="YUJING_DINGTALK_ROBOTS"):
        DingTalkChannel(robots=robots, http=http)
