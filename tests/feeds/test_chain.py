"""FeedChain: failover and per-variable fusion, as docs/feeds.md states the rule.

The feeds in the chain are small in-test feeds serving fixed arrays: the rule
is about what the chain does with what they answer, not how they fetch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.chain import FeedChain, SourceAttempt
from rules.types import ForecastBatch

NOW = datetime(2026, 1, 6, 16, 20, tzinfo=UTC)
POINTS = [ForecastPoint("a", 37.43, 110.89), ForecastPoint("b", 37.45, 110.91)]


class Answering:
    """A feed answering `values[name]` (one per hour, same at every point) from `first`."""

    def __init__(
        self,
        source: str,
        first: str,
        values: dict[str, list[float]],
        *,
        serves: frozenset[str] | None = None,
        fails: str | None = None,
        problems: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self._first = np.datetime64(first, "s")
        self._values = values
        self._fails = fails
        self._problems = problems
        self.asked: list[list[str]] = []
        if serves is not None:
            self.serves = serves

    async def fetch(
        self, points: Sequence[ForecastPoint], variables: Collection[str]
    ) -> ForecastBatch:
        self.asked.append(sorted(variables))
        if self._fails:
            raise FeedError(self._fails)
        hours = len(next(iter(self._values.values())))
        times = self._first + np.arange(hours) * np.timedelta64(3600, "s")
        return ForecastBatch(
            source=self.source,
            issued_at=NOW,
            point_ids=tuple(p.id for p in points),
            latitudes=np.array([p.latitude for p in points]),
            longitudes=np.array([p.longitude for p in points]),
            times=times,
            variables={
                name: np.tile(np.array(self._values[name], dtype=np.float64), (len(points), 1))
                for name in variables
                if name in self._values
            },
            problems=self._problems,
        )


NAN = float("nan")


async def test_when_the_first_feed_fails_the_next_serves_every_variable() -> None:
    first = Answering("open-meteo", "2026-01-06T16:00", {}, fails="HTTP 503")
    second = Answering("qweather", "2026-01-06T16:00", {"temperature_2m": [1, 2, 3]})
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(POINTS, ["temperature_2m"])
    assert batch.source == "open-meteo+qweather"
    assert batch.sources == {"temperature_2m": "qweather"}
    assert batch.variables["temperature_2m"][1].tolist() == [1, 2, 3]
    assert chain.last_attempts == (
        SourceAttempt("open-meteo", False, (), "HTTP 503"),
        SourceAttempt("qweather", True, ("temperature_2m",), None, 2, 3),
    )


async def test_a_feed_serving_everything_leaves_the_next_unasked() -> None:
    first = Answering("open-meteo", "2026-01-06T16:00", {"temperature_2m": [1, 2]})
    second = Answering("qweather", "2026-01-06T16:00", {"temperature_2m": [5, 5]})
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(POINTS, ["temperature_2m"])
    assert batch.sources == {"temperature_2m": "open-meteo"}
    assert second.asked == [] and [a.source for a in chain.last_attempts] == ["open-meteo"]


async def test_a_variable_lacking_ahead_comes_whole_from_the_next_feed_on_a_union_of_hours() -> (
    None
):
    # open-meteo: 14:00–17:00 with visibility only in the past; qweather: 16:00–19:00
    first = Answering(
        "open-meteo",
        "2026-01-06T14:00",
        {"temperature_2m": [0, 1, 2, 3], "visibility": [900, 800, NAN, NAN]},
    )
    second = Answering(
        "qweather",
        "2026-01-06T16:00",
        {"visibility": [500, 400, 300, 200], "temperature_2m": [9] * 4},
    )
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(POINTS, ["temperature_2m", "visibility"])
    assert second.asked == [["visibility"]]  # asked only for what is still unserved
    assert batch.sources == {"temperature_2m": "open-meteo", "visibility": "qweather"}
    assert str(batch.times[0]) == "2026-01-06T14:00:00" and len(batch.times) == 6
    # never mixed: the past visibility of open-meteo is not kept beside qweather's
    assert np.isnan(batch.variables["visibility"][0, :2]).all()
    assert batch.variables["visibility"][0, 2:].tolist() == [500, 400, 300, 200]
    assert batch.variables["temperature_2m"][0, :4].tolist() == [0, 1, 2, 3]
    assert np.isnan(batch.variables["temperature_2m"][0, 4:]).all()
    assert chain.last_attempts[0].error == "no usable value from now on for visibility"
    assert chain.last_attempts[0].ok and chain.last_attempts[0].served == ("temperature_2m",)


async def test_a_feed_is_asked_only_for_the_variables_it_declares() -> None:
    first = Answering("open-meteo", "2026-01-06T16:00", {}, fails="timeout")
    second = Answering(
        "qweather",
        "2026-01-06T16:00",
        {"temperature_2m": [1, 2]},
        serves=frozenset({"temperature_2m"}),
    )
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(POINTS, ["temperature_2m", "soil_temperature_0cm"])
    assert second.asked == [["temperature_2m"]]
    assert set(batch.variables) == {"temperature_2m"}  # no source: left missing
    assert batch.problems == (
        "hourly.soil_temperature_0cm is served by no source (open-meteo failed)",
    )


async def test_partial_data_a_variable_no_source_serves_is_said_with_each_reason() -> None:
    # open-meteo masks visibility everywhere and has no soil temperature ahead; qweather
    # serves neither: only their rules will be undecided, the temperature is served
    first = Answering(
        "open-meteo",
        "2026-01-06T16:00",
        {"temperature_2m": [1, 2], "soil_temperature_0cm": [NAN, NAN]},
        problems=(
            "hourly.visibility is missing (all 2 locations)",
            "location 1 (b): hourly.temperature_2m has 1 values, expected 2",
            "location 0 (a): hourly_units.wind_speed_10m is 'km/h', expected 'm/s'",
        ),
    )
    second = Answering(
        "qweather",
        "2026-01-06T16:00",
        {"wind_speed_10m": [3, 4]},
        serves=frozenset({"wind_speed_10m"}),
    )
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(
        POINTS, ["temperature_2m", "visibility", "soil_temperature_0cm", "wind_speed_10m"]
    )
    assert batch.sources == {"temperature_2m": "open-meteo", "wind_speed_10m": "qweather"}
    # open-meteo's problem with what qweather served is no problem of the batch
    assert batch.problems == (
        "open-meteo: location 1 (b): hourly.temperature_2m has 1 values, expected 2",
        "hourly.soil_temperature_0cm is served by no source (open-meteo: no value from now on)",
        "hourly.visibility is served by no source "
        "(open-meteo: hourly.visibility is missing (all 2 locations))",
    )


async def test_no_feed_serving_anything_fails_naming_each_reason() -> None:
    first = Answering("open-meteo", "2026-01-06T16:00", {}, fails="HTTP 503")
    second = Answering("qweather", "2026-01-06T16:00", {}, fails="QWeather code 402: quota")
    chain = FeedChain([first, second], clock=lambda: NOW)
    with pytest.raises(FeedError) as error:
        await chain.fetch(POINTS, ["temperature_2m"])
    assert error.value.reason == (
        "no source served the forecast (open-meteo: HTTP 503; qweather: QWeather code 402: quota)"
    )
    assert [a.ok for a in chain.last_attempts] == [False, False]


async def test_hours_off_the_first_feeds_minute_are_refused() -> None:
    first = Answering("open-meteo", "2026-01-06T16:00", {"temperature_2m": [1, 2]})
    second = Answering("qweather", "2026-01-06T16:30", {"visibility": [1, 2]})
    chain = FeedChain([first, second], clock=lambda: NOW)
    batch = await chain.fetch(POINTS, ["temperature_2m", "visibility"])
    assert set(batch.variables) == {"temperature_2m"}
    assert (
        chain.last_attempts[1].error == "its hours are not on the same minute as the first feed's"
    )


def test_a_chain_of_one_or_with_a_source_twice_is_refused() -> None:
    one = Answering("open-meteo", "2026-01-06T16:00", {})
    with pytest.raises(ValueError, match="at least two"):
        FeedChain([one])
    with pytest.raises(ValueError, match="one source twice"):
        FeedChain([one, one])
