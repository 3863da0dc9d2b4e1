"""QWeatherFeed: JWT signing (RFC 8037), requests, units and stand-ins, error codes.

HTTP is mocked with respx at the edge; waiting is a recorded fake sleep.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import numpy as np
import pytest
import respx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr, ValidationError

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.chain import FeedChain
from dispatcher.feeds.qweather import QWeatherFeed, parse_qweather
from dispatcher.feeds.qweather_auth import (
    JwtCredential,
    QWeatherAuth,
    jws_compact,
    load_private_key,
    qweather_jwt,
)
from dispatcher.runtime import build_feed
from dispatcher.settings import Settings
from tests.qweather import (
    API_HOST,
    GRID_URL,
    KEY_ID,
    PROJECT_ID,
    hour,
    hourly_answer,
    key_pair,
    public_pem,
)

NOW = datetime(2026, 1, 6, 16, 5, tzinfo=UTC)
START = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
POINTS = [
    ForecastPoint("p37.4300_110.8900", 37.43, 110.89),
    ForecastPoint("p37.4500_110.9100", 37.45, 110.91),
]
ASKED = ["temperature_2m", "wind_speed_10m", "weather_code", "rain", "snowfall", "dew_point_2m"]


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def jwt_feed(
    client: httpx.AsyncClient, key: Ed25519PrivateKey, **kwargs: Any
) -> tuple[QWeatherFeed, FakeSleep]:
    sleep = FakeSleep()
    auth = QWeatherAuth(
        jwt=JwtCredential(key_id=KEY_ID, project_id=PROJECT_ID, key=key), clock=lambda: NOW
    )
    options: dict[str, Any] = {"retries": 2, "backoff_seconds": 1.0, **kwargs}
    feed = QWeatherFeed(client, host=API_HOST, auth=auth, sleep=sleep, clock=lambda: NOW, **options)
    return feed, sleep


# --- the signature: RFC 8032 / RFC 8037 vectors, and QWeather's token


def rfc8037_key() -> Ed25519PrivateKey:
    # RFC 8037 appendix A.1 (the key of RFC 8032 §7.1 test 1)
    return Ed25519PrivateKey.from_private_bytes(
        b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
    )


def test_the_rfc8037_ed25519_jws_example_is_reproduced_byte_for_byte() -> None:
    token = jws_compact({"alg": "EdDSA"}, b"Example of Ed25519 signing", rfc8037_key())
    assert token == (
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    )


def test_the_rfc8037_key_is_rfc8032_test_1() -> None:
    key = rfc8037_key()
    public = key.public_key().public_bytes_raw()
    assert public == b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_the_qweather_token_verifies_with_the_public_key_and_carries_kid_sub_iat_exp() -> None:
    key, _ = key_pair()
    token = qweather_jwt(
        key, key_id=KEY_ID, project_id=PROJECT_ID, now=NOW, lifetime=timedelta(hours=1)
    )
    header, payload, signature = token.split(".")
    assert json.loads(b64decode(header)) == {"alg": "EdDSA", "kid": KEY_ID}
    claims = json.loads(b64decode(payload))
    issued = int(NOW.timestamp())
    assert claims == {"sub": PROJECT_ID, "iat": issued - 30, "exp": issued + 3600}
    # verified by the public key alone, with cryptography and with PyJWT's EdDSA
    key.public_key().verify(b64decode(signature), f"{header}.{payload}".encode("ascii"))
    decoded = pyjwt.decode(
        token, public_pem(key), algorithms=["EdDSA"], options={"verify_exp": False}
    )
    assert decoded["sub"] == PROJECT_ID
    # and another key's public half does not verify it
    other, _ = key_pair()
    with pytest.raises(InvalidSignature):
        other.public_key().verify(b64decode(signature), f"{header}.{payload}".encode("ascii"))


def test_the_token_is_reused_until_shortly_before_it_expires() -> None:
    key, _ = key_pair()
    clock = [NOW]
    auth = QWeatherAuth(
        jwt=JwtCredential(key_id=KEY_ID, project_id=PROJECT_ID, key=key), clock=lambda: clock[0]
    )
    first = auth.headers()["Authorization"]
    clock[0] = NOW + timedelta(minutes=50)
    assert auth.headers()["Authorization"] == first
    clock[0] = NOW + timedelta(minutes=56)  # within 5 minutes of the hour's expiry
    assert auth.headers()["Authorization"] != first


def test_the_private_key_is_read_from_pem_text_or_a_file(tmp_path: Path) -> None:
    key, pem = key_pair()
    path = tmp_path / "ed25519-private.pem"
    path.write_text(pem, encoding="utf-8")
    for value in (pem, str(path)):
        loaded = load_private_key(SecretStr(value))
        assert loaded.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("/nowhere/ed25519-private.pem", "cannot read /nowhere/ed25519-private.pem"),
        ("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----", "not an unenc"),
        (
            generate_private_key(SECP256R1())
            .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            .decode(),
            "not an Ed25519 key",
        ),
    ],
)
def test_a_bad_private_key_is_one_line_naming_the_setting(value: str, says: str) -> None:
    with pytest.raises(ValueError, match="YUJING_QWEATHER_PRIVATE_KEY") as error:
        load_private_key(SecretStr(value))
    assert says in str(error.value) and "\n" not in str(error.value)
    assert "not base64" not in str(error.value)  # the key text is never echoed


def test_no_credentials_at_all_is_refused_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="YUJING_QWEATHER_API_KEY"):
        QWeatherAuth(clock=lambda: NOW)


# --- requests and what the answer becomes


def varied(k: int) -> dict[str, str]:
    """Hour k of a cold night: freezing rain at hours 2–3, snow at 5, a gap in dew."""
    icon = {2: 313, 3: 313, 5: 401, 6: 404}.get(k, 101)
    precip = {2: "1.2", 3: "0.8", 5: "2.0", 6: "1.0"}.get(k, "0.0")
    return hour(
        START, k, icon=icon, precip=precip, temp=str(-k), windSpeed="36", dew="" if k == 4 else "-9"
    )


@respx.mock
async def test_a_forecast_becomes_a_batch_in_the_registry_units_with_stated_stand_ins() -> None:
    key, _ = key_pair()
    route = respx.get(GRID_URL).mock(
        return_value=httpx.Response(200, json=hourly_answer(START, 24, varied))
    )
    async with httpx.AsyncClient() as client:
        feed, _ = jwt_feed(client, key)
        batch = await feed.fetch(POINTS, ASKED)

    # one request per location, lon,lat at two decimals, metric units
    assert route.call_count == 2
    locations = sorted(call.request.url.params["location"] for call in route.calls)
    assert locations == ["110.89,37.43", "110.91,37.45"]
    assert {call.request.url.params["unit"] for call in route.calls} == {"m"}
    # fxTime at +08:00 is read as the UTC hour it names
    assert batch.times[0] == np.datetime64("2026-01-06T16:00:00")
    assert batch.shape == (2, 24)
    assert batch.source == "qweather" and batch.issued_at == NOW
    row = {name: batch.variables[name][0] for name in ASKED}
    assert row["temperature_2m"][3] == -3.0
    assert row["wind_speed_10m"][0] == pytest.approx(10.0)  # 36 km/h
    assert batch.units["wind_speed_10m"] == "m/s"
    # icons: 313 freezing rain → WMO 66 and rain; 401 snow → 73 and 0.7 cm per mm; 404 sleet → half
    assert row["weather_code"][2] == 66 and row["weather_code"][5] == 73
    assert row["weather_code"][0] == 2  # 101 cloudy
    assert row["rain"][2] == pytest.approx(1.2) and row["rain"][5] == 0.0
    assert row["snowfall"][5] == pytest.approx(1.4) and row["snowfall"][6] == pytest.approx(0.35)
    assert row["rain"][6] == pytest.approx(0.5)
    assert math.isnan(row["dew_point_2m"][4]) and row["dew_point_2m"][3] == -9.0


@respx.mock
async def test_the_request_carries_a_jwt_the_public_key_verifies() -> None:
    key, _ = key_pair()
    route = respx.get(GRID_URL).mock(return_value=httpx.Response(200, json=hourly_answer(START)))
    async with httpx.AsyncClient() as client:
        feed, _ = jwt_feed(client, key)
        await feed.fetch(POINTS[:1], ["temperature_2m"])
    request = route.calls.last.request
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    assert pyjwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": KEY_ID}
    claims = pyjwt.decode(
        token, public_pem(key), algorithms=["EdDSA"], options={"verify_exp": False}
    )
    assert claims["sub"] == PROJECT_ID and claims["exp"] > claims["iat"]
    assert "key" not in request.url.params and "X-QW-Api-Key" not in request.headers


@respx.mock
async def test_the_legacy_key_goes_in_its_header_not_the_url() -> None:
    route = respx.get(GRID_URL).mock(return_value=httpx.Response(200, json=hourly_answer(START)))
    auth = QWeatherAuth(api_key=SecretStr("legacy-key-123"), clock=lambda: NOW)
    async with httpx.AsyncClient() as client:
        feed = QWeatherFeed(client, host=API_HOST, auth=auth, retries=0, backoff_seconds=0)
        await feed.fetch(POINTS[:1], ["temperature_2m"])
    request = route.calls.last.request
    assert request.headers["X-QW-Api-Key"] == "legacy-key-123"
    assert "legacy-key-123" not in str(request.url) and "Authorization" not in request.headers


@respx.mock
async def test_variables_qweather_lacks_are_left_out_and_asking_only_for_them_fails() -> None:
    key, _ = key_pair()
    respx.get(GRID_URL).mock(return_value=httpx.Response(200, json=hourly_answer(START)))
    async with httpx.AsyncClient() as client:
        feed, _ = jwt_feed(client, key)
        batch = await feed.fetch(POINTS[:1], ["temperature_2m", "visibility"])
        assert set(batch.variables) == {"temperature_2m"}
        with pytest.raises(FeedError, match="QWeather serves none of snow_depth, visibility"):
            await feed.fetch(POINTS[:1], ["visibility", "snow_depth"])


@respx.mock
async def test_a_value_that_is_not_a_number_masks_its_variables_there_and_says_so() -> None:
    key, _ = key_pair()

    def answer(request: httpx.Request) -> httpx.Response:
        # the seat's hour 2 has no temperature; its precip is fine, the other point's is not
        seat = request.url.params["location"] == "110.89,37.43"
        return httpx.Response(
            200,
            json=hourly_answer(
                START,
                4,
                lambda k: hour(
                    START,
                    k,
                    temp="N/A" if seat and k == 2 else "-3",
                    precip="lots" if not seat and k == 1 else "0.5",
                ),
            ),
        )

    respx.get(GRID_URL).mock(side_effect=answer)
    async with httpx.AsyncClient() as client:
        feed, _ = jwt_feed(client, key)
        batch = await feed.fetch(POINTS, ["temperature_2m", "rain", "weather_code", "visibility"])
    # the poll goes on: each variable masked only where its field is bad
    assert np.isnan(batch.variables["temperature_2m"][0]).all()
    assert batch.variables["temperature_2m"][1].tolist() == [-3.0] * 4
    assert (
        np.isnan(batch.variables["rain"][1]).all()
        and not np.isnan(batch.variables["rain"][0]).any()
    )
    assert batch.variables["weather_code"][0].tolist() == [2.0] * 4
    assert set(batch.variables) == {"temperature_2m", "rain", "weather_code"}
    assert batch.problems == (
        "hourly.visibility is not served by QWeather (it has no such field)",
        "location 110.89,37.43: hourly.temperature_2m is masked as missing: "
        "hourly[2].temp is 'N/A', expected a number",
        "location 110.91,37.45: hourly.rain is masked as missing: "
        "hourly[1].precip is 'lots', expected a number",
    )


def test_a_field_no_hour_has_is_said_and_a_location_without_hours_rejects_the_poll() -> None:
    without_dew = hourly_answer(START, 3)
    for row in without_dew["hourly"]:
        del row["dew"]
    responses: dict[str, object] = {"110.89,37.43": without_dew, "110.91,37.45": without_dew}
    batch = parse_qweather(responses, POINTS, ["dew_point_2m", "temperature_2m"], "qweather", NOW)
    assert batch.problems == (
        "hourly.dew_point_2m is masked as missing: no hour has dew (all 2 locations)",
    )
    assert np.isnan(batch.variables["dew_point_2m"]).all()
    # every location's fatal problem at once, and what was masked besides
    responses = {"110.89,37.43": {"code": "200", "hourly": []}, "110.91,37.45": without_dew}
    with pytest.raises(FeedError) as error:
        parse_qweather(
            responses,
            [*POINTS, ForecastPoint("far", 38.0, 111.0)],
            ["dew_point_2m"],
            "qweather",
            NOW,
        )
    assert error.value.problems == (
        "location 110.89,37.43: hourly is missing or empty",
        "location 111.00,38.00: no QWeather response (point far)",
        "location 110.91,37.45: hourly.dew_point_2m is masked as missing: no hour has dew",
    )


# --- error codes: the body's (v1) or the HTTP status with the v2 error body

V2 = "https://dev.qweather.com/docs/resource/error-code/#"


def v2(status: int, title: str, detail: str, params: list[str] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "type": V2 + title.lower().replace(" ", "-")}
    error.update(title=title, detail=detail)
    if params:
        error["invalidParams"] = params
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (200, {"code": "204"}, "QWeather code 204: QWeather has no data for this location"),
        (400, v2(400, "Invalid Parameter", "bad value", ["location"]), "[invalid: location]"),
        (401, v2(401, "Unauthorized", "Invalid token"), "check YUJING_QWEATHER_KEY_ID"),
        (200, {"code": "401"}, "check YUJING_QWEATHER_KEY_ID"),
        (402, {"code": "402"}, "quota used up or balance too low"),
        (403, v2(403, "Invalid Host", "Use your API Host"), "YUJING_QWEATHER_API_HOST"),
        (403, v2(403, "No Credit", "Insufficient credit"), "No Credit"),
        (404, {"code": "404"}, "check YUJING_QWEATHER_PATH"),
    ],
)
@respx.mock
async def test_a_request_error_fails_the_poll_at_once_in_one_line_saying_what_to_do(
    status: int, body: dict[str, Any], says: str
) -> None:
    key, _ = key_pair()
    route = respx.get(GRID_URL).mock(return_value=httpx.Response(status, json=body))
    async with httpx.AsyncClient() as client:
        feed, sleep = jwt_feed(client, key)
        with pytest.raises(FeedError) as error:
            await feed.fetch(POINTS[:1], ["temperature_2m"])
    assert says in error.value.reason
    assert "\n" not in error.value.reason and "location 110.89,37.43" in error.value.reason
    assert route.call_count == 1 and sleep.calls == []  # repeating it cannot help


@respx.mock
async def test_429_and_500_are_retried_with_backoff_then_fail_naming_the_plan_limit() -> None:
    key, _ = key_pair()
    respx.get(GRID_URL).mock(
        side_effect=[
            httpx.Response(500, json=v2(500, "Internal Error", "try later")),
            httpx.Response(429, json={"code": "429"}),
            httpx.Response(429, json={"code": "429"}),
        ]
    )
    async with httpx.AsyncClient() as client:
        feed, sleep = jwt_feed(client, key, retries=2)
        with pytest.raises(FeedError) as error:
            await feed.fetch(POINTS[:1], ["temperature_2m"])
    assert sleep.calls == [1.0, 2.0]
    assert "YUJING_QWEATHER_MAX_CONCURRENCY" in error.value.reason
    assert "after 3 attempts" in error.value.reason


@respx.mock
async def test_a_5xx_then_an_answer_serves_the_poll() -> None:
    key, _ = key_pair()
    respx.get(GRID_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=hourly_answer(START))]
    )
    async with httpx.AsyncClient() as client:
        feed, sleep = jwt_feed(client, key)
        batch = await feed.fetch(POINTS[:1], ["temperature_2m"])
    assert sleep.calls == [1.0] and batch.shape == (1, 72)


@respx.mock
async def test_the_legacy_key_never_appears_in_an_error() -> None:
    secret = "legacy-key-echoed"
    respx.get(GRID_URL).mock(
        return_value=httpx.Response(401, json=v2(401, "Unauthorized", f"bad key {secret}"))
    )
    auth = QWeatherAuth(api_key=SecretStr(secret), clock=lambda: NOW)
    async with httpx.AsyncClient() as client:
        feed = QWeatherFeed(client, host=API_HOST, auth=auth, retries=0, backoff_seconds=0)
        with pytest.raises(FeedError) as error:
            await feed.fetch(POINTS[:1], ["temperature_2m"])
    assert secret not in error.value.reason and "***" in error.value.reason


# --- settings: what the daemon refuses to start with


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, feed="qweather", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({}, "needs YUJING_QWEATHER_API_HOST"),
        ({"qweather_api_host": API_HOST}, "QWeather needs credentials"),
        (
            {"qweather_api_host": API_HOST, "qweather_key_id": KEY_ID},
            "JWT needs all of YUJING_QWEATHER_KEY_ID, YUJING_QWEATHER_PROJECT_ID",
        ),
    ],
)
async def test_a_qweather_feed_missing_a_setting_is_refused_naming_it(
    values: dict[str, object], says: str
) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match=says):
            build_feed(settings(**values), client)


async def test_feeds_in_order_build_a_chain_and_an_unknown_name_is_refused() -> None:
    _, pem = key_pair()
    configured = settings(
        feeds="openmeteo, qweather",
        qweather_api_host=API_HOST,
        qweather_key_id=KEY_ID,
        qweather_project_id=PROJECT_ID,
        qweather_private_key=SecretStr(pem),
    )
    async with httpx.AsyncClient() as client:
        feed = build_feed(configured, client)
    assert isinstance(feed, FeedChain) and feed.members == ("open-meteo", "qweather")
    with pytest.raises(ValidationError, match="YUJING_FEEDS names metoffice"):
        settings(feeds="openmeteo,metoffice")
