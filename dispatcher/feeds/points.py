"""Snap zones to a regular grid so nearby zones share one forecast point.

A county has hundreds of hazard points within a few kilometres of each other;
weather models resolve a few kilometres at best, so asking for each one would
multiply requests without adding information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dispatcher.feeds.base import ForecastPoint

# Point ids carry 4 decimals; cells at least 2 units of the 4th decimal apart
# keep distinct ids after rounding.
MIN_RESOLUTION_DEG = 0.0002


def assign_points(
    zones: Sequence[tuple[str, float, float]], resolution_deg: float
) -> tuple[list[ForecastPoint], dict[str, str]]:
    """Forecast points for `zones` (zone id, latitude, longitude) and zone id → point id.

    Each zone falls in a cell of a `resolution_deg` grid anchored at (0°, 0°); the
    point is the cell centre rounded to 4 decimals, with an id like
    ``p37.4100_110.9500``. Ids depend only on the location and resolution, so
    they stay stable when zones are added or removed. Points are sorted by
    latitude then longitude. Pure: no I/O.
    """
    if not math.isfinite(resolution_deg) or resolution_deg < MIN_RESOLUTION_DEG:
        raise ValueError(
            f"point resolution must be at least {MIN_RESOLUTION_DEG}°, got {resolution_deg}"
        )
    points: dict[str, ForecastPoint] = {}
    zone_points: dict[str, str] = {}
    for zone_id, latitude, longitude in zones:
        if zone_id in zone_points:
            raise ValueError(f"zone {zone_id!r} is listed twice")
        if not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
            raise ValueError(f"zone {zone_id!r}: latitude {latitude} is not in [-90, 90]")
        if not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
            raise ValueError(f"zone {zone_id!r}: longitude {longitude} is not in [-180, 180]")
        lat = min(max(_cell_centre(latitude, resolution_deg), -90.0), 90.0)
        lon = min(max(_cell_centre(longitude, resolution_deg), -180.0), 180.0)
        point = ForecastPoint(id=f"p{lat:.4f}_{lon:.4f}", latitude=lat, longitude=lon)
        points.setdefault(point.id, point)
        zone_points[zone_id] = point.id
    ordered = sorted(points.values(), key=lambda p: (p.latitude, p.longitude, p.id))
    return ordered, zone_points


def _cell_centre(value: float, resolution: float) -> float:
    # The tiny epsilon keeps values that sit on a cell edge in decimal (37.42 with
    # 0.02) in the upper cell despite binary rounding (37.42 / 0.02 = 1870.999…).
    cell = math.floor(value / resolution + 1e-9)
    centre = round((cell + 0.5) * resolution, 4)
    return centre + 0.0  # no "-0.0000" ids
