# Long module: the feed, its client and its parser share icon tables, error codes and units
"""QWeather (和风天气, https://dev.qweather.com): the hourly forecast feed and its parser.

One GET per distinct location (`location=lon,lat`, two decimals, as QWeather
takes it), concurrently on the shared client, retried on 429/5xx/timeouts/
connection errors like the Open-Meteo feed. The path is the grid hourly
forecast (`/v7/grid-weather/72h`, model data at the coordinates, UTC) unless
configured otherwise (`/v7/weather/168h`: 168 hours from the nearest city).

Authentication (a JWT signed with the project's Ed25519 key, or the legacy API
key) is `qweather_auth.py`; both are secrets, redacted from every message.

QWeather's hourly forecast states no units: `unit=m` (metric) is requested and
its documented units converted to the registry's (`rules/variables.py`):
wind km/h → m/s. What QWeather has no field for is derived from the hour's
weather icon (https://icons.qweather.com) and stated as a stand-in here and in
docs/feeds.md:

| variable | from |
| --- | --- |
| temperature_2m, relative_humidity_2m, dew_point_2m, precipitation | temp, humidity, dew, precip |
| wind_speed_10m | windSpeed ÷ 3.6 |
| weather_code | the icon mapped to its WMO code (`ICON_WMO`) |
| rain / showers | precip in hours whose icon is rain / showers (half of it for sleet) |
| snowfall | precip × 0.7 cm/mm in hours whose icon is snow (half of it for sleet) |

Not served (left missing, so rules reading them are undecided unless another
feed of the chain serves them): apparent_temperature, soil_temperature_0cm,
visibility, wind_gusts_10m, freezing_level_height, snow_depth.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime

import httpx
import numpy as np
import numpy.typing as npt

from dispatcher.feeds.base import (
    FeedError,
    ForecastPoint,
    at_locations,
    check_variables,
    on_hours,
    union_hours,
)
from dispatcher.feeds.http import Retry, get_once, json_or_none, with_retries
from dispatcher.feeds.qweather_auth import QWeatherAuth
from rules.types import FloatArray, ForecastBatch
from rules.variables import VARIABLES

log = logging.getLogger("yujing.feed")

SOURCE = "qweather"
DEFAULT_PATH = "/v7/grid-weather/72h"

# --- the weather icon: WMO code and the kind of precipitation it stands for

_RAIN = frozenset({305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 399})
_SHOWERS = frozenset({300, 301, 302, 303, 304, 350, 351})
_SNOW = frozenset({400, 401, 402, 403, 407, 408, 409, 410, 457, 499})
_SLEET = frozenset({404, 405, 406, 456})  # rain and snow: half of the precipitation each
SNOW_CM_PER_MM = 0.7  # Open-Meteo's convention: 7 cm of fresh snow ≈ 10 mm of water

ICON_WMO: Mapping[int, int] = {
    100: 0, 150: 0, 102: 1, 152: 1, 101: 2, 103: 2, 151: 2, 153: 2, 104: 3,
    300: 80, 350: 80, 301: 81, 351: 81, 302: 95, 303: 95, 304: 96,
    305: 61, 309: 51, 399: 61, 306: 63, 314: 63, 307: 65, 308: 65, 310: 65, 311: 65,
    312: 65, 315: 65, 316: 65, 317: 65, 318: 65, 313: 66,
    400: 71, 408: 71, 499: 71, 401: 73, 409: 73, 402: 75, 403: 75, 410: 75,
    407: 85, 457: 85, 404: 68, 405: 68, 406: 68, 456: 68,
    500: 10, 501: 45, 509: 45, 510: 45, 514: 45, 515: 45,
    502: 5, 511: 5, 512: 5, 513: 5, 503: 7, 504: 6, 507: 9, 508: 9,
}  # fmt: skip
"""QWeather icon → WMO 4677 code (fog 45, freezing rain 66, snow 71/73/75, sleet 68 …).
900 (hot), 901 (cold) and 999 (unknown) say nothing about the sky: NaN."""

SERVES: frozenset[str] = frozenset(
    {
        "temperature_2m",
        "relative_humidity_2m",
        "dew_point_2m",
        "precipitation",
        "rain",
        "showers",
        "snowfall",
        "weather_code",
        "wind_speed_10m",
    }
)
"""The registry's variables this feed can serve (directly or by a stated stand-in)."""

# --- errors: QWeather's status codes, in the body (v1) or as HTTP status (v2)

_WHAT_TO_DO: Mapping[int, str] = {
    204: "QWeather has no data for this location now; check the zone coordinates "
    "(the grid forecast is global; a city forecast may not cover them)",
    400: "QWeather refused the request; check YUJING_QWEATHER_PATH and the location",
    401: "authentication failed: check YUJING_QWEATHER_KEY_ID, YUJING_QWEATHER_PROJECT_ID "
    "and YUJING_QWEATHER_PRIVATE_KEY (or YUJING_QWEATHER_API_KEY) and that this "
    "machine's clock is right",
    402: "quota used up or balance too low: top up or upgrade the plan in the QWeather "
    "console, or wait for the quota to reset",
    403: "no access: check that YUJING_QWEATHER_API_HOST is your project's API host, the "
    "credential's request restrictions, and that the plan covers this API",
    404: "QWeather has no such data or location; check YUJING_QWEATHER_PATH",
    429: "over the plan's requests per minute: lower YUJING_QWEATHER_MAX_CONCURRENCY or "
    "raise the plan's QPM",
    500: "QWeather's service failed or timed out; if it persists, contact QWeather",
}
_RETRIED = frozenset({429, 500, 502, 503, 504})


def qweather_error(code: int, detail: str = "") -> str:
    """One line for a QWeather status `code`: what it means and what to do."""
    what = _WHAT_TO_DO.get(code, "unexpected QWeather status")
    return f"QWeather code {code}" + (f" ({detail})" if detail else "") + f": {what}"


def _error_of(body: object) -> tuple[int, str] | None:
    """(code, detail) from a QWeather error body, v1 `{"code": "401"}` or v2
    `{"error": {"status": 401, "title": …, "detail": …, "invalidParams": […]}}`."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        status = error.get("status")
        title = str(error.get("title") or "").strip()
        detail = str(error.get("detail") or "").strip()
        params = error.get("invalidParams")
        text = "; ".join(t for t in (title, detail) if t)
        if isinstance(params, list) and params:
            text += f" [invalid: {', '.join(map(str, params))}]"
        code = int(status) if isinstance(status, int | str) and str(status).isdigit() else 0
        return code, text[:300]
    v1 = body.get("code")
    if isinstance(v1, str | int) and str(v1).isdigit() and str(v1) != "200":
        return int(v1), ""
    return None


def api_base(host: str) -> str:
    """The API host setting as a base URL: a bare host gets https://."""
    host = host.strip().rstrip("/")
    return host if "://" in host else f"https://{host}"


def location_param(point: ForecastPoint) -> str:
    """`lon,lat` with two decimals, as QWeather takes coordinates."""
    return f"{point.longitude:.2f},{point.latitude:.2f}"


# --- the feed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class QWeatherClient:
    """Requests to one QWeather API host: authenticated, retried on 429/5xx/timeouts/
    connection errors with backoff, QWeather's error codes turned into `FeedError`s."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        host: str,
        auth: QWeatherAuth,
        retries: int,
        backoff_seconds: float,
        timeout_seconds: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.base = api_base(host)
        self._client = client
        self._auth = auth
        self._retries = retries
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds  # None: the shared client's own timeout
        self._sleep = sleep

    async def get(self, url: str, params: Mapping[str, str], where: str) -> object:
        """GET with retries; the decoded body of a successful answer, else `FeedError`
        (one line: `where`, the status, QWeather's code and what to do)."""

        async def attempt() -> object:
            answer = await get_once(
                self._client,
                url,
                params=params,
                headers=self._auth.headers(),
                timeout=self._timeout,
                redact=self._redact,
                bad_url="bad QWeather API host",
            )
            if isinstance(answer, str):
                return Retry(answer)
            body = json_or_none(answer)
            error = _error_of(body)
            status = answer.status_code
            if status == 200 and error is None:
                if body is None:
                    raise FeedError("QWeather: HTTP 200 but the body is not JSON")
                return body
            code, detail = error if error is not None else (status, "")
            code = code or status
            text = self._redact(qweather_error(code, detail))
            said = f"{where}: HTTP {status}, {text}"
            if code not in _RETRIED and status not in _RETRIED:
                raise FeedError(said)
            return Retry(said)

        def warn(problem: str, number: int, delay: float) -> None:
            log.warning(
                "qweather: %s; retry %d of %d in %.1f s", problem, number, self._retries, delay
            )

        return await with_retries(
            attempt, retries=self._retries, backoff=self._backoff, sleep=self._sleep, warn=warn
        )

    def _redact(self, text: str) -> str:
        for secret in self._auth.secrets():
            text = text.replace(secret, "***")
        return text


class QWeatherFeed:
    """Polls the QWeather hourly forecast for a set of points.

    Points that share a location at two decimals share one request. Variables
    QWeather cannot serve (not in `SERVES`) are left out of the batch and said in
    its `problems`; asking only for those is a `FeedError`. `issued_at` is
    `clock()` when the fetch starts.
    """

    serves = SERVES

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        host: str,
        auth: QWeatherAuth,
        path: str = DEFAULT_PATH,
        retries: int,
        backoff_seconds: float,
        timeout_seconds: float | None = None,
        max_concurrency: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.source = SOURCE
        self.api = QWeatherClient(
            client,
            host=host,
            auth=auth,
            retries=retries,
            backoff_seconds=backoff_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
        )
        self._url = self.api.base + "/" + path.strip().lstrip("/")
        self._max_concurrency = max_concurrency
        self._clock = clock

    def __repr__(self) -> str:
        return f"QWeatherFeed(url={self._url!r})"

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        """Hourly servable `variables` at `points`; `FeedError` if any request fails."""
        names = check_variables(variables)
        servable(names)  # asking only for what QWeather lacks fails before any request
        issued_at = self._clock()
        locations = sorted({location_param(point) for point in points})
        answers: dict[str, object] = {}
        slots = asyncio.Semaphore(self._max_concurrency)

        async def run(location: str) -> None:
            async with slots:
                params = {"location": location, "unit": "m", "lang": "en"}
                answers[location] = await self.api.get(self._url, params, f"location {location}")

        try:
            async with asyncio.TaskGroup() as group:
                for location in locations:
                    group.create_task(run(location))
        except ExceptionGroup as failures:
            first = next((e for e in failures.exceptions if isinstance(e, FeedError)), None)
            if first is None:
                raise
            raise first from None
        return parse_qweather(
            {location_param(p): answers[location_param(p)] for p in points},
            points,
            names,
            self.source,
            issued_at,
        )


def servable(names: Sequence[str]) -> tuple[str, ...]:
    """The requested names QWeather serves; `FeedError` when none."""
    served = tuple(name for name in names if name in SERVES)
    if not served:
        raise FeedError(
            f"QWeather serves none of {', '.join(names)} (it serves {', '.join(sorted(SERVES))})"
        )
    return served


# --- the response parser (the live feed and the replay of a recording both use it)

_HOUR = np.timedelta64(3600, "s")
_FIELDS = {
    "temperature_2m": "temp",
    "relative_humidity_2m": "humidity",
    "dew_point_2m": "dew",
    "precipitation": "precip",
    "wind_speed_10m": "windSpeed",
}


def parse_qweather(
    responses: Mapping[str, object],
    points: Sequence[ForecastPoint],
    variables: Collection[str],
    source: str,
    issued_at: datetime,
) -> ForecastBatch:
    """Validate QWeather hourly responses (`location` → decoded body) into one batch.

    Every point's `location_param` must have a response with `code` "200" and a
    non-empty `hourly` list stepping by one hour with offset-qualified `fxTime`s;
    anything else at any location raises `FeedError` listing every problem found.
    Points whose hours differ are put on the union of the hours (NaN where a
    location has none). Values are QWeather's strings (or numbers); empty or
    null is NaN. A field with a value that is not a number, or absent from every
    hour, is masked as missing at that location (the variables read from it) and
    said in the batch's `problems`, as are the requested variables QWeather has
    no field for (left out, like a variable no location delivered).
    """
    names = servable(tuple(sorted(set(variables))))
    if not points:
        raise FeedError("no forecast points requested")
    locations = list(dict.fromkeys(location_param(point) for point in points))
    labels = [f"location {location}" for location in locations]
    fatal: list[tuple[int, str]] = []  # (location, problem): the batch is refused
    masked: list[tuple[int, str]] = []  # (location, problem): masked as missing there
    parsed: dict[str, tuple[npt.NDArray[np.datetime64], dict[str, FloatArray]]] = {}
    for index, location in enumerate(locations):
        if location not in responses:
            ids = ", ".join(p.id for p in points if location_param(p) == location)
            fatal.append((index, f"no QWeather response (point {ids})"))
            continue
        try:
            times, values, problems = _location(responses[location], names)
        except FeedError as error:
            fatal.append((index, error.reason))
            continue
        parsed[location] = times, values
        masked.extend((index, problem) for problem in problems)
    if fatal:
        found = at_locations(fatal, labels) + at_locations(masked, labels)
        raise FeedError("; ".join(found), found)
    said = [
        f"hourly.{name} is not served by QWeather (it has no such field)"
        for name in sorted(set(variables) - set(names))
    ]
    said += at_locations(masked, labels)
    if said:
        log.warning("%s: masked as missing: %s", source, "; ".join(said))
    per_point = [parsed[location_param(point)] for point in points]
    times = union_hours([axis for axis, _ in per_point])
    arrays = {
        name: np.vstack([on_hours(times, axis, values[name]) for axis, values in per_point])
        for name in names
    }
    return ForecastBatch(
        source=source,
        issued_at=issued_at,
        point_ids=tuple(p.id for p in points),
        latitudes=np.array([p.latitude for p in points], dtype=np.float64),
        longitudes=np.array([p.longitude for p in points], dtype=np.float64),
        times=times,
        variables=arrays,
        units={name: VARIABLES[name].unit for name in names},
        problems=tuple(said),
    )


def is_qweather(body: object) -> bool:
    """Whether a decoded JSON body is a QWeather hourly response (has `code` and `hourly`)."""
    return isinstance(body, Mapping) and "code" in body and isinstance(body.get("hourly"), list)


# the QWeather fields each servable variable is read from
_READS: Mapping[str, tuple[str, ...]] = {
    **{name: (field,) for name, field in _FIELDS.items()},
    "weather_code": ("icon",),
    "rain": ("precip", "icon"),
    "showers": ("precip", "icon"),
    "snowfall": ("precip", "icon"),
}


def _location(
    body: object, names: Sequence[str]
) -> tuple[npt.NDArray[np.datetime64], dict[str, FloatArray], list[str]]:
    """One location's hours, values and problems (each masked as missing); `FeedError`
    when it has no usable hourly axis."""
    if not isinstance(body, Mapping):
        raise FeedError(f"response is a JSON {type(body).__name__}, expected an object")
    error = _error_of(body)
    if error is not None:
        raise FeedError(qweather_error(*error))
    if str(body.get("code")) != "200":
        raise FeedError(f'code is {body.get("code")!r}, expected "200"')
    hourly = body.get("hourly")
    if not isinstance(hourly, list) or not hourly:
        raise FeedError("hourly is missing or empty")
    if not all(isinstance(hour, Mapping) for hour in hourly):
        raise FeedError("hourly holds something other than objects")
    seconds = np.array([_fx_seconds(h, k) for k, h in enumerate(hourly)], dtype=np.int64)
    times = seconds.astype("datetime64[s]")
    steps = np.diff(times)
    if len(steps) and not np.all(steps == _HOUR):
        bad = int(np.argmax(steps != _HOUR))
        raise FeedError(
            f"hourly is not hourly ascending: {times[bad]} is followed by {times[bad + 1]}"
        )
    raw: dict[str, FloatArray] = {}
    wrong: dict[str, str] = {}  # field → its problem
    for field in sorted({field for name in names for field in _READS[name]}):
        raw[field], problem = _numbers(hourly, field)
        if problem is not None:
            wrong[field] = problem
    # said per variable, as the Open-Meteo feed does, so each is told why it is missing
    problems = [
        f"hourly.{name} is masked as missing: {'; '.join(said)}"
        for name in names
        if (said := [wrong[field] for field in _READS[name] if field in wrong])
    ]
    values_of: dict[str, FloatArray] = {}
    for name in names:
        if name in _FIELDS:
            values_of[name] = raw[_FIELDS[name]].copy()
        elif name == "weather_code":
            values_of[name] = np.array(
                [ICON_WMO.get(int(i), np.nan) if np.isfinite(i) else np.nan for i in raw["icon"]],
                dtype=np.float64,
            )
        else:
            values_of[name] = raw["precip"] * _share(raw["icon"], name)
    if "wind_speed_10m" in values_of:
        values_of["wind_speed_10m"] = values_of["wind_speed_10m"] / 3.6  # km/h → m/s
    return times, values_of, problems


def _share(icons: FloatArray, name: str) -> FloatArray:
    """Per hour, the part of `precip` that counts as `name` (rain, showers, snowfall),
    by the hour's icon; NaN when the icon is missing."""
    full = {"rain": _RAIN, "showers": _SHOWERS, "snowfall": _SNOW}[name]
    half = {"rain": _SLEET - {406, 456}, "showers": frozenset({406, 456}), "snowfall": _SLEET}[name]
    scale = SNOW_CM_PER_MM if name == "snowfall" else 1.0
    out = np.zeros(len(icons), dtype=np.float64)
    for k, icon in enumerate(icons):
        if not np.isfinite(icon):
            out[k] = np.nan
        elif int(icon) in full:
            out[k] = scale
        elif int(icon) in half:
            out[k] = 0.5 * scale
    return out


def _fx_seconds(hour: Mapping[str, object], index: int) -> int:
    text = hour.get("fxTime")
    if not isinstance(text, str):
        raise FeedError(f"hourly[{index}].fxTime is missing")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FeedError(f"hourly[{index}].fxTime is {text!r}, not ISO-8601") from None
    if moment.tzinfo is None:
        raise FeedError(f"hourly[{index}].fxTime {text!r} has no UTC offset")
    return int(moment.timestamp())


def _numbers(hourly: Sequence[Mapping[str, object]], field: str) -> tuple[FloatArray, str | None]:
    """One field of every hour as float64 (numeric strings or numbers; empty/null is
    NaN), or all NaN and the problem when a value is not a number or no hour has the field."""
    out = np.full(len(hourly), np.nan, dtype=np.float64)
    if not any(field in hour for hour in hourly):
        return out, f"no hour has {field}"
    for k, hour in enumerate(hourly):
        value = hour.get(field)
        if value is None or value == "":
            continue
        number: float | None = None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None:
            return np.full(len(hourly), np.nan), (
                f"hourly[{k}].{field} is {value!r}, expected a number"
            )
        out[k] = number if math.isfinite(number) else np.nan
    return out, None
