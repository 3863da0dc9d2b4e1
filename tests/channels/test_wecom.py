"""WeCom group robot: the request, the byte limits, and errcode classification."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.wecom import WeComChannel

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
SEND_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:robot:duty-room:wecom",
    address="duty-room",
    body="【柳林县自然资源局】寒潮黄色预警：12个隐患点今夜降温10℃以上。请值班员确认。编号Y7K2",
    mentions=("+8613800138000", "+8613900139000"),
)


def ok() -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok"}


@pytest.fixture
def wecom() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make_channel(http: httpx.AsyncClient, **overrides: Any) -> WeComChannel:
    arguments: dict[str, Any] = {"robots": {"duty-room": SecretStr(KEY)}, "http": http}
    return WeComChannel(**(arguments | overrides))


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# --- the request


async def test_posts_to_the_robots_webhook_with_its_key(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    assert request.url.params["key"] == KEY
    assert request.headers["Content-Type"].startswith("application/json")


async def test_sends_text_mentioning_the_people_on_duty_by_mobile(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())

    await make_channel(http).send(WARNING)

    assert sent_json(route) == {
        "msgtype": "text",
        "text": {
            "content": WARNING.body,
            "mentioned_mobile_list": ["+8613800138000", "+8613900139000"],
        },
    }


async def test_a_message_without_mentions_sends_no_mention_list(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())

    await make_channel(http).send(OutgoingMessage("k", "duty-room", "测试"))

    assert sent_json(route) == {"msgtype": "text", "text": {"content": "测试"}}


async def test_markdown_mode_sends_markdown_content(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())

    await make_channel(http, msgtype="markdown").send(WARNING)

    assert sent_json(route) == {"msgtype": "markdown", "markdown": {"content": WARNING.body}}


async def test_each_robot_is_posted_with_its_own_key(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())
    robots = {"duty-room": SecretStr(KEY), "leaders": SecretStr("leaders-key-0001")}

    await make_channel(http, robots=robots).send(OutgoingMessage("k", "leaders", "测试"))

    assert route.calls.last.request.url.params["key"] == "leaders-key-0001"


async def test_an_unknown_robot_is_permanent_without_a_request(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())

    result = await make_channel(http).send(OutgoingMessage("k", "no-such-robot", "测试"))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "unknown_robot")
    assert route.call_count == 0


# --- classification


async def test_errcode_0_is_ok(http: httpx.AsyncClient, wecom: respx.MockRouter) -> None:
    wecom.post(SEND_URL).respond(200, json=ok())

    assert await make_channel(http).send(WARNING) == SendResult.ok()


async def test_rate_limit_45009_is_retryable_after_a_minute(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    wecom.post(SEND_URL).respond(200, json={"errcode": 45009, "errmsg": "api freq out of limit"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code, result.retry_after) == (
        Outcome.RETRYABLE,
        "45009",
        60.0,
    )


async def test_system_busy_is_retryable(http: httpx.AsyncClient, wecom: respx.MockRouter) -> None:
    wecom.post(SEND_URL).respond(200, json={"errcode": -1, "errmsg": "system busy"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "-1")


@pytest.mark.parametrize(
    ("errcode", "errmsg"),
    [
        (40058, "content exceed max length 2048"),
        (93000, "invalid webhook url"),
        (40008, "invalid message type"),
    ],
)
async def test_rejections_are_permanent_with_the_errcode_and_message(
    http: httpx.AsyncClient, wecom: respx.MockRouter, errcode: int, errmsg: str
) -> None:
    wecom.post(SEND_URL).respond(200, json={"errcode": errcode, "errmsg": errmsg})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, str(errcode))
    assert errmsg in result.reason


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_http_429_and_5xx_without_an_errcode_are_retryable(
    http: httpx.AsyncClient, wecom: respx.MockRouter, status: int
) -> None:
    wecom.post(SEND_URL).respond(status, text="<html>busy</html>", headers={"Retry-After": "7"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, 7.0)


async def test_http_403_without_an_errcode_is_permanent(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    wecom.post(SEND_URL).respond(403, text="Forbidden")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "http_403")


async def test_a_200_that_is_not_wecoms_json_is_retryable(
    http: httpx.AsyncClient, wecom: respx.MockRouter
) -> None:
    wecom.post(SEND_URL).respond(200, text="<html>captive portal</html>")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "unreadable")


@pytest.mark.parametrize(
    "error", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("no")]
)
async def test_network_failures_are_retryable(
    http: httpx.AsyncClient, wecom: respx.MockRouter, error: Exception
) -> None:
    wecom.post(SEND_URL).mock(side_effect=error)

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE


# --- limits


async def test_text_declares_2048_bytes_and_20_per_minute_per_robot(
    http: httpx.AsyncClient,
) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "wecom"
    limits = channel.limits
    assert (limits.max_bytes, limits.per_minute, limits.rate_scope) == (2048, 20, "address")


async def test_markdown_declares_4096_bytes(http: httpx.AsyncClient) -> None:
    assert make_channel(http, msgtype="markdown").limits.max_bytes == 4096


@pytest.mark.parametrize(("msgtype", "limit"), [("text", 2048), ("markdown", 4096)])
async def test_content_at_the_byte_limit_is_sent(
    http: httpx.AsyncClient, wecom: respx.MockRouter, msgtype: str, limit: int
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())
    body = "预" * (limit // 3) + "a" * (limit % 3)  # 3 bytes per Chinese character

    result = await make_channel(http, msgtype=msgtype).send(OutgoingMessage("k", "duty-room", body))

    assert len(body.encode()) == limit
    assert (result.outcome, route.call_count) == (Outcome.OK, 1)


@pytest.mark.parametrize(("msgtype", "limit"), [("text", 2048), ("markdown", 4096)])
async def test_content_one_byte_over_is_refused_not_truncated(
    http: httpx.AsyncClient, wecom: respx.MockRouter, msgtype: str, limit: int
) -> None:
    route = wecom.post(SEND_URL).respond(200, json=ok())
    body = "预" * (limit // 3) + "a" * (limit % 3 + 1)

    result = await make_channel(http, msgtype=msgtype).send(OutgoingMessage("k", "duty-room", body))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


# --- configuration


@pytest.mark.parametrize(
    "robots", [{}, {"duty-room": SecretStr("")}], ids=["no robot", "empty key"]
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, robots: dict[str, SecretStr]
) -> None:
    with pytest.raises(ValueError, match="YUJING_WECOM_ROBOTS"):
        make_channel(http, robots=robots)
