"""QWeather's official weather alerts (实时天气预警): a client, not yet wired to the rules.

`GET /weatheralert/v1/current/{latitude}/{longitude}` (two decimals) answers the
alerts in force at a location, relayed from the official issuers (in China the
CMA signals of the national early-warning release system, 12379):
https://dev.qweather.com/docs/api/warning/weather-alert/. The v7 API
(`/v7/warning/now`) was retired on 2026-10-01 and is not supported.

Each alert becomes an `OfficialAlert`, plain data for the official-warning
rules (issue 15's `official:` conditions) to consume: the issuer, the event
(QWeather's code and name, e.g. 1006 大风), the CAP-style message type (new,
update with the ids it supersedes, cancel), severity, the signal colour as a
`Level` where it is one of blue/yellow/orange/red, and its times. Requests,
retries and error codes are the forecast feed's (`QWeatherClient`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.qweather import QWeatherClient
from rules.types import Level

PATH = "/weatheralert/v1/current"


@dataclass(frozen=True)
class OfficialAlert:
    """One official alert in force, as QWeather relays it."""

    id: str
    sender: str | None
    issued: datetime
    message_type: str  # new, update or cancel
    supersedes: tuple[str, ...]  # the ids an update or cancel replaces
    event_code: str
    event_name: str
    severity: str | None
    urgency: str | None
    certainty: str | None
    color: str | None  # QWeather's colour code, e.g. blue, yellow, orange, red
    level: Level | None  # the colour as a warning level, when it is one
    effective: datetime | None
    onset: datetime | None
    expires: datetime | None
    headline: str
    description: str


class QWeatherAlerts:
    """The alerts in force at forecast points."""

    def __init__(self, api: QWeatherClient) -> None:
        self._api = api

    async def current(self, point: ForecastPoint) -> list[OfficialAlert]:
        """The alerts in force at `point`; `FeedError` (one line) when the request fails."""
        where = f"alerts at {point.latitude:.2f},{point.longitude:.2f}"
        url = f"{self._api.base}{PATH}/{point.latitude:.2f}/{point.longitude:.2f}"
        body = await self._api.get(url, {"localTime": "false", "lang": "zh"}, where)
        return parse_alerts(body, where)


def parse_alerts(body: object, where: str) -> list[OfficialAlert]:
    """The alerts of one answer; `FeedError` naming what is malformed."""
    if not isinstance(body, Mapping):
        raise FeedError(f"{where}: answer is a JSON {type(body).__name__}, expected an object")
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("zeroResult") is True:
        return []
    alerts = body.get("alerts")
    if alerts is None:
        return []
    if not isinstance(alerts, list):
        raise FeedError(f"{where}: alerts is not a list")
    return [_alert(item, f"{where}: alerts[{k}]") for k, item in enumerate(alerts)]


def _alert(item: object, where: str) -> OfficialAlert:
    if not isinstance(item, Mapping):
        raise FeedError(f"{where}: is not an object")
    message = _mapping(item, "messageType", where)
    event = _mapping(item, "eventType", where)
    color = item.get("color")
    color_code = _text(color.get("code")) if isinstance(color, Mapping) else None
    kind = _required(message, "code", f"{where}.messageType")
    if kind not in {"new", "update", "cancel"}:
        raise FeedError(f"{where}: messageType.code is {kind!r}, expected new, update or cancel")
    supersedes = message.get("supersedes") or []
    if not isinstance(supersedes, list) or not all(isinstance(s, str) for s in supersedes):
        raise FeedError(f"{where}: messageType.supersedes is not a list of ids")
    return OfficialAlert(
        id=_required(item, "id", where),
        sender=_text(item.get("senderName")),
        issued=_issued(item, where),
        message_type=kind,
        supersedes=tuple(supersedes),
        event_code=_required(event, "code", f"{where}.eventType"),
        event_name=_required(event, "name", f"{where}.eventType"),
        severity=_text(item.get("severity")),
        urgency=_text(item.get("urgency")),
        certainty=_text(item.get("certainty")),
        color=color_code,
        level=_level(color_code),
        effective=_time(item, "effectiveTime", where),
        onset=_time(item, "onsetTime", where),
        expires=_time(item, "expiredTime", where),
        headline=_text(item.get("headline")) or "",
        description=_text(item.get("description")) or "",
    )


def _level(color: str | None) -> Level | None:
    try:
        return Level.parse(color) if color else None
    except ValueError:
        return None  # white, green, black …: not one of the four signal colours


def _mapping(item: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = item.get(key)
    if not isinstance(value, Mapping):
        raise FeedError(f"{where}: {key} is missing or not an object")
    return value


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _required(item: Mapping[str, object], key: str, where: str) -> str:
    value = _text(item.get(key))
    if value is None:
        raise FeedError(f"{where}: {key} is missing")
    return value


def _issued(item: Mapping[str, object], where: str) -> datetime:
    issued = _time(item, "issuedTime", where)
    if issued is None:
        raise FeedError(f"{where}: issuedTime is missing")
    return issued


def _time(item: Mapping[str, object], key: str, where: str) -> datetime | None:
    text = _text(item.get(key))
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FeedError(f"{where}: {key} is {text!r}, not ISO-8601") from None
    if moment.tzinfo is None:
        raise FeedError(f"{where}: {key} {text!r} has no UTC offset")
    return moment


__all__ = ["OfficialAlert", "QWeatherAlerts", "parse_alerts"]
