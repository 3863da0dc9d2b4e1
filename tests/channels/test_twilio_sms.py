"""Twilio SMS: the exact request Twilio receives, and how each answer is classified."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.twilio_sms import TwilioSmsChannel

ACCOUNT_SID = "AC" + "5e0c4d2b" * 4
AUTH_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
BASIC_CREDENTIAL = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
FROM_NUMBER = "+15005550006"
MESSAGING_SERVICE_SID = "MG" + "7a3b" * 8
MESSAGE_SID = "SM" + "0123456789abcdef" * 2
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TWILIO = "https://api.twilio.com"

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:person:zhang-wei:twilio_sms",
    address="+8613800138000",
    body="【柳林县自然资源局】寒潮黄色预警：三交镇王家沟滑坡隐患点今夜降温12℃，"
    "请组织巡查。回复1确认。编号Y7K2",
    recipient_name="张伟",
)


def queued(to: str = WARNING.address) -> dict[str, Any]:
    """Twilio's 201 body for a newly created Message (abridged)."""
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": WARNING.body,
        "date_created": "Mon, 05 Jan 2026 00:00:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": FROM_NUMBER,
        "messaging_service_sid": None,
        "num_segments": "2",
        "sid": MESSAGE_SID,
        "status": "queued",
        "to": to,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json",
    }


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error body for the 2010-04-01 API."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def twilio_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TWILIO, assert_all_called=False) as router:
        yield router


def make_channel(
    http: httpx.AsyncClient,
    *,
    from_number: str | None = FROM_NUMBER,
    messaging_service_sid: str | None = None,
    api_base: str = TWILIO,
) -> TwilioSmsChannel:
    return TwilioSmsChannel(
        account_sid=ACCOUNT_SID,
        auth_token=SecretStr(AUTH_TOKEN),
        from_number=from_number,
        messaging_service_sid=messaging_service_sid,
        http=http,
        api_base=api_base,
    )


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode("ascii"), strict_parsing=True)


# --- the request Twilio receives


async def test_posts_to_and_from_and_body_as_form_fields(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == {
        "To": ["+8613800138000"],
        "From": [FROM_NUMBER],
        "Body": [WARNING.body],
    }


async def test_chinese_body_arrives_intact_as_utf8(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    await make_channel(http).send(WARNING)

    [body] = form_of(route.calls.last.request)["Body"]
    assert body == WARNING.body
    assert "【柳林县自然资源局】" in body


async def test_authenticates_with_basic_auth_on_the_account_messages_path(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    await make_channel(http).send(WARNING)

    request = route.calls.last.request
    assert request.url == f"{TWILIO}{MESSAGES_PATH}"
    assert request.headers["Authorization"] == f"Basic {BASIC_CREDENTIAL}"


async def test_sends_status_callback_only_when_the_message_has_one(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())
    channel = make_channel(http)
    callback = "https://yujing.example.cn/webhooks/twilio/status?n=42"

    await channel.send(WARNING)
    without = form_of(route.calls.last.request)
    await channel.send(
        OutgoingMessage(
            WARNING.idempotency_key, WARNING.address, WARNING.body, status_callback_url=callback
        )
    )
    with_callback = form_of(route.calls.last.request)

    assert "StatusCallback" not in without
    assert with_callback["StatusCallback"] == [callback]


async def test_a_messaging_service_replaces_the_from_number(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    await make_channel(http, from_number=None, messaging_service_sid=MESSAGING_SERVICE_SID).send(
        WARNING
    )

    form = form_of(route.calls.last.request)
    assert form["MessagingServiceSid"] == [MESSAGING_SERVICE_SID]
    assert "From" not in form


async def test_the_messaging_service_is_preferred_when_both_senders_are_set(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    route = twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    await make_channel(
        http, from_number=FROM_NUMBER, messaging_service_sid=MESSAGING_SERVICE_SID
    ).send(WARNING)

    form = form_of(route.calls.last.request)
    assert form["MessagingServiceSid"] == [MESSAGING_SERVICE_SID]
    assert "From" not in form


async def test_api_base_routes_requests_to_another_host(http: httpx.AsyncClient) -> None:
    with respx.mock(assert_all_called=False) as router:
        fake = router.post(f"http://127.0.0.1:8099{MESSAGES_PATH}").respond(201, json=queued())
        real = router.post(f"{TWILIO}{MESSAGES_PATH}").respond(201, json=queued())

        result = await make_channel(http, api_base="http://127.0.0.1:8099").send(WARNING)

    assert result.outcome is Outcome.OK
    assert (fake.call_count, real.call_count) == (1, 0)


async def test_sends_through_the_httpx_client_it_was_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=queued())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as shared:
        channel = make_channel(shared)
        await channel.send(WARNING)
        await channel.send(WARNING)

    assert len(seen) == 2


# --- classifying Twilio's answer


async def test_a_created_message_is_ok_with_its_sid(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(201, json=queued())

    result = await make_channel(http).send(WARNING)

    assert result == SendResult.ok(provider_id=MESSAGE_SID)


async def test_429_is_retryable_after_the_retry_after_seconds(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(
        429, json=twilio_error(429, 20429, "Too Many Requests"), headers={"Retry-After": "30"}
    )

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE
    assert result.retry_after == 30.0
    assert result.error_code == "20429"


async def test_429_with_a_past_http_date_retry_after_may_retry_at_once(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    twilio_api.post(MESSAGES_PATH).respond(
        429, json=twilio_error(429, 20429, "Too Many Requests"), headers={"Retry-After": past}
    )

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, 0.0)


async def test_429_without_retry_after_leaves_the_delay_to_the_worker(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(429, json=twilio_error(429, 20429, "Too Many Requests"))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, None)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_retryable(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, status: int
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(
        status, json=twilio_error(status, 20500, "Internal Server Error")
    )

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE
    assert str(status) in result.reason


async def test_a_server_error_without_a_json_body_is_retryable_without_a_code(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(502, text="<html>Bad Gateway</html>")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, None)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectTimeout("timed out"), httpx.ReadTimeout("timed out"), httpx.PoolTimeout("full")],
)
async def test_a_timeout_is_retryable(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, error: httpx.TimeoutException
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(side_effect=error)

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE
    assert "timeout" in result.reason


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("connection refused"), httpx.RemoteProtocolError("server hung up")],
)
async def test_a_connection_error_is_retryable(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, error: httpx.TransportError
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(side_effect=error)

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE


async def test_an_invalid_to_number_is_permanent_with_twilios_code_and_message(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    message = "The 'To' number +861380013800 is not a valid phone number."
    twilio_api.post(MESSAGES_PATH).respond(400, json=twilio_error(400, 21211, message))

    result = await make_channel(http).send(WARNING)

    assert result == SendResult.permanent(message, error_code="21211")


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 21610, "Attempt to send to unsubscribed recipient"),
        (400, 21614, "'To' number is not a valid mobile number"),
        (
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by the "
            "'To' number: +8613800138000.",
        ),
        (401, 20003, "Authenticate"),
        (404, 20404, "The requested resource was not found"),
    ],
)
async def test_client_errors_are_permanent_with_twilios_code(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter, status: int, code: int, message: str
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(status, json=twilio_error(status, code, message))

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code, result.reason) == (
        Outcome.PERMANENT,
        str(code),
        message,
    )


async def test_an_rfc9457_problem_answer_is_classified_like_the_classic_one(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    # Newer Twilio APIs answer errors as RFC 9457 problem details.
    twilio_api.post(MESSAGES_PATH).respond(
        400,
        json={
            "type": "https://www.twilio.com/docs/errors/21211",
            "title": "Invalid 'To' Phone Number",
            "status": 400,
            "code": 21211,
            "detail": "The 'To' number +861380013800 is not a valid phone number.",
        },
    )

    result = await make_channel(http).send(WARNING)

    assert result == SendResult.permanent(
        "The 'To' number +861380013800 is not a valid phone number.", error_code="21211"
    )


async def test_a_client_error_without_a_twilio_code_is_permanent(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(403, text="Forbidden")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, None)


async def test_an_accepted_message_with_an_unreadable_answer_is_not_sent_again(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).respond(201, text="{not json")

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.provider_id) == (Outcome.OK, None)


async def test_an_unexpected_error_is_returned_as_retryable_not_raised(
    http: httpx.AsyncClient, twilio_api: respx.MockRouter
) -> None:
    twilio_api.post(MESSAGES_PATH).mock(side_effect=RuntimeError("surprise"))

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.RETRYABLE
    assert "RuntimeError" in result.reason


# --- configuration


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"account_sid": "ACnot-a-sid"}, "YUJING_TWILIO_ACCOUNT_SID"),
        ({"auth_token": SecretStr("")}, "YUJING_TWILIO_AUTH_TOKEN"),
        ({"from_number": None, "messaging_service_sid": None}, "YUJING_TWILIO_FROM_NUMBER"),
    ],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, overrides: dict[str, Any], names: str
) -> None:
    arguments: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": SecretStr(AUTH_TOKEN),
        "from_number": FROM_NUMBER,
        "messaging_service_sid": None,
        "http": http,
    } | overrides

    with pytest.raises(ValueError, match=names):
        TwilioSmsChannel(**arguments)


async def test_is_a_channel_named_twilio_sms_with_the_three_segment_limit(
    http: httpx.AsyncClient,
) -> None:
    channel = make_channel(http)

    assert isinstance(channel, Channel)
    assert channel.name == "twilio_sms"
    assert (channel.limits.max_chars, channel.limits.per_second) == (201, None)


# --- the auth token never leaks


def assert_no_secret(text: str) -> None:
    assert AUTH_TOKEN not in text
    assert BASIC_CREDENTIAL not in text


async def test_repr_and_str_of_the_channel_show_no_token(http: httpx.AsyncClient) -> None:
    channel = make_channel(http)

    assert ACCOUNT_SID in repr(channel)
    assert_no_secret(repr(channel))
    assert_no_secret(str(channel))


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, json=queued()),
        httpx.Response(201, text="{not json"),
        httpx.Response(400, json=twilio_error(400, 21211, "The 'To' number +861 is not valid.")),
        httpx.Response(401, json=twilio_error(401, 20003, "Authenticate")),
        httpx.Response(429, json=twilio_error(429, 20429, "Too Many Requests")),
        httpx.Response(500, text="oops"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        # An error that quotes the token must still not leak it.
        RuntimeError(f"boom {AUTH_TOKEN} {BASIC_CREDENTIAL}"),
        httpx.ConnectError(f"proxy said Authorization: Basic {BASIC_CREDENTIAL}"),
    ],
    ids=lambda a: type(a).__name__ if isinstance(a, Exception) else str(a.status_code),
)
async def test_results_and_logs_never_contain_the_token(
    http: httpx.AsyncClient,
    twilio_api: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
    answer: httpx.Response | Exception,
) -> None:
    route = twilio_api.post(MESSAGES_PATH)
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    channel = make_channel(http)

    with caplog.at_level(logging.DEBUG):
        result = await channel.send(WARNING)

    assert_no_secret(repr(result))
    assert_no_secret(str(result))
    assert_no_secret(repr(channel))
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())
