"""No channel ever puts a secret into a log record, a result, an error or a repr.

Every channel is built with known secrets and driven through each kind of
outcome — success, the provider's own rejection and rate limit (with the
secret echoed back in the answer), 429, 5xx, an unreadable answer, a timeout,
a connection error and a bug, both quoting the secret, and a message over the
limit. Logs are captured at DEBUG from every logger, httpx's request lines
(which print full URLs, where IM robots keep their keys) included.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, OutgoingMessage, SendResult
from channels.broadcast import BroadcastChannel, load_broadcast_directory, load_broadcast_profile
from channels.dingtalk import DingTalkChannel, DingTalkRobot
from channels.feishu import FeishuBot, FeishuChannel
from channels.twilio_sms import TwilioSmsChannel
from channels.twilio_voice import TwilioVoiceChannel
from channels.webhook import WebhookChannel, WebhookTarget
from channels.wecom import WeComChannel

TWILIO_SID = "AC" + "0a1b2c3d" * 4
TWILIO_TOKEN = "7e6d5c4b3a29181706f5e4d3c2b1a0f9"
TWILIO_BASIC = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
WECOM_KEY = "wecomkey-51f3a8c2-77d0-4e1b"
DING_TOKEN = "dingtoken9c8b7a6f5e4d3c2b1a0"
DING_SECRET = "SECdingsecret0f1e2d3c4b5a6978"
FEISHU_HOOK = "feishuhook-3c2b1a09-8f7e"
FEISHU_SECRET = "feishusecretQ7w8E9r0T1y2"
WEBHOOK_SECRET = "whsec-e5d4c3b2a1f0e9d8"
GATEWAY_SECRET = "gateway-secret-1a2b3c4d5e"
GATEWAY_BASIC = base64.b64encode(f"yujing:{GATEWAY_SECRET}".encode()).decode()

GATEWAY = "http://10.20.0.5:8080"
COUNTY = {
    "broadcast": {"villages": [{"township": "三交镇", "village": "三交村", "groups": ["G-1"]}]}
}


@dataclass(frozen=True)
class Case:
    """One channel, its secrets, a message it can send and its provider's own answers."""

    name: str
    secrets: tuple[str, ...]
    build: Callable[[httpx.AsyncClient], Channel]
    message: OutgoingMessage
    method: str
    url: str
    ok: Callable[[], httpx.Response]
    rejected: Callable[[str], httpx.Response]  # the provider's own refusal, quoting `str`
    throttled: Callable[[str], httpx.Response]  # the provider's own rate limit


def twilio_error(status: int, code: int, text: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": text, "status": status})


def broadcast_case(name: str, auth: dict[str, Any], **extra: Any) -> Case:
    profile = load_broadcast_profile(
        {
            "vendor": "leak-test",
            "request": {"path": "/play"},
            "auth": auth,
            "addressing": {"targets": "groups"},
            "body": {"template": {"ids": "{{ targets }}", "text": "{{ text }}"}},
            "success": {
                "json_path": "code",
                "values": [0],
                "retry_values": [9],
                "message_path": "msg",
            },
            "limits": {"max_chars": 300},
        }
    )

    def build(http: httpx.AsyncClient) -> Channel:
        return BroadcastChannel(
            profile=profile,
            directory=load_broadcast_directory(COUNTY),
            base_url=GATEWAY,
            http=http,
            secret=SecretStr(GATEWAY_SECRET),
            **extra,
        )

    return Case(
        name=name,
        secrets=(GATEWAY_SECRET, GATEWAY_BASIC),
        build=build,
        message=OutgoingMessage("k-broadcast", "三交镇/三交村", "寒潮预警测试"),
        method="POST",
        url=f"{GATEWAY}/play",
        ok=lambda: httpx.Response(200, json={"code": 0}),
        rejected=lambda s: httpx.Response(200, json={"code": 401, "msg": f"bad token {s}"}),
        throttled=lambda s: httpx.Response(200, json={"code": 9, "msg": f"busy {s}"}),
    )


CASES = [
    Case(
        name="twilio_sms",
        secrets=(TWILIO_TOKEN, TWILIO_BASIC),
        build=lambda http: TwilioSmsChannel(
            account_sid=TWILIO_SID,
            auth_token=SecretStr(TWILIO_TOKEN),
            from_number="+15005550006",
            messaging_service_sid=None,
            http=http,
        ),
        message=OutgoingMessage("k-sms", "+8613800138000", "寒潮预警测试"),
        method="POST",
        url=f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
        ok=lambda: httpx.Response(201, json={"sid": "SM" + "1" * 32}),
        rejected=lambda s: twilio_error(401, 20003, f"Authenticate {s}"),
        throttled=lambda s: twilio_error(429, 20429, f"Too Many Requests {s}"),
    ),
    Case(
        name="twilio_voice",
        secrets=(TWILIO_TOKEN, TWILIO_BASIC),
        build=lambda http: TwilioVoiceChannel(
            account_sid=TWILIO_SID,
            auth_token=SecretStr(TWILIO_TOKEN),
            from_number="+15005550006",
            public_base_url="https://yujing.example.cn",
            http=http,
        ),
        message=OutgoingMessage("k-voice", "+8613800138000", "寒潮预警测试", notification_id=5),
        method="POST",
        url=f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Calls.json",
        ok=lambda: httpx.Response(201, json={"sid": "CA" + "1" * 32}),
        rejected=lambda s: twilio_error(400, 21215, f"Account not authorized {s}"),
        throttled=lambda s: twilio_error(429, 20429, f"Too Many Requests {s}"),
    ),
    Case(
        name="wecom",
        secrets=(WECOM_KEY,),
        build=lambda http: WeComChannel(robots={"duty": SecretStr(WECOM_KEY)}, http=http),
        message=OutgoingMessage("k-wecom", "duty", "寒潮预警测试", mentions=("13800138000",)),
        method="POST",
        url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        ok=lambda: httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}),
        rejected=lambda s: httpx.Response(
            200, json={"errcode": 93000, "errmsg": f"invalid webhook url, key={s}"}
        ),
        throttled=lambda s: httpx.Response(
            200, json={"errcode": 45009, "errmsg": f"api freq out of limit {s}"}
        ),
    ),
    Case(
        name="dingtalk",
        secrets=(DING_TOKEN, DING_SECRET),
        build=lambda http: DingTalkChannel(
            robots={
                "duty": DingTalkRobot(
                    access_token=SecretStr(DING_TOKEN), secret=SecretStr(DING_SECRET)
                )
            },
            http=http,
        ),
        message=OutgoingMessage("k-ding", "duty", "寒潮预警测试", mentions=("13800138000",)),
        method="POST",
        url="https://oapi.dingtalk.com/robot/send",
        ok=lambda: httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}),
        rejected=lambda s: httpx.Response(
            200, json={"errcode": 310000, "errmsg": f"sign not match {s}"}
        ),
        throttled=lambda s: httpx.Response(
            200, json={"errcode": 130101, "errmsg": f"send too fast {s}"}
        ),
    ),
    Case(
        name="feishu",
        secrets=(FEISHU_HOOK, FEISHU_SECRET),
        build=lambda http: FeishuChannel(
            bots={
                "duty": FeishuBot(hook_id=SecretStr(FEISHU_HOOK), secret=SecretStr(FEISHU_SECRET))
            },
            http=http,
        ),
        message=OutgoingMessage("k-feishu", "duty", "寒潮预警测试"),
        method="POST",
        url=f"https://open.feishu.cn/open-apis/bot/v2/hook/{FEISHU_HOOK}",
        ok=lambda: httpx.Response(200, json={"code": 0, "msg": "success"}),
        rejected=lambda s: httpx.Response(400, json={"code": 19021, "msg": f"sign match fail {s}"}),
        throttled=lambda s: httpx.Response(
            200, json={"code": 11232, "msg": f"frequency limited {s}"}
        ),
    ),
    Case(
        name="webhook",
        secrets=(WEBHOOK_SECRET,),
        build=lambda http: WebhookChannel(
            targets={
                "office": WebhookTarget(
                    url="https://office.example.cn/hook", secret=SecretStr(WEBHOOK_SECRET)
                )
            },
            http=http,
            limits=None,
        ),
        message=OutgoingMessage("k-webhook", "office", "寒潮预警测试"),
        method="POST",
        url="https://office.example.cn/hook",
        ok=lambda: httpx.Response(204),
        rejected=lambda s: httpx.Response(401, text=f"bad signature, expected secret {s}"),
        throttled=lambda s: httpx.Response(409, text=f"in progress {s}"),
    ),
    broadcast_case("broadcast-bearer", {"type": "bearer"}),
    broadcast_case("broadcast-query", {"type": "query", "param": "token"}),
    broadcast_case("broadcast-basic", {"type": "basic"}, username="yujing"),
    broadcast_case("broadcast-hmac", {"type": "hmac", "signature_header": "X-Sign"}),
]


def answers(secret: str) -> dict[str, Callable[[Case], httpx.Response | Exception]]:
    """Each kind of outcome a provider can produce, quoting `secret` wherever it can."""
    return {
        "ok": lambda case: case.ok(),
        "rejected": lambda case: case.rejected(secret),
        "throttled": lambda case: case.throttled(secret),
        "429": lambda case: httpx.Response(429, headers={"Retry-After": "5"}, text=secret),
        "500": lambda case: httpx.Response(500, text=f"upstream said {secret}"),
        "unreadable": lambda case: httpx.Response(200, text=f"<html>{secret}</html>"),
        "timeout": lambda case: httpx.ReadTimeout(f"timed out reading {secret}"),
        "connection": lambda case: httpx.ConnectError(f"proxy refused Authorization {secret}"),
        "bug": lambda case: RuntimeError(f"boom {secret}"),
    }


OUTCOMES = [*answers(""), "too long"]


@pytest.fixture
def provider() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def assert_no_secret(case: Case, *texts: object) -> None:
    for text in texts:
        for secret in case.secrets:
            assert secret not in str(text), f"{case.name} leaked a secret into: {text!r}"


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_no_secret_in_logs_results_or_reprs(
    case: Case,
    outcome: str,
    http: httpx.AsyncClient,
    provider: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = case.build(http)
    route = provider.route(method=case.method, url__startswith=case.url)
    message = case.message
    if outcome == "too long":
        message = OutgoingMessage(message.idempotency_key, message.address, "预" * 30_000)
        route.respond(200)
    else:
        # The provider quotes the first secret back; every secret is checked.
        answer = answers(case.secrets[0])[outcome](case)
        if isinstance(answer, Exception):
            route.mock(side_effect=answer)
        else:
            route.mock(return_value=answer)

    with caplog.at_level(logging.DEBUG):
        result = await channel.send(message)

    assert isinstance(result, SendResult)
    assert outcome == "too long" or route.call_count == 1, "the failure was never forced"
    assert_no_secret(case, result.reason, result.error_code, result.provider_id)
    assert_no_secret(case, repr(result), str(result), repr(channel), str(channel))
    assert_no_secret(case, caplog.text)
    for record in caplog.records:
        assert_no_secret(case, record.getMessage(), record.exc_text or "")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_the_httpx_request_line_was_captured_and_shows_no_secret(
    case: Case,
    http: httpx.AsyncClient,
    provider: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Guards the test above: the URL-bearing log line is really there to check.
    channel = case.build(http)
    provider.route(method=case.method, url__startswith=case.url).mock(return_value=case.ok())

    with caplog.at_level(logging.DEBUG):
        await channel.send(case.message)

    request_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("HTTP Request" in line for line in request_lines)
    assert_no_secret(case, *request_lines)


MISCONFIGURED: list[tuple[str, tuple[str, ...], Callable[[httpx.AsyncClient], object]]] = [
    (
        "twilio without a sender",
        (TWILIO_TOKEN,),
        lambda http: TwilioSmsChannel(
            account_sid=TWILIO_SID,
            auth_token=SecretStr(TWILIO_TOKEN),
            from_number=None,
            messaging_service_sid=None,
            http=http,
        ),
    ),
    (
        "voice without a public URL",
        (TWILIO_TOKEN,),
        lambda http: TwilioVoiceChannel(
            account_sid=TWILIO_SID,
            auth_token=SecretStr(TWILIO_TOKEN),
            from_number="+15005550006",
            public_base_url="",
            http=http,
        ),
    ),
    (
        "wecom with one empty key",
        (WECOM_KEY,),
        lambda http: WeComChannel(
            robots={"duty": SecretStr(WECOM_KEY), "other": SecretStr("")}, http=http
        ),
    ),
    (
        "dingtalk with one empty token",
        (DING_TOKEN, DING_SECRET),
        lambda http: DingTalkChannel(
            robots={
                "duty": DingTalkRobot(SecretStr(DING_TOKEN), SecretStr(DING_SECRET)),
                "other": DingTalkRobot(SecretStr("")),
            },
            http=http,
        ),
    ),
    (
        "feishu with one empty hook",
        (FEISHU_HOOK, FEISHU_SECRET),
        lambda http: FeishuChannel(
            bots={
                "duty": FeishuBot(SecretStr(FEISHU_HOOK), SecretStr(FEISHU_SECRET)),
                "other": FeishuBot(SecretStr("")),
            },
            http=http,
        ),
    ),
    (
        "webhook with a bad URL",
        (WEBHOOK_SECRET,),
        lambda http: WebhookChannel(
            targets={"office": WebhookTarget(url="ftp://x", secret=SecretStr(WEBHOOK_SECRET))},
            http=http,
        ),
    ),
    (
        "broadcast with a bad base URL",
        (GATEWAY_SECRET,),
        lambda http: BroadcastChannel(
            profile=load_broadcast_profile(
                {
                    "vendor": "v",
                    "request": {"path": "/p"},
                    "auth": {"type": "bearer"},
                    "addressing": {"targets": "groups"},
                    "body": {"template": {"t": "{{ text }}"}},
                }
            ),
            directory=load_broadcast_directory(COUNTY),
            base_url="10.20.0.5",
            http=http,
            secret=SecretStr(GATEWAY_SECRET),
        ),
    ),
]


@pytest.mark.parametrize(("label", "secrets", "build"), MISCONFIGURED, ids=lambda x: x)
async def test_configuration_errors_show_no_secret(
    label: str,
    secrets: tuple[str, ...],
    build: Callable[[httpx.AsyncClient], object],
    http: httpx.AsyncClient,
) -> None:
    with pytest.raises(ValueError) as error:
        build(http)

    for secret in secrets:
        assert secret not in str(error.value), label
        assert secret not in repr(error.value), label


def test_credential_records_show_no_secret() -> None:
    records = [
        DingTalkRobot(SecretStr(DING_TOKEN), SecretStr(DING_SECRET)),
        FeishuBot(SecretStr(FEISHU_HOOK), SecretStr(FEISHU_SECRET)),
        WebhookTarget(url="https://office.example.cn/hook", secret=SecretStr(WEBHOOK_SECRET)),
    ]

    text = " ".join(repr(r) + str(r) for r in records)

    for secret in (DING_TOKEN, DING_SECRET, FEISHU_HOOK, FEISHU_SECRET, WEBHOOK_SECRET):
        assert secret not in text
