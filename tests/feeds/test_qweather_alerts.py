"""QWeatherAlerts: official alerts in force at a point, as QWeather's v1 alert API relays them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.qweather import QWeatherClient
from dispatcher.feeds.qweather_alerts import QWeatherAlerts, parse_alerts
from dispatcher.feeds.qweather_auth import QWeatherAuth
from rules.types import Level
from tests.qweather import API_HOST

SEAT = ForecastPoint("p37.4300_110.8900", 37.4312, 110.8935)
URL = f"https://{API_HOST}/weatheralert/v1/current/37.43/110.89"
CST = timezone(timedelta(hours=8))


def alert(**changes: Any) -> dict[str, Any]:
    """One alert shaped like the documented example (a county's 大风 update)."""
    item: dict[str, Any] = {
        "id": "202601061119105837988676",
        "senderName": "柳林县气象台",
        "issuedTime": "2026-01-06T11:19+08:00",
        "messageType": {"code": "update", "supersedes": ["202601051140100706230391"]},
        "eventType": {"name": "寒潮", "code": "1004"},
        "urgency": None,
        "severity": "moderate",
        "certainty": None,
        "icon": "1004",
        "color": {"code": "yellow", "red": 255, "green": 255, "blue": 0, "alpha": 1},
        "effectiveTime": "2026-01-06T11:19+08:00",
        "onsetTime": "2026-01-06T11:19+08:00",
        "expiredTime": "2026-01-07T11:19+08:00",
        "headline": "柳林县气象台更新寒潮黄色预警信号",
        "description": "预计未来48小时内我县气温将下降8℃以上……",
    }
    item.update(changes)
    return item


def answer(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"tag": "ec71f8", "zeroResult": not alerts, "attributions": ["QWeather"]},
        "alerts": list(alerts),
    }


def alerts_client(client: httpx.AsyncClient) -> QWeatherAlerts:
    auth = QWeatherAuth(api_key=SecretStr("k"), clock=lambda: datetime.now(UTC))
    api = QWeatherClient(client, host=API_HOST, auth=auth, retries=0, backoff_seconds=0)
    return QWeatherAlerts(api)


@respx.mock
async def test_an_official_alert_in_force_is_read_with_its_issuer_level_and_times() -> None:
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=answer(alert())))
    async with httpx.AsyncClient() as client:
        [found] = await alerts_client(client).current(SEAT)
    assert route.calls.last.request.url.params["localTime"] == "false"
    assert found.sender == "柳林县气象台" and found.event_name == "寒潮"
    assert found.event_code == "1004"
    assert found.level is Level.YELLOW and found.color == "yellow"
    assert found.message_type == "update"
    assert found.supersedes == ("202601051140100706230391",)
    assert found.expires == datetime(2026, 1, 7, 11, 19, tzinfo=CST)
    assert found.urgency is None and found.severity == "moderate"


@respx.mock
async def test_no_alert_in_force_is_an_empty_list() -> None:
    respx.get(URL).mock(return_value=httpx.Response(200, json=answer()))
    async with httpx.AsyncClient() as client:
        assert await alerts_client(client).current(SEAT) == []


@respx.mock
async def test_an_error_code_is_one_line_saying_what_to_do() -> None:
    body = {"error": {"status": 403, "title": "Forbidden", "detail": "No access to alerts"}}
    respx.get(URL).mock(return_value=httpx.Response(403, json=body))
    async with httpx.AsyncClient() as client:
        with pytest.raises(FeedError) as error:
            await alerts_client(client).current(SEAT)
    assert error.value.reason.startswith("alerts at 37.43,110.89: HTTP 403, QWeather code 403")
    assert "the plan covers this API" in error.value.reason


def test_a_colour_that_is_no_signal_level_has_no_level() -> None:
    [found] = parse_alerts(answer(alert(color={"code": "white"})), "here")
    assert found.level is None and found.color == "white"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"messageType": {"code": "draft"}}, "messageType.code is 'draft'"),
        ({"issuedTime": ""}, "issuedTime is missing"),
        ({"expiredTime": "2026-01-07T11:19"}, "has no UTC offset"),
        ({"eventType": {"code": "1004"}}, "eventType: name is missing"),
    ],
)
def test_a_malformed_alert_is_refused_naming_the_field(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(FeedError, match=says):
        parse_alerts(answer(alert(**changes)), "here")
