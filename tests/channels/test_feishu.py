"""Feishu custom bot: the signed body, mentions, limits and code classification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.feishu import FeishuBot, FeishuChannel

HOOK_ID = "2f0c8b7a-5e4d-4c3b-9a1f-0e9d8c7b6a5f"
SECRET = "qTd7hZ2mW9xK4vB1nR6sY3pL8cF5gJ0a"
HOOK_URL = f"https://open.feishu.cn/open-apis/bot/v2/hook/{HOOK_ID}"
NOW = 1767657600.9  # seconds; Feishu wants whole seconds

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:robot:duty-room:feishu",
    address="duty-room",
    body="【柳林县自然资源局】寒潮黄色预警：12个隐患点今夜降温10℃以上。请值班员确认。编号Y7K2",
)


def expected_sign(timestamp: str, secret: str) -> str:
    """DOMAIN.md: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    mac = hmac.new((timestamp + "\n" + secret).encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def success() -> dict[str, Any]:
    return {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}


@pytest.fixture
def feishu() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make_channel(
    http: httpx.AsyncClient, secret: str | None = SECRET, **overrides: Any
) -> FeishuChannel:
    bot = FeishuBot(
        hook_id=SecretStr(HOOK_ID), secret=SecretStr(secret) if secret is not None else None
    )
    arguments: dict[str, Any] = {"bots": {"duty-room": bot}, "http": http, "clock": lambda: NOW}
    return FeishuChannel(**(arguments | overrides))


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# --- the signed body


async def test_posts_to_the_bots_hook_url(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    await make_channel(http).send(WARNING)

    assert route.call_count == 1


async def test_the_body_carries_the_timestamp_in_seconds_and_its_signature(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    await make_channel(http).send(WARNING)

    body = sent_json(route)
    assert body["timestamp"] == "1767657600"
    assert body["sign"] == expected_sign("1767657600", SECRET)


async def test_sends_the_warning_as_text(http: httpx.AsyncClient, feishu: respx.MockRouter) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    await make_channel(http).send(WARNING)

    body = sent_json(route)
    assert (body["msg_type"], body["content"]) == ("text", {"text": WARNING.body})


async def test_a_bot_without_a_secret_sends_no_signature(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    await make_channel(http, secret=None).send(WARNING)

    assert sent_json(route) == {"msg_type": "text", "content": {"text": WARNING.body}}


async def test_mentions_are_appended_as_at_tags_by_user_id(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())
    message = OutgoingMessage(
        "k", "duty-room", "测试", mentions=("ou_7d8a6e6df7621556ce0d21922b676706", "all")
    )

    await make_channel(http).send(message)

    assert sent_json(route)["content"]["text"] == (
        '测试\n<at user_id="ou_7d8a6e6df7621556ce0d21922b676706"></at> '
        '<at user_id="all">所有人</at>'
    )


async def test_a_mention_cannot_break_out_of_its_tag(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    await make_channel(http).send(OutgoingMessage("k", "duty-room", "测试", mentions=('x"><b',)))

    assert '<at user_id="x&quot;&gt;&lt;b"></at>' in sent_json(route)["content"]["text"]


# --- classification


async def test_code_0_is_ok(http: httpx.AsyncClient, feishu: respx.MockRouter) -> None:
    feishu.post(HOOK_URL).respond(200, json=success())

    assert await make_channel(http).send(WARNING) == SendResult.ok()


async def test_an_older_status_code_answer_is_understood(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    feishu.post(HOOK_URL).respond(200, json={"StatusCode": 0, "StatusMessage": "success"})

    assert (await make_channel(http).send(WARNING)).outcome is Outcome.OK


async def test_frequency_limit_11232_is_retryable_after_a_minute(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    feishu.post(HOOK_URL).respond(200, json={"code": 11232, "msg": "frequency limited"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code, result.retry_after) == (
        Outcome.RETRYABLE,
        "11232",
        60.0,
    )


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 19021, "sign match fail or timestamp is not within one hour from current time"),
        (200, 19024, "Key Words Not Found"),
        (400, 19001, "param invalid: incoming webhook access token invalid"),
    ],
)
async def test_rejections_are_permanent_with_the_code_and_message(
    http: httpx.AsyncClient, feishu: respx.MockRouter, status: int, code: int, message: str
) -> None:
    feishu.post(HOOK_URL).respond(status, json={"code": code, "data": {}, "msg": message})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, str(code))
    assert message in result.reason


@pytest.mark.parametrize("status", [429, 500, 504])
async def test_http_429_and_5xx_without_a_code_are_retryable_honouring_retry_after(
    http: httpx.AsyncClient, feishu: respx.MockRouter, status: int
) -> None:
    feishu.post(HOOK_URL).respond(status, text="", headers={"Retry-After": "3"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, 3.0)


async def test_a_connection_error_is_retryable(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    feishu.post(HOOK_URL).mock(side_effect=httpx.ConnectError("refused"))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "connection_error")


async def test_an_unknown_bot_is_permanent_without_a_request(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    result = await make_channel(http).send(OutgoingMessage("k", "elsewhere", "测试"))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "unknown_bot")
    assert route.call_count == 0


# --- limits


async def test_declares_5_per_second_and_100_per_minute_per_bot(http: httpx.AsyncClient) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "feishu"
    limits = channel.limits
    assert (limits.per_second, limits.per_minute, limits.rate_scope) == (5.0, 100, "address")


async def test_text_at_the_declared_limit_fits_the_20_kb_body(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())
    channel = make_channel(http)
    assert channel.limits.max_bytes == 19 * 1024
    body = "预" * (channel.limits.max_bytes // 3)

    result = await channel.send(OutgoingMessage("k", "duty-room", body, mentions=("all",)))

    assert result.outcome is Outcome.OK
    assert len(route.calls.last.request.content) <= 20 * 1024


async def test_text_over_the_declared_limit_is_refused_not_truncated(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    route = feishu.post(HOOK_URL).respond(200, json=success())

    result = await make_channel(http).send(OutgoingMessage("k", "duty-room", "a" * (19 * 1024 + 1)))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


async def test_a_request_body_over_20_kb_is_refused(
    http: httpx.AsyncClient, feishu: respx.MockRouter
) -> None:
    # Within the text limit, but newlines double when JSON-escaped.
    route = feishu.post(HOOK_URL).respond(200, json=success())

    result = await make_channel(http).send(OutgoingMessage("k", "duty-room", "\n" * 19000))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


# --- configuration


@pytest.mark.parametrize(
    "bots",
    [{}, {"duty-room": FeishuBot(hook_id=SecretStr(""))}],
    ids=["no bot", "empty hook id"],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, bots: dict[str, FeishuBot]
) -> None:
    with pytest.raises(ValueError, match="YUJING_FEISHU_BOTS"):
        FeishuChannel(bots=bots, http=http)
