"""Write the Liulin drill scenarios as recorded Open-Meteo responses.

    python examples/liulin/scenarios/make_scenarios.py

writes, next to this file:

- ``coldwave-2026-01.json``: a cold front crosses the county in the early
  morning of 7 January 2026 (local time) — README.md says what must warn,
  where and when;
- ``calm-2026-01.json``: a seasonable, quiet week in which no rule may fire.

Both are exactly what ``/v1/forecast`` returns for a multi-location request with
``timezone=GMT&wind_speed_unit=ms&past_days=3&forecast_days=7`` made on
2026-01-06: a JSON list with one object per location, hourly times in GMT from
2026-01-03T00:00, 240 hours. The locations are the forecast points of
``../zones.yaml``: one per 0.02° grid cell holding a zone, the cell centre
rounded to 4 decimals, sorted by (latitude, longitude) — the rule by which the
feed deduplicates points (``dispatcher/feeds/points.py``), reimplemented here
because this script uses the standard library only.

Deterministic: no randomness, so regenerating gives byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ZONES_FILE = HERE.parent / "zones.yaml"

START = datetime(2026, 1, 3, tzinfo=UTC)  # first hour of the file, GMT
HOURS = 24 * (3 + 7)  # past_days=3 + forecast_days=7
LOCAL_OFFSET_HOURS = 8  # Asia/Shanghai, no daylight saving
GRID_DEG = 0.02

#: Points at or east of this longitude are the "higher eastern points" that the
#: cold-wave scenario hits hardest (orange); all others get yellow.
EAST_LON = 110.98

HOURLY_UNITS = {
    "time": "iso8601",
    "temperature_2m": "°C",
    "apparent_temperature": "°C",
    "soil_temperature_0cm": "°C",
    "precipitation": "mm",
    "rain": "mm",
    "showers": "mm",
    "snowfall": "cm",
    "weather_code": "wmo code",
    "visibility": "m",
    "wind_speed_10m": "m/s",
    "wind_gusts_10m": "m/s",
}

_LOCATION = re.compile(r"location:\s*\{\s*lat:\s*(-?[0-9.]+)\s*,\s*lon:\s*(-?[0-9.]+)\s*\}")
_ZONE = re.compile(r"^\s*-\s+id:", re.MULTILINE)


# --- forecast points


def zone_locations(text: str) -> list[tuple[float, float]]:
    """(lat, lon) of every zone in zones.yaml text (written `location: {lat: …, lon: …}`)."""
    found = [(float(lat), float(lon)) for lat, lon in _LOCATION.findall(text)]
    zones = len(_ZONE.findall(text))
    if len(found) != zones:
        # stdlib has no YAML parser: refuse rather than silently miss a zone
        raise SystemExit(
            f"zones.yaml has {zones} zones but {len(found)} 'location: {{lat: …, lon: …}}' "
            "lines; write every location in that one-line form"
        )
    return found


def grid_points(
    locations: Sequence[tuple[float, float]], resolution: float = GRID_DEG
) -> list[tuple[float, float]]:
    """The distinct grid-cell centres of `locations`, rounded to 4 decimals, sorted.

    Cell = (floor(lat / resolution), floor(lon / resolution)); the same rule as
    dispatcher/feeds/points.py, including its epsilon for values on a cell edge.
    """
    cells = {
        (math.floor(lat / resolution + 1e-9), math.floor(lon / resolution + 1e-9))
        for lat, lon in locations
    }
    return sorted(
        (round((row + 0.5) * resolution, 4) + 0.0, round((col + 0.5) * resolution, 4) + 0.0)
        for row, col in cells
    )


def elevation(lat: float, lon: float) -> float:
    """A plausible ground height (m): ~630 m at the Yellow River, ~1250 m in the east."""
    return float(round(max(600.0, 630.0 + (lon - 110.72) * 1750.0 + (lat - 37.42) * 300.0)))


# --- time


def local_index(day: int, hour: float) -> float:
    """File index of January `day`, `hour` o'clock Beijing time (may lie outside the file)."""
    local = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour)
    return (local - START).total_seconds() / 3600 - LOCAL_OFFSET_HOURS


def local_hour(index: int) -> int:
    """Beijing-time hour of day of file index `index`."""
    return (index + LOCAL_OFFSET_HOURS) % 24


def curve(anchors: Sequence[tuple[float, float]]) -> list[float]:
    """Hourly values through (index, value) anchors, cosine-eased between them.

    Easing keeps every value between its two anchors, so a day's minimum or
    maximum is exactly the anchor placed there — the scenario's numbers are
    what the anchors say, not an accident of interpolation.
    """
    points = sorted(anchors)
    out = []
    for i in range(HOURS):
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if x0 <= i <= x1:
                f = (i - x0) / (x1 - x0)
                out.append(y0 + (y1 - y0) * (1 - math.cos(math.pi * f)) / 2)
                break
        else:
            raise ValueError(f"no anchors around hour {i}")
    return out


def daily_anchors(tmin: dict[int, float], tmax: dict[int, float]) -> list[tuple[float, float]]:
    """Minimum at 07:00 and maximum at 15:00 local time of each given day."""
    return [(local_index(d, 7), v) for d, v in tmin.items()] + [
        (local_index(d, 15), v) for d, v in tmax.items()
    ]


def soil_surface(air: Sequence[float], sun: float) -> list[float]:
    """Ground-surface temperature: the air of two hours before, warmed by the sun by day.

    `sun` is the midday warming (℃) under a clear sky; at night the ground is a
    little colder than the air (radiative cooling).
    """
    out = []
    for i in range(HOURS):
        h = local_hour(i)
        warming = sun * math.sin(math.pi * (h - 8) / 10) if 8 < h < 18 else 0.0
        out.append(air[max(i - 2, 0)] + warming - 0.4)
    return out


def jitter(index: int) -> float:
    """A fixed, evenly spread number in [0, 1) per point (golden-ratio sequence)."""
    return (index * 0.6180339887) % 1.0


# --- scenarios


@dataclass(frozen=True)
class Point:
    index: int
    lat: float
    lon: float
    elevation: float

    @property
    def east(self) -> bool:
        return self.lon >= EAST_LON


Series = dict[str, Sequence[float]]


def coldwave(p: Point) -> Series:
    """Mild days, then a cold front in the early morning of 7 January (local time).

    Tmin(6 Jan) = `pre` (+0.8..+3 ℃, lower on the higher eastern ground);
    Tmin(7 Jan) = pre − D with D = 10.6..11.2 ℃ (west) or 13.0..13.6 ℃ (east):
    the front arrives at 03:00, the air cools all day and 7 January's minimum
    comes at 23:00; 8 January's, at dawn, is 1.5 ℃ lower; then a slow recovery.
    Tmin(5 Jan) = pre − 0.5, so the 24/48/72 h drops are D / D−0.5 / D−1 on
    7 January and 1.5 / D+1.5 / D+1 on 8 January.
    """
    pre = round(3.0 - (p.elevation - 650.0) / 600.0 * 2.2, 1)
    drop = round((13.0 if p.east else 10.6) + 0.6 * jitter(p.index), 1)
    low = pre - drop
    tmin = {
        2: pre - 1.8,
        3: pre - 1.5,
        4: pre - 1.0,
        5: pre - 0.5,
        6: pre,
        8: low - 1.5,
        9: low - 0.5,
        10: low + 1.0,
        11: low + 2.0,
        12: low + 2.5,
        13: low + 3.0,
    }
    tmax = {
        2: pre + 5.5,
        3: pre + 6.0,
        4: pre + 6.5,
        5: pre + 7.0,
        6: pre + 6.0,
        8: low + 4.5,
        9: low + 6.5,
        10: low + 8.0,
        11: low + 8.5,
        12: low + 9.0,
    }
    front = [  # the night stays mild under the frontal cloud until the front arrives
        (local_index(6, 23), pre + 2.5),
        (local_index(7, 3), pre + 2.0),
        (local_index(7, 9), pre - 0.55 * drop),
        (local_index(7, 12), pre - 0.60 * drop),
        (local_index(7, 15), pre - 0.50 * drop),
        (local_index(7, 23), low),
    ]
    air = curve(daily_anchors(tmin, tmax) + front)

    ridge = 1.0 + 0.05 * (2 * jitter(p.index + 7) - 1) + (0.02 if p.east else 0.0)
    wind_anchors = [(local_index(d, 4), 2.0) for d in range(2, 7)]
    wind_anchors += [(local_index(d, 14), 3.5) for d in range(2, 7)]
    wind_anchors += [  # south-west breeze, then the north-west gale behind the front
        (local_index(7, 0), 4.5),
        (local_index(7, 2), 7.0),
        (local_index(7, 3), 10.0),
        (local_index(7, 4), 12.0 * ridge),
        (local_index(7, 7), 12.8 * ridge),
        (local_index(7, 12), 12.5 * ridge),
        (local_index(7, 16), 11.0 * ridge),
        (local_index(7, 19), 9.0),
        (local_index(7, 23), 7.0),
        (local_index(8, 6), 5.0),
        (local_index(8, 14), 4.5),
    ]
    wind_anchors += [(local_index(d, 4), 2.0) for d in range(9, 14)]
    wind_anchors += [(local_index(d, 14), 3.5) for d in range(9, 14)]
    wind = curve(wind_anchors)
    gale = (local_index(7, 2), local_index(7, 19))
    gusts = [w * (1.55 if gale[0] <= i <= gale[1] else 1.7) + 0.8 for i, w in enumerate(wind)]

    # Pre-frontal rain turning to snow showers as the cold air arrives; small
    # amounts on purpose (no 暴雪): at most ~3 mm water equivalent in any 12 h.
    wet = 0.9 + 0.25 * jitter(p.index + 3)
    rain_mm = {(7, 0): 0.2, (7, 1): 0.3, (7, 2): 0.3, (7, 3): 0.2}
    snow_mm = {
        (7, 4): 0.1,
        (7, 5): 0.3,
        (7, 6): 0.4,
        (7, 7): 0.3,
        (7, 8): 0.2,
        (7, 9): 0.2,
        (7, 10): 0.1,
        (7, 11): 0.1,
        (7, 12): 0.1,
    }
    rain = [0.0] * HOURS
    snow_water = [0.0] * HOURS
    for (d, h), mm in rain_mm.items():
        rain[int(local_index(d, h))] = max(0.1, round(mm * wet, 1))
    for (d, h), mm in snow_mm.items():
        snow_water[int(local_index(d, h))] = max(0.1, round(mm * wet, 1))

    cloudy = (local_index(6, 8), local_index(7, 12))
    soil = soil_surface(air, sun=2.5)
    for i in range(HOURS):
        if cloudy[0] <= i <= cloudy[1]:  # no sunshine under the frontal cloud
            soil[i] = air[max(i - 2, 0)] - 0.4

    codes, visibility = [], []
    for i in range(HOURS):
        h = local_hour(i)
        if snow_water[i] > 0:
            codes.append(85)  # slight snow showers
            visibility.append(4000 - 4000 * snow_water[i])
        elif rain[i] > 0:
            codes.append(61)  # slight rain
            visibility.append(9000.0)
        elif cloudy[0] <= i <= cloudy[1]:
            codes.append(3)
            visibility.append(16000.0)
        elif gale[0] <= i <= gale[1]:
            codes.append(1)
            visibility.append(15000.0)  # loess dust lifted by the gale
        else:
            codes.append(1 if 8 <= h <= 17 else 0)
            visibility.append(24000.0 if 9 <= h <= 18 else 18000.0)

    return {
        "temperature_2m": air,
        "apparent_temperature": [t - 0.45 * w - 0.8 for t, w in zip(air, wind, strict=True)],
        "soil_temperature_0cm": soil,
        "precipitation": [r + s for r, s in zip(rain, snow_water, strict=True)],
        "rain": rain,
        "showers": [0.0] * HOURS,
        "snowfall": [s * 0.7 for s in snow_water],  # Open-Meteo: 1 mm water = 0.7 cm snow
        "weather_code": codes,
        "visibility": visibility,
        "wind_speed_10m": wind,
        "wind_gusts_10m": gusts,
    }


def calm(p: Point) -> Series:
    """A seasonable dry week: Tmin −4..−8 ℃, days ~10 ℃ warmer, light wind, clear air."""
    base = -5.2 - (p.elevation - 650.0) / 600.0 * 2.2
    wobble = [0.0, 0.6, -0.4, 0.3, -0.2, 0.5, -0.3, 0.2, 0.0, 0.4, -0.1, 0.3]  # days 2..13
    tmin = {d: base + wobble[d - 2] for d in range(2, 14)}
    tmax = {d: base + 10.0 + wobble[(d + 3) % 12] for d in range(2, 13)}
    air = curve(daily_anchors(tmin, tmax))
    wind = curve(
        [(local_index(d, 4), 1.6 + 0.2 * jitter(p.index)) for d in range(2, 14)]
        + [(local_index(d, 14), 3.2 + 0.3 * jitter(p.index + 1)) for d in range(2, 14)]
    )
    codes = [1 if 9 <= local_hour(i) <= 16 else 0 for i in range(HOURS)]
    return {
        "temperature_2m": air,
        "apparent_temperature": [t - 0.45 * w - 0.8 for t, w in zip(air, wind, strict=True)],
        "soil_temperature_0cm": soil_surface(air, sun=4.0),
        "precipitation": [0.0] * HOURS,
        "rain": [0.0] * HOURS,
        "showers": [0.0] * HOURS,
        "snowfall": [0.0] * HOURS,
        "weather_code": codes,
        "visibility": [24000.0 if 9 <= local_hour(i) <= 18 else 14000.0 for i in range(HOURS)],
        "wind_speed_10m": wind,
        "wind_gusts_10m": [w * 1.7 + 0.8 for w in wind],
    }


# --- Open-Meteo response


def _rounded(name: str, values: Sequence[float]) -> list[float] | list[int]:
    if name in ("weather_code", "visibility"):
        return [round(v) for v in values]
    return [round(v, 1) + 0.0 for v in values]  # + 0.0: no "-0.0" in the file


def response(
    points: Sequence[Point], scenario: Callable[[Point], Series]
) -> list[dict[str, object]]:
    """The multi-location response: one Open-Meteo object per point, in order."""
    times = [(START + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M") for i in range(HOURS)]
    out: list[dict[str, object]] = []
    for p in points:
        series = scenario(p)
        hourly: dict[str, object] = {"time": times}
        for name in list(HOURLY_UNITS)[1:]:
            hourly[name] = _rounded(name, series[name])
        out.append(
            {
                "latitude": p.lat,
                "longitude": p.lon,
                "generationtime_ms": round(0.05 + 0.013 * p.index, 4),
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "timezone_abbreviation": "GMT",
                "elevation": p.elevation,
                "hourly_units": HOURLY_UNITS,
                "hourly": hourly,
            }
        )
    return out


def write(path: Path, payload: list[dict[str, object]]) -> None:
    """Compact JSON like the API's, one location per line so diffs stay readable."""
    lines = [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in payload]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


SCENARIOS: dict[str, Callable[[Point], Series]] = {
    "coldwave-2026-01.json": coldwave,
    "calm-2026-01.json": calm,
}


def main(out_dir: Path = HERE, zones_file: Path = ZONES_FILE) -> None:
    """Write every scenario into `out_dir` (a test writes elsewhere and compares)."""
    centres = grid_points(zone_locations(zones_file.read_text(encoding="utf-8")))
    points = [Point(i, lat, lon, elevation(lat, lon)) for i, (lat, lon) in enumerate(centres)]
    for name, scenario in SCENARIOS.items():
        write(out_dir / name, response(points, scenario))
        print(f"wrote {name}: {len(points)} points × {HOURS} hours")


if __name__ == "__main__":
    main()
