"""QWeather answers as its API writes them (strings, local offsets), for the tests that need one.

The shape follows the documented hourly forecast response
(https://dev.qweather.com/docs/api/weather/weather-hourly-forecast/): `code`
"200", `updateTime`, and `hourly[]` with `fxTime` carrying a UTC offset and
every number as a string; `cloud` and `dew` may be empty.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

API_HOST = "abc1234xyz.re.qweatherapi.com"
GRID_URL = f"https://{API_HOST}/v7/grid-weather/72h"
KEY_ID = "KD4T7YQ2PX"
PROJECT_ID = "3AE7NBRQ5U"
CST = timezone(timedelta(hours=8))


def hour(start: datetime, k: int, icon: int = 101, **values: str) -> dict[str, str]:
    """One hour of a QWeather answer, `k` hours after `start`, written at +08:00."""
    when = (start + timedelta(hours=k)).astimezone(CST)
    row = {
        "fxTime": when.strftime("%Y-%m-%dT%H:%M+08:00"),
        "temp": "-3",
        "icon": str(icon),
        "text": "多云",
        "wind360": "315",
        "windDir": "西北风",
        "windScale": "3-4",
        "windSpeed": "18",
        "humidity": "72",
        "precip": "0.0",
        "pressure": "1021",
        "cloud": "",
        "dew": "-7",
    }
    row.update(values)
    return row


def hourly_answer(
    start: datetime, hours: int = 72, row: Callable[[int], dict[str, str]] | None = None
) -> dict[str, Any]:
    """A whole answer of `hours` hours from `start` (whole hour, UTC); `row(k)` makes hour k."""
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    make = row or (lambda k: hour(start, k))
    return {
        "code": "200",
        "updateTime": start.astimezone(CST).strftime("%Y-%m-%dT%H:%M+08:00"),
        "fxLink": "https://www.qweather.com",
        "hourly": [make(k) for k in range(hours)],
        "refer": {"sources": ["QWeather"], "license": ["QWeather Developers License"]},
    }


def key_pair() -> tuple[Ed25519PrivateKey, str]:
    """A fresh Ed25519 key and its private PEM text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii")
    return key, pem


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
