"""Village broadcast: a vendor profile drives the request; the county maps villages to terminals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr, ValidationError

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from channels.broadcast import (
    BroadcastChannel,
    BroadcastDirectory,
    BroadcastProfile,
    load_broadcast_directory,
    load_broadcast_profile,
    village_address,
)

GATEWAY = "http://10.20.0.5:8080"
TOKEN = "bc-tok-8f7e6d5c4b3a2918"
NOW = 1767657600.25

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:village:sanjiao:broadcast",
    address="三交镇/三交村",
    body='柳林县自然资源局提醒：今夜寒潮降温，远离"陡坡"和沟道。',
    notification_id=4711,
)

COUNTY = {
    "broadcast": {
        "villages": [
            {
                "township": "三交镇",
                "village": "三交村",
                "groups": ["G-SJ-01"],
                "terminals": ["T-SJ-0101", "T-SJ-0102"],
            },
            {
                "township": "孟门镇",
                "village": "孟门村",
                "groups": ["G-MM-01"],
                "terminals": ["T-MM-0101"],
                "repeat": 5,
                "volume": 100,
            },
        ]
    }
}


def profile_document(**overrides: Any) -> dict[str, Any]:
    """A minimal valid profile (plain data, as parsed from YAML)."""
    document: dict[str, Any] = {
        "vendor": "test-vendor",
        "request": {"method": "POST", "path": "/api/play"},
        "auth": {"type": "bearer"},
        "addressing": {"targets": "groups"},
        "body": {
            "format": "json",
            "template": {
                "ids": "{{ targets }}",
                "text": "{{ text }}",
                "times": "{{ repeat }}",
                "vol": "{{ volume }}",
            },
        },
    }
    document.update(overrides)
    return document


def make_channel(
    http: httpx.AsyncClient,
    profile: dict[str, Any] | None = None,
    county: dict[str, Any] | None = None,
    **overrides: Any,
) -> BroadcastChannel:
    arguments: dict[str, Any] = {
        "profile": load_broadcast_profile(profile or profile_document()),
        "directory": load_broadcast_directory(county or COUNTY),
        "base_url": GATEWAY,
        "http": http,
        "secret": SecretStr(TOKEN),
        "clock": lambda: NOW,
    }
    return BroadcastChannel(**(arguments | overrides))


@pytest.fixture
def gateway() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=GATEWAY, assert_all_called=False) as router:
        yield router


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# --- the county's terminals


def test_a_village_is_addressed_as_township_slash_village() -> None:
    assert village_address("三交镇", "三交村") == "三交镇/三交村"


def test_the_directory_finds_a_village_by_its_address() -> None:
    directory = load_broadcast_directory(COUNTY)

    village = directory.village("孟门镇/孟门村")

    assert village is not None
    assert (village.groups, village.terminals, village.volume) == (["G-MM-01"], ["T-MM-0101"], 100)
    assert directory.village("孟门镇/不存在村") is None


def test_the_directory_lists_addresses_without_terminals() -> None:
    directory = load_broadcast_directory(COUNTY)

    missing = directory.missing(["三交镇/三交村", "王家沟乡/王家沟村", "王家沟乡/王家沟村"])

    assert missing == ["王家沟乡/王家沟村"]


def test_a_village_without_groups_or_terminals_is_an_error_at_its_entry() -> None:
    county = {"broadcast": {"villages": [{"township": "三交镇", "village": "三交村"}]}}

    with pytest.raises(ValidationError) as error:
        load_broadcast_directory(county)

    [problem] = error.value.errors()
    assert problem["loc"] == ("broadcast", "villages", 0)
    assert "groups or terminals" in problem["msg"]


def test_a_village_listed_twice_is_an_error() -> None:
    entry = {"township": "三交镇", "village": "三交村", "groups": ["G"]}
    county = {"broadcast": {"villages": [entry, entry]}}

    with pytest.raises(ValidationError, match="listed twice"):
        load_broadcast_directory(county)


@pytest.mark.parametrize(("field", "value"), [("volume", 101), ("repeat", 0), ("colour", "red")])
def test_out_of_range_or_unknown_village_fields_are_errors_at_the_field(
    field: str, value: Any
) -> None:
    entry = {"township": "三交镇", "village": "三交村", "groups": ["G"], field: value}

    with pytest.raises(ValidationError) as error:
        load_broadcast_directory({"broadcast": {"villages": [entry]}})

    assert error.value.errors()[0]["loc"] == ("broadcast", "villages", 0, field)


# --- profile validation


def test_a_template_with_a_syntax_error_is_an_error_at_the_body_template() -> None:
    document = profile_document(body={"template": {"text": "{{ text "}})

    with pytest.raises(ValidationError) as error:
        load_broadcast_profile(document)

    assert error.value.errors()[0]["loc"] == ("body", "template")


def test_a_template_naming_an_unknown_variable_is_an_error() -> None:
    document = profile_document(body={"template": {"text": "{{ txet }}"}})

    with pytest.raises(ValidationError, match="txet"):
        load_broadcast_profile(document)


def test_a_template_cannot_reach_python_internals() -> None:
    document = profile_document(body={"template": {"x": "{{ text.__class__.__mro__ }}"}})

    with pytest.raises(ValidationError):
        load_broadcast_profile(document)


def test_a_header_template_is_checked_too() -> None:
    document = profile_document(request={"path": "/p", "headers": {"X-Id": "{{ nope }}"}})

    with pytest.raises(ValidationError) as error:
        load_broadcast_profile(document)

    assert error.value.errors()[0]["loc"] == ("request", "headers")


def test_a_form_body_must_render_flat_fields() -> None:
    document = profile_document(
        body={"format": "form", "template": {"tts": {"text": "{{ text }}"}}}
    )

    with pytest.raises(ValidationError, match="form field 'tts'"):
        load_broadcast_profile(document)


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"auth": {"type": "kerberos"}}, ("auth",)),
        ({"addressing": {"targets": "houses"}}, ("addressing", "targets")),
        ({"request": {"path": "no-slash"}}, ("request", "path")),
        ({"success": {"status": [500]}}, ("success", "status")),
        ({"defaults": {"volume": 150}}, ("defaults", "volume")),
        ({"limits": {"max_chars": 0}}, ("limits", "max_chars")),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_profile_mistakes_are_errors_at_their_field(
    overrides: dict[str, Any], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as error:
        load_broadcast_profile(profile_document(**overrides))

    assert error.value.errors()[0]["loc"][: len(loc)] == loc


# --- the request


async def test_posts_to_the_profiles_path_on_the_gateway(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    result = await make_channel(http).send(WARNING)

    assert result.outcome is Outcome.OK
    assert route.call_count == 1


async def test_the_json_body_keeps_lists_and_numbers_and_quotes_the_text_safely(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http).send(WARNING)

    assert sent_json(route) == {"ids": ["G-SJ-01"], "text": WARNING.body, "times": 2, "vol": 80}


async def test_terminal_addressing_sends_the_villages_terminal_ids(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http, profile_document(addressing={"targets": "terminals"})).send(WARNING)

    assert sent_json(route)["ids"] == ["T-SJ-0101", "T-SJ-0102"]


async def test_repeat_and_volume_come_from_the_village_then_the_county_then_the_profile(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    county = {"broadcast": {"defaults": {"repeat": 3}, **COUNTY["broadcast"]}}
    profile = profile_document(defaults={"repeat": 1, "volume": 60})
    channel = make_channel(http, profile, county)

    await channel.send(WARNING)  # 三交村: no overrides of its own
    sanjiao = sent_json(route)
    await channel.send(OutgoingMessage("k2", "孟门镇/孟门村", "测试"))
    mengmen = sent_json(route)

    assert (sanjiao["times"], sanjiao["vol"]) == (3, 60)
    assert (mengmen["times"], mengmen["vol"]) == (5, 100)


async def test_mixed_text_templates_render_as_strings(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    template = {
        "name": "预警 {{ township }}{{ village }} #{{ notification_id }}",
        "ids": "{{ targets | join(',') }}",
        "at": "{{ timestamp_ms }}",
        "fixed": {"priority": 1, "flags": [True, None]},
    }

    await make_channel(http, profile_document(body={"template": template})).send(WARNING)

    assert sent_json(route) == {
        "name": "预警 三交镇三交村 #4711",
        "ids": "G-SJ-01",
        "at": 1767657600250,
        "fixed": {"priority": 1, "flags": [True, None]},
    }


async def test_a_form_body_is_url_encoded_with_lists_as_repeated_fields(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    body = {
        "format": "form",
        "template": {
            "terminal": "{{ terminals }}",
            "content": "{{ text }}",
            "loop": "{{ repeat }}",
        },
    }

    await make_channel(http, profile_document(body=body)).send(WARNING)

    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "terminal": ["T-SJ-0101", "T-SJ-0102"],
        "content": [WARNING.body],
        "loop": ["2"],
    }


async def test_profile_headers_are_rendered(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    request = {"path": "/api/play", "headers": {"X-Request-Id": "{{ idempotency_key }}"}}

    await make_channel(http, profile_document(request=request)).send(WARNING)

    assert route.calls.last.request.headers["X-Request-Id"] == WARNING.idempotency_key


# --- auth


async def test_bearer_auth_puts_the_token_in_the_authorization_header(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http).send(WARNING)

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_token_auth_can_use_the_vendors_own_header_without_prefix(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    auth = {"type": "bearer", "header": "X-Access-Token", "prefix": ""}

    await make_channel(http, profile_document(auth=auth)).send(WARNING)

    headers = route.calls.last.request.headers
    assert headers["X-Access-Token"] == TOKEN
    assert "Authorization" not in headers


async def test_basic_auth_sends_username_and_secret(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http, profile_document(auth={"type": "basic"}), username="yujing").send(
        WARNING
    )

    expected = base64.b64encode(f"yujing:{TOKEN}".encode()).decode()
    assert route.calls.last.request.headers["Authorization"] == f"Basic {expected}"


async def test_query_auth_puts_the_token_in_the_query(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http, profile_document(auth={"type": "query", "param": "token"})).send(
        WARNING
    )

    assert route.calls.last.request.url.params["token"] == TOKEN


async def test_no_auth_sends_no_credential(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    await make_channel(http, profile_document(auth={"type": "none"}), secret=None).send(WARNING)

    request = route.calls.last.request
    assert "Authorization" not in request.headers
    assert TOKEN.encode() not in request.content


async def test_hmac_auth_signs_the_documented_string_with_the_secret(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    auth = {
        "type": "hmac",
        "signature_header": "X-Signature",
        "timestamp_header": "X-Timestamp",
        "timestamp_unit": "ms",
        "app_id_header": "X-App-Id",
        "string_to_sign": "{{ method }}\n{{ path }}\n{{ app_id }}\n{{ timestamp }}\n{{ body }}",
        "encoding": "base64",
        "prefix": "HMAC-SHA256 ",
    }

    await make_channel(http, profile_document(auth=auth), username="app-77").send(WARNING)

    request = route.calls.last.request
    to_sign = f"POST\n/api/play\napp-77\n1767657600250\n{request.content.decode()}"
    mac = hmac.new(TOKEN.encode(), to_sign.encode(), hashlib.sha256).digest()
    assert request.headers["X-Signature"] == "HMAC-SHA256 " + base64.b64encode(mac).decode()
    assert request.headers["X-Timestamp"] == "1767657600250"
    assert request.headers["X-App-Id"] == "app-77"


async def test_hmac_auth_defaults_to_hex_over_timestamp_and_body(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    auth = {"type": "hmac", "signature_header": "X-Sign"}

    await make_channel(http, profile_document(auth=auth)).send(WARNING)

    request = route.calls.last.request
    to_sign = f"1767657600\n{request.content.decode()}"
    expected = hmac.new(TOKEN.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    assert request.headers["X-Sign"] == expected


# --- classification


def success(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "status": [200],
        "json_path": "code",
        "values": [0],
        "retry_values": [1003],
        "provider_id_path": "data.taskId",
        "message_path": "msg",
    }
    return profile_document(success=spec | overrides)


async def test_the_success_value_at_the_json_path_is_ok_with_the_task_id(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    gateway.post("/api/play").respond(200, json={"code": 0, "data": {"taskId": "T2026-0001"}})

    result = await make_channel(http, success()).send(WARNING)

    assert result == SendResult.ok(provider_id="T2026-0001")


async def test_a_path_can_index_into_a_list(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    gateway.post("/api/play").respond(200, json={"result": [{"ok": "yes", "id": 7}]})
    profile = success(json_path="result.0.ok", values=["yes"], provider_id_path="result.0.id")

    result = await make_channel(http, profile).send(WARNING)

    assert result == SendResult.ok(provider_id="7")


async def test_a_retry_value_is_retryable(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    gateway.post("/api/play").respond(200, json={"code": 1003, "msg": "终端忙，请稍后重试"})

    result = await make_channel(http, success()).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "1003")
    assert "终端忙" in result.reason


async def test_any_other_value_is_permanent_with_the_vendors_message(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    gateway.post("/api/play").respond(200, json={"code": 1001, "msg": "令牌无效"})

    result = await make_channel(http, success()).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "1001")
    assert "令牌无效" in result.reason


async def test_an_accepted_status_without_the_json_path_is_retryable(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    gateway.post("/api/play").respond(200, text="OK")

    result = await make_channel(http, success()).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.RETRYABLE, "unreadable")


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_429_and_5xx_are_retryable_honouring_retry_after(
    http: httpx.AsyncClient, gateway: respx.MockRouter, status: int
) -> None:
    gateway.post("/api/play").respond(status, headers={"Retry-After": "20"})

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.retry_after) == (Outcome.RETRYABLE, 20.0)


@pytest.mark.parametrize("status", [401, 404, 202])
async def test_a_status_not_listed_as_success_is_permanent(
    http: httpx.AsyncClient, gateway: respx.MockRouter, status: int
) -> None:
    gateway.post("/api/play").respond(status)

    result = await make_channel(http).send(WARNING)

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, f"http_{status}")


@pytest.mark.parametrize("error", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")])
async def test_a_gateway_that_is_down_is_retryable(
    http: httpx.AsyncClient, gateway: respx.MockRouter, error: Exception
) -> None:
    gateway.post("/api/play").mock(side_effect=error)

    assert (await make_channel(http).send(WARNING)).outcome is Outcome.RETRYABLE


async def test_a_village_without_terminals_is_permanent_without_a_request(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)

    result = await make_channel(http).send(OutgoingMessage("k", "王家沟乡/王家沟村", "测试"))

    assert (result.outcome, result.error_code) == (Outcome.PERMANENT, "unknown_village")
    assert route.call_count == 0


# --- limits


async def test_declares_the_profiles_limits(http: httpx.AsyncClient) -> None:
    profile = profile_document(limits={"max_chars": 120, "per_second": 2, "per_minute": 30})

    channel = make_channel(http, profile)

    assert isinstance(channel, Channel)
    assert channel.name == "broadcast"
    limits = channel.limits
    assert (limits.max_chars, limits.per_second, limits.per_minute) == (120, 2.0, 30)
    assert limits.rate_scope == "channel"  # one gateway for the whole county


async def test_text_over_max_chars_is_refused_not_truncated(
    http: httpx.AsyncClient, gateway: respx.MockRouter
) -> None:
    route = gateway.post("/api/play").respond(200)
    channel = make_channel(http, profile_document(limits={"max_chars": 10}))

    at_limit = await channel.send(OutgoingMessage("k1", WARNING.address, "预" * 10))
    over = await channel.send(OutgoingMessage("k2", WARNING.address, "预" * 11))

    assert at_limit.outcome is Outcome.OK
    assert (over.outcome, over.error_code) == (Outcome.PERMANENT, "too_long")
    assert route.call_count == 1


# --- configuration


async def test_a_village_lacking_the_addressed_kind_of_id_is_refused_at_start(
    http: httpx.AsyncClient,
) -> None:
    county = {
        "broadcast": {
            "villages": [{"township": "三交镇", "village": "三交村", "terminals": ["T-1"]}]
        }
    }

    with pytest.raises(ValueError, match=r"addresses groups.*三交镇/三交村"):
        make_channel(http, county=county)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"base_url": "10.20.0.5:8080"}, "YUJING_BROADCAST_BASE_URL"),
        ({"secret": None}, "YUJING_BROADCAST_SECRET"),
        ({"secret": SecretStr("")}, "YUJING_BROADCAST_SECRET"),
    ],
)
async def test_bad_configuration_is_refused_naming_the_setting(
    http: httpx.AsyncClient, overrides: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ValueError, match=setting):
        make_channel(http, **overrides)


async def test_basic_auth_needs_a_username(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="YUJING_BROADCAST_USERNAME"):
        make_channel(http, profile_document(auth={"type": "basic"}))


def test_profile_and_directory_are_plain_validated_models() -> None:
    assert isinstance(load_broadcast_profile(profile_document()), BroadcastProfile)
    assert isinstance(load_broadcast_directory(COUNTY), BroadcastDirectory)
