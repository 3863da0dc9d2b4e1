"""Twilio voice: the call request, the TwiML it reads, and how answers are classified."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.twilio_voice import TwilioVoiceChannel, warning_twiml

ACCOUNT_SID = "AC" + "4d2b5e0c" * 4
AUTH_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FROM_NUMBER = "+15005550006"
CALL_SID = "CA" + "fedcba9876543210" * 2
CALLS_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
TWILIO = "https://api.twilio.com"
PUBLIC = "https://yujing.example.cn"

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:person:zhang-wei:twilio_voice",
    address="+8613800138000",
    body="柳林县自然资源局寒潮橙色预警：三交镇王家沟滑坡隐患点今夜降温14度，请立即组织巡查。",
    recipient_name="张伟",
    notification_id=4711,
)


def call_queued() -> dict[str, Any]:
    """Twilio's 201 body for a newly created Call (abridged)."""
    return {
        "account_sid": ACCOUNT_SID,
        "sid": CALL_SID,
        "status": "queued",
        "to": WARNING.address,
        "from": FROM_NUMBER,
        "direction": "outbound-api",
    }


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status}


@pytest.fixture
def twilio_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TWILIO, assert_all_called=False) as router:
        yield router


def make_channel(http: httpx.AsyncClient, **overrides: Any) -> TwilioVoiceChannel:
    arguments: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": SecretStr(AUTH_TOKEN),
        "from_number": FROM_NUMBER,
        "public_base_url": PUBLIC,
        "http": http,
    } | overrides
    return TwilioVoiceChannel(**arguments)


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode("ascii"), strict_parsing=True)


def twiml_of(request: httpx.Request) -> ET.Element:
    [twiml] = form_of(request)["Twiml"]
    return ET.fromstring(twiml)


# --- the call request


async def test_creates_a_call_to_the_recipient_from_the_caller_id(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http).send(WARNING)

    form = form_of(route.calls.last.request)
    assert form["To"] == ["+8613800138000"]
    assert form["From"] == [FROM_NUMBER]
    assert "Url" not in form  # the TwiML goes inline: no round trip before the phone rings


async def test_the_call_reads_the_warning_twice_in_mandarin_inside_a_one_digit_gather(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http).send(WARNING)

    response = twiml_of(route.calls.last.request)
    first_gather = response[0]
    assert first_gather.tag == "Gather"
    assert first_gather.get("numDigits") == "1"
    reading = first_gather[0]
    assert (reading.tag, reading.text) == ("Say", WARNING.body)
    assert (reading.get("language"), reading.get("loop")) == ("cmn-CN", "2")
    assert reading.get("voice") == "Polly.Zhiyu"  # alice is retired for Chinese


async def test_pressing_a_key_posts_to_the_ack_route_of_this_notification(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http, public_base_url=PUBLIC + "/").send(WARNING)

    gathers = twiml_of(route.calls.last.request).findall("Gather")
    assert [g.get("action") for g in gathers] == [
        f"{PUBLIC}/webhooks/twilio/voice/ack?n=4711",
        f"{PUBLIC}/webhooks/twilio/voice/ack?n=4711",
    ]
    assert {g.get("method") for g in gathers} == {"POST"}


async def test_the_prompt_says_press_1_to_acknowledge_and_any_other_key_to_repeat(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http).send(WARNING)

    prompt = twiml_of(route.calls.last.request)[0][1]
    assert prompt.tag == "Say"
    assert "按1" in (prompt.text or "")
    assert "其他键" in (prompt.text or "")


async def test_no_keypress_falls_through_to_the_message_once_more_then_a_goodbye(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http).send(WARNING)

    response = twiml_of(route.calls.last.request)
    assert [child.tag for child in response] == ["Gather", "Gather", "Say"]
    assert response[1][0].text == WARNING.body
    assert response[1][0].get("loop") is None


async def test_a_message_without_notification_id_is_still_called_without_the_prompt(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    message = OutgoingMessage(WARNING.idempotency_key, WARNING.address, WARNING.body)

    result = await make_channel(http).send(message)

    response = twiml_of(route.calls.last.request)
    assert result.outcome is Outcome.OK
    assert response.find("Gather") is None
    assert [(s.text, s.get("loop")) for s in response.findall("Say")] == [(WARNING.body, "2")]


async def test_xml_special_characters_in_the_warning_are_escaped(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    body = "降温<14度> & 大风</Say><Hangup/>"

    await make_channel(http).send(
        OutgoingMessage(WARNING.idempotency_key, WARNING.address, body, notification_id=1)
    )

    response = twiml_of(route.calls.last.request)
    assert response[0][0].text == body
    assert response.find(".//Hangup") is None


async def test_status_callbacks_for_answered_and_completed_go_to_the_messages_callback_url(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    callback = f"{PUBLIC}/webhooks/twilio/status?n=4711"
    message = OutgoingMessage(
        WARNING.idempotency_key,
        WARNING.address,
        WARNING.body,
        status_callback_url=callback,
        notification_id=4711,
    )

    await make_channel(http).send(message)

    form = form_of(route.calls.last.request)
    assert form["StatusCallback"] == [callback]
    assert form["StatusCallbackMethod"] == ["POST"]
    assert form["StatusCallbackEvent"] == ["answered", "completed"]


async def test_no_status_callback_is_requested_without_a_callback_url(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http).send(WARNING)

    assert "StatusCallback" not in form_of(route.calls.last.request)


async def test_a_call_is_capped_at_the_configured_duration(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http, max_call_seconds=240).send(WARNING)

    assert form_of(route.calls.last.request)["TimeLimit"] == ["240"]


async def test_the_voice_and_language_can_be_changed_for_another_tts_engine(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    await make_channel(http, voice="Polly.Zhiyu", language="cmn-CN").send(WARNING)

    says = twiml_of(route.calls.last.request).iter("Say")
    assert {(s.get("voice"), s.get("language")) for s in says} == {("Polly.Zhiyu", "cmn-CN")}


def test_the_twiml_for_other_keys_repeats_the_same_message() -> None:
    # The ack route answers a key other than 1 with this same document.
    url = f"{PUBLIC}/webhooks/twilio/voice/ack?n=9"

    twiml = ET.fromstring(warning_twiml("测试预警", ack_url=url))

    assert twiml[0][0].text == "测试预警"
    assert twiml[0].get("action") == url


# --- classifying Twilio's answer


async def test_a_created_call_is_ok_with_its_call_sid(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(CALLS_PATH).respond(201, json=call_queued())

    result = await make_channel(http).send(WARNING)

    assert result == SendResult.ok(provider_id=CALL_SID)


async def test_429_is_retryable_after_the_retry_after_seconds(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(CALLS_PATH).respond(
        429, json=twilio_error(429, 20429, "Too Many Requests"), headers={"Retry-After": "12"}
    )

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after, result.error_code) == (
        Outcome.RETRYABLE,
        12.0,
        "20429",
    )


@pytest.mark.parametrize("status", [500, 503])
async def test_a_server_error_is_retryable(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, status: int
) -> None:
    twilio_api.post(CALLS_PATH).respond(status, json=twilio_error(status, 20500, "Internal"))

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE


async def test_a_timeout_is_retryable(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(CALLS_PATH).mock(side_effect=httpx.ReadTimeout("timed out"))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "timeout")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            21215,
            "Account not authorized to call +8613800138000. Perhaps you need to enable "
            "some international permissions",
        ),
        (21210, "The source phone number provided, +15005550006, is not yet verified"),
        (21217, "Phone number does not appear to be valid"),
    ],
)
async def test_call_rejections_are_permanent_with_twilios_code(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, code: int, message: str
) -> None:
    twilio_api.post(CALLS_PATH).respond(400, json=twilio_error(400, code, message))

    result = await make_channel(http).send(WARNING)

    assert result == SendResult.permanent(message, error_code=str(code))


# --- limits


async def test_declares_one_call_per_second_and_a_1000_character_body(
    http: httpx.AsyncClient,
) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "twilio_voice"
    assert (channel.limits.max_chars, channel.limits.per_second) == (1000, 1.0)


async def test_a_body_over_the_limit_is_refused_without_calling(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    message = OutgoingMessage("k", WARNING.address, "预" * 1001, notification_id=1)

    result = await make_channel(http).send(message)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


async def test_a_body_at_the_limit_fits_twilios_4000_character_twiml(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    message = OutgoingMessage("k", WARNING.address, "预" * 1000, notification_id=2**31)

    result = await make_channel(http).send(message)

    assert result.outcome is Outcome.OK
    assert len(form_of(route.calls.last.request)["Twiml"][0]) <= 4000


async def test_a_body_whose_escaped_twiml_is_over_4000_characters_is_refused(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(CALLS_PATH).respond(201, json=call_queued())
    message = OutgoingMessage("k", WARNING.address, "&" * 900, notification_id=1)  # &amp; ×2

    result = await make_channel(http).send(message)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 0


# --- configuration


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"account_sid": "ACnope"}, "YUJING_TWILIO_ACCOUNT_SID"),
        ({"auth_token": SecretStr("")}, "YUJING_TWILIO_AUTH_TOKEN"),
        ({"from_number": ""}, "YUJING_TWILIO_VOICE_FROM_NUMBER"),
        ({"public_base_url": ""}, "YUJING_PUBLIC_BASE_URL"),
        ({"public_base_url": "yujing.example.cn"}, "YUJING_PUBLIC_BASE_URL"),
    ],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, overrides: dict[str, Any], names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        make_channel(http, **overrides)
