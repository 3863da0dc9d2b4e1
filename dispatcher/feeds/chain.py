"""Several feeds in order: failover, and fusion per variable (YUJING_FEEDS=openmeteo,qweather).

The rule, for each poll:

1. The feeds are asked in order. Each is asked only for the variables still
   unserved that it can serve (`serves`, when the feed declares it; else all).
2. A feed serves a variable when its batch holds a value for it from the
   current hour on (any point). A feed that fails (`FeedError`) or has no such
   value for a variable leaves it to the next feed.
3. A variable is served whole by one feed — never hour by hour or point by
   point from two: a series mixing two models would make false drops and
   sums. The batch's `sources` records which feed served which variable.
4. The hours: the union of the serving feeds' hourly axes (all on the same
   minute of the hour, else that feed is refused), each variable NaN where its
   feed has no hour. `issued_at` is the first serving feed's.
5. No feed serving anything is a `FeedError` naming each feed's reason: the
   combined source ("no source") is down. A variable no feed serves is left
   out and said in the batch's `problems` with each feed's reason; the rules
   reading it are undecided, the others go on (partial data, `pipeline.py`).
   A serving feed's own problems (a variable masked at some locations) are
   kept, prefixed with its name, unless they concern only variables another
   feed served.

Every feed asked leaves a `SourceAttempt` in `last_attempts`, which the
pipeline records per source so the feed-down alert is raised per source too.
A feed not asked in a poll (nothing left for it) leaves no attempt: a standby
is not "down" for being idle.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from dispatcher.feeds.base import (
    Feed,
    FeedError,
    ForecastPoint,
    check_variables,
    on_hours,
    union_hours,
)
from dispatcher.logs import Episode
from rules.types import FloatArray, ForecastBatch
from rules.variables import VARIABLES

log = logging.getLogger("yujing.feed")


@dataclass(frozen=True)
class SourceAttempt:
    """What one feed of the chain did in one poll."""

    source: str
    ok: bool  # served at least one variable
    served: tuple[str, ...]  # the variables the batch took from it
    error: str | None  # why it failed, or what it lacked
    points: int = 0
    hours: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FeedChain:
    """A feed made of several feeds in order (see the module's rule)."""

    def __init__(self, feeds: Sequence[Feed], *, clock: Callable[[], datetime] = _utc_now) -> None:
        if len(feeds) < 2:
            raise ValueError("a feed chain needs at least two feeds")
        names = [feed.source for feed in feeds]
        if len(set(names)) != len(names):
            raise ValueError(f"a feed chain lists one source twice: {', '.join(names)}")
        self.feeds = tuple(feeds)
        self.source = "+".join(names)  # the combined source: down when none serves
        self.last_attempts: tuple[SourceAttempt, ...] = ()
        self._clock = clock
        # a failing source is logged when it starts failing and when it recovers
        self._health = {name: Episode(log, f"forecast source {name}") for name in names}

    def __repr__(self) -> str:
        return f"FeedChain({', '.join(map(repr, self.feeds))})"

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(feed.source for feed in self.feeds)

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        """Each variable from the first feed that serves it; `FeedError` when none serves any."""
        names = check_variables(variables)
        hour = np.datetime64(self._clock().astimezone(UTC).replace(tzinfo=None), "h")
        ids = tuple(point.id for point in points)
        needed = list(names)
        lacked: dict[str, list[str]] = {}  # variable → why each feed asked did not serve it
        attempts: list[SourceAttempt] = []
        parts: list[tuple[str, ForecastBatch, tuple[str, ...]]] = []
        self.last_attempts = ()
        for feed in self.feeds:
            capable = getattr(feed, "serves", None)
            ask = [n for n in needed if capable is None or n in capable]
            if not ask:
                continue
            try:
                batch = await feed.fetch(points, ask)
                if batch.point_ids != ids:
                    raise FeedError("its batch is not for the points asked, in their order")
                if parts and _second_of_hour(batch) != _second_of_hour(parts[0][1]):
                    raise FeedError("its hours are not on the same minute as the first feed's")
            except FeedError as error:
                attempts.append(SourceAttempt(feed.source, False, (), error.reason))
                for name in ask:
                    lacked.setdefault(name, []).append(f"{feed.source} failed")
                continue
            served = tuple(n for n in ask if _has_value_ahead(batch, n, hour))
            lacking = [n for n in ask if n not in served]
            for name in lacking:
                said = [p for p in batch.problems if _mentioned(p, (name,))]
                why = "; ".join(said) if said else "no value from now on"
                lacked.setdefault(name, []).append(f"{feed.source}: {why}")
            reason = f"no usable value from now on for {', '.join(lacking)}" if lacking else None
            attempts.append(SourceAttempt(feed.source, bool(served), served, reason, *batch.shape))
            if served:
                parts.append((feed.source, batch, served))
                needed = [n for n in needed if n not in served]
            if not needed:
                break
        self.last_attempts = tuple(attempts)
        for attempt in attempts:
            if attempt.ok:
                self._health[attempt.source].succeeded()
            else:
                self._health[attempt.source].failed(str(attempt.error))
        if not parts:
            reasons = "; ".join(f"{a.source}: {a.error}" for a in attempts) or "no feed asked"
            raise FeedError(f"no source served the forecast ({reasons})")
        unserved = [
            f"hourly.{name} is served by no source ("
            + ("; ".join(lacked[name]) if name in lacked else "none of them has it")
            + ")"
            for name in needed
        ]
        return _fuse(self.source, parts, unserved)


def _second_of_hour(batch: ForecastBatch) -> int:
    if not len(batch.times):
        return 0
    return int(batch.times[0].astype("datetime64[s]").astype(np.int64)) % 3600


def _has_value_ahead(batch: ForecastBatch, name: str, hour: np.datetime64) -> bool:
    values = batch.variables.get(name)
    if values is None or not len(batch.times):
        return False
    ahead = batch.times.astype("datetime64[h]") >= hour
    return bool(np.isfinite(values[:, ahead]).any())


def _mentioned(problem: str, names: Collection[str]) -> set[str]:
    """The variables a feed's problem is about (`hourly.NAME` or `hourly_units.NAME`)."""
    return {name for name in names if re.search(rf"hourly(_units)?\.{name}\b", problem)}


def _fuse(
    source: str,
    parts: Sequence[tuple[str, ForecastBatch, tuple[str, ...]]],
    unserved: Sequence[str],
) -> ForecastBatch:
    first = parts[0][1]
    times = union_hours([batch.times for _, batch, _ in parts])
    variables: dict[str, FloatArray] = {}
    sources: dict[str, str] = {}
    for name_of_source, batch, served in parts:
        for name in served:
            rows = [on_hours(times, batch.times, row) for row in batch.variables[name]]
            variables[name] = np.vstack(rows) if rows else np.empty((0, len(times)))
            sources[name] = name_of_source
    problems = [
        f"{name_of_source}: {problem}"
        for name_of_source, batch, served in parts
        for problem in batch.problems
        # what another feed served is no problem; what no feed served is said below
        if not (about := _mentioned(problem, VARIABLES)) or about & set(served)
    ]
    return ForecastBatch(
        source=source,
        issued_at=first.issued_at,
        point_ids=first.point_ids,
        latitudes=first.latitudes,
        longitudes=first.longitudes,
        times=times,
        variables=variables,
        units={name: VARIABLES[name].unit for name in variables},
        sources=dict(sorted(sources.items())),
        problems=(*problems, *unserved),
    )


def attempts_of(feed: Feed) -> tuple[SourceAttempt, ...]:
    """What each source of a chain did in its last fetch; () for a single feed."""
    return feed.last_attempts if isinstance(feed, FeedChain) else ()


def members_of(feed: Feed) -> tuple[str, ...]:
    """The sources a chain is made of; () for a single feed."""
    return feed.members if isinstance(feed, FeedChain) else ()
