"""Which of the county's zones a CAP `<area>` covers: polygon, circle or geocode.

- polygon: the zone's location inside it (even-odd rule, as rule selectors);
- circle: the zone's location within the radius (great-circle distance, km)
  of the centre — CAP writes `lat,lon radius_km`;
- geocode: a GB/T 2260 area code (valueName one of `GEOCODE_NAMES`): a
  province (14xxxx → 140000), prefecture (141100) or county (141125) code
  covers every zone of a county whose code it contains; a township code
  (9 or 12 digits, GB/T 10114 style: the county code then the township's)
  covers the zones of that township when county.yaml gives its code
  (`township_codes`), and nothing otherwise.

An `<info>` block covers the union of its areas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from dispatcher.official.capparse import CapArea
from rules.ruleset import in_polygon
from rules.types import ZoneSpec

EARTH_RADIUS_KM = 6371.0088
GEOCODE_NAMES = frozenset({"GB/T2260", "GB2260", "GBT2260", "行政区划代码", "ADCODE"})
"""Geocode valueNames read as GB/T 2260 area codes (compared without spaces, upper case)."""


def is_area_code_name(value_name: str) -> bool:
    """Whether a geocode's valueName says its value is a GB/T 2260 code."""
    return "".join(value_name.split()).upper() in GEOCODE_NAMES


def covered_zones(
    areas: Iterable[CapArea],
    zones: Sequence[ZoneSpec],
    county_code: str,
    township_codes: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """The ids of the zones some area covers."""
    if not zones:
        return frozenset()
    latitudes = np.array([zone.latitude for zone in zones])
    longitudes = np.array([zone.longitude for zone in zones])
    inside = np.zeros(len(zones), dtype=np.bool_)
    for area in areas:
        for polygon in area.polygons:
            inside |= in_polygon(latitudes, longitudes, polygon)
        for circle in area.circles:
            distance = distance_km(latitudes, longitudes, circle.latitude, circle.longitude)
            inside |= distance <= circle.radius_km
        for name, value in area.geocodes:
            if is_area_code_name(name):
                inside |= _by_code(value, zones, county_code, township_codes or {})
    return frozenset(zone.id for zone, hit in zip(zones, inside.tolist(), strict=True) if hit)


def distance_km(
    latitudes: np.ndarray, longitudes: np.ndarray, latitude: float, longitude: float
) -> np.ndarray:
    """Great-circle (haversine) distance in km from each point to one point."""
    phi1, phi2 = np.radians(latitudes), math.radians(latitude)
    dphi = phi2 - phi1
    dlambda = math.radians(longitude) - np.radians(longitudes)
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * math.cos(phi2) * np.sin(dlambda / 2) ** 2
    distance: np.ndarray = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return distance


def _by_code(
    value: str, zones: Sequence[ZoneSpec], county_code: str, township_codes: Mapping[str, str]
) -> np.ndarray:
    everywhere = np.ones(len(zones), dtype=np.bool_)
    nowhere = np.zeros(len(zones), dtype=np.bool_)
    code = value.strip()
    if not code.isdigit():
        return nowhere
    if len(code) == 6:
        # trailing pairs of zeros widen the code: 140000 is Shanxi, 141100 Lüliang
        prefix = code.rstrip("0")
        prefix = code[: len(prefix) + len(prefix) % 2] if prefix else ""
        return everywhere if prefix and county_code.startswith(prefix) else nowhere
    if len(code) in (9, 12) and code.startswith(county_code):
        township = code[:9]
        return np.array(
            [township_codes.get(zone.township, "")[:9] == township for zone in zones],
            dtype=np.bool_,
        )
    return nowhere
