"""Zones as arrays: what the evaluator reads of them, built once and reused.

Turning hundreds of thousands of `ZoneSpec`s into arrays costs about as much as
evaluating a rule family, and zones change far less often than forecasts: the
daemon builds one `ZoneTable` when it loads the county and every poll reuses
it, with the selector masks and the zone → forecast-point index it has already
worked out.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from rules.ruleset import ZoneSelector, in_polygon
from rules.types import ZoneSpec

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]

MAX_SELECTIONS = 1024
"""Selector masks kept; reloads bring new selectors, old ones are dropped past this."""


class ZoneTable:
    """Zone attributes as arrays, so selectors are evaluated without loops over zones.

    Read-only once built (the caches only ever hold the same answers), so one
    table may serve every evaluation of the zones it was built from.
    """

    def __init__(self, zones: Sequence[ZoneSpec]) -> None:
        self.count = len(zones)
        ids, kinds, townships, risk, zone_points = (
            [getattr(zone, name) for zone in zones]
            for name in ("id", "kind", "township", "risk_level", "point_id")
        )
        self.id_list: list[str] = ids
        self.ids = _objects(ids)
        self.kinds = _objects(kinds)
        self.townships = _objects(townships)
        self.risk = _objects(risk)
        self.point_ids: list[str] = zone_points
        self.latitudes = np.fromiter(map(attrgetter("latitude"), zones), np.float64, self.count)
        self.longitudes = np.fromiter(map(attrgetter("longitude"), zones), np.float64, self.count)
        tag_counts = np.fromiter(map(len, map(attrgetter("tags"), zones)), np.int64, self.count)
        self.tag_zone = np.repeat(np.arange(self.count, dtype=np.int64), tag_counts)
        self.tag_name = _objects([tag for zone in zones for tag in zone.tags])
        self._selections: dict[ZoneSelector, BoolArray] = {}
        self._rank: IntArray | None = None
        self._located: tuple[tuple[str, ...], IntArray] | None = None

    def point_index(self, point_ids: tuple[str, ...]) -> IntArray:
        """Each zone's row in a batch of these points; `len(point_ids)` when it is not there.

        The answer for the last batch's points is kept: feeds poll the same points.
        """
        located = self._located
        if located is not None and located[0] == point_ids:
            return located[1]
        rows = {point_id: index for index, point_id in enumerate(point_ids)}
        missing = len(point_ids)
        index = np.fromiter(
            (rows.get(point, missing) for point in self.point_ids), np.int64, self.count
        )
        index.flags.writeable = False
        self._located = (point_ids, index)
        return index

    @property
    def id_rank(self) -> IntArray:
        """Rank of each zone's id in sorted order (equal ids, equal ranks)."""
        if self._rank is None:
            ids = self.id_list
            if all(a < b for a, b in pairwise(ids)):
                rank = np.arange(len(ids), dtype=np.int64)  # already in order
            else:
                _, inverse = np.unique(self.ids, return_inverse=True)
                rank = inverse.ravel().astype(np.int64)
            rank.flags.writeable = False
            self._rank = rank
        return self._rank

    def select(self, selector: ZoneSelector) -> BoolArray:
        """Mask of the zones the selector picks (read-only: it is shared)."""
        cached = self._selections.get(selector)
        if cached is not None:
            return cached
        mask = np.ones(self.count, dtype=np.bool_)
        for values, wanted in (
            (self.ids, selector.ids),
            (self.kinds, selector.kinds),
            (self.townships, selector.townships),
            (self.risk, selector.risk),
        ):
            if wanted is not None:
                mask &= np.isin(values, list(wanted))
        if selector.tags is not None:
            tagged = np.zeros(self.count, dtype=np.bool_)
            tagged[self.tag_zone[np.isin(self.tag_name, list(selector.tags))]] = True
            mask &= tagged
        if selector.polygon is not None:
            mask &= in_polygon(self.latitudes, self.longitudes, selector.polygon)
        if selector.exclude is not None:
            mask &= ~self.select(selector.exclude)
        mask.flags.writeable = False
        if len(self._selections) >= MAX_SELECTIONS:
            self._selections.clear()
        self._selections[selector] = mask
        return mask


def _objects(values: Sequence[object]) -> ObjectArray:
    """A 1-D object array of the values (strings stay Python strings)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
