"""The forecast variables: every hourly variable a rule may read, its unit and meaning.

One registry for both sides of the pipeline: the condition parser
(`rules.expr`) accepts exactly these names, and the feeds
(`dispatcher/feeds/`) request them and refuse a response that reports another
unit. Names and unit strings are Open-Meteo's (`hourly=` names, `hourly_units`
under `wind_speed_unit=ms` and the default metric units); the thresholds of
the rule library assume these units. A feed whose answer states its units
(Open-Meteo) converts nothing — a value in another unit (°F, km/h, inch …) is
rejected rather than guessed at; one whose answer states none (QWeather)
converts from its documented units and says so (docs/feeds.md).

docs/rules.md ("Series expressions") lists the same variables for
administrators; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ForecastVariable:
    """One hourly forecast variable: its name, unit and what it measures."""

    name: str
    unit: str
    """As Open-Meteo writes it in `hourly_units`, e.g. ``°C`` or ``wmo code``."""
    meaning: str


_ALL = (
    ForecastVariable("temperature_2m", "°C", "air temperature at 2 m"),
    ForecastVariable("apparent_temperature", "°C", "felt temperature at 2 m"),
    ForecastVariable(
        "soil_temperature_0cm",
        "°C",
        "ground-surface temperature (stands in for road surface and ground minimum)",
    ),
    ForecastVariable(
        "precipitation", "mm", "preceding-hour sum of rain + showers + snow water equivalent"
    ),
    ForecastVariable("rain", "mm", "preceding-hour sum of rain from large-scale systems"),
    ForecastVariable("showers", "mm", "preceding-hour sum of convective showers"),
    ForecastVariable(
        "snowfall", "cm", "preceding-hour sum of fresh snow (7 cm of snow ≈ 10 mm of water)"
    ),
    ForecastVariable(
        "weather_code",
        "wmo code",
        "WMO code (45/48 fog, 56/57 freezing drizzle, 66/67 freezing rain, …)",
    ),
    ForecastVariable("visibility", "m", "visibility"),
    ForecastVariable("wind_speed_10m", "m/s", "hourly mean wind at 10 m"),
    ForecastVariable("wind_gusts_10m", "m/s", "strongest gust at 10 m in the preceding hour"),
    ForecastVariable("freezing_level_height", "m", "height of the 0 ℃ level above sea level"),
    ForecastVariable("snow_depth", "m", "snow lying on the ground"),
    ForecastVariable("relative_humidity_2m", "%", "relative humidity at 2 m"),
    ForecastVariable("dew_point_2m", "°C", "dew point at 2 m"),
)

# The order is the one error messages list them in ("expected one of ...").
VARIABLES: Mapping[str, ForecastVariable] = MappingProxyType({v.name: v for v in _ALL})
"""Every forecast variable a rule may reference, by name."""

EXPECTED_UNITS: Mapping[str, frozenset[str]] = MappingProxyType(
    {name: frozenset({variable.unit}) for name, variable in VARIABLES.items()}
)
"""The unit strings a feed may report for each variable (what feeds check a response against)."""

__all__ = ["EXPECTED_UNITS", "VARIABLES", "ForecastVariable"]
