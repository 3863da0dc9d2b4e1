"""The daemon's official-warning poll: the CAP sources, each message in its own
transaction, then QWeather's warnings when configured (`qweather_source`).

Runs on its own schedule (YUJING_CAP_POLL_SECONDS). When a message puts a
warning in force or ends one, `on_change` runs (the daemon evaluates the
rules at once rather than at the next forecast poll).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from dispatcher.feeds.cap_feed import CapFeed
from dispatcher.official.capparse import MAX_MESSAGE_BYTES
from dispatcher.official.qweather_source import QWeatherWarnings
from dispatcher.official.record import DUPLICATE, Receipt, receive
from dispatcher.storage.models import ForecastRun

log = logging.getLogger("yujing.official")

CAP_SOURCE = "CAP预警源"
"""The CAP sources, as one source watched for silence (`Pipeline.check_official`)."""
QWEATHER_SOURCE = "和风天气预警"
"""QWeather's warnings, as a source watched for silence."""


@dataclass
class OfficialWatch:
    """Polls the CAP feed and QWeather's warnings, and records what they bring."""

    feed: CapFeed | None
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    max_bytes: int = MAX_MESSAGE_BYTES
    on_change: Callable[[], Awaitable[object]] | None = None
    errors: list[str] = field(default_factory=list)  # of the last poll
    qweather: QWeatherWarnings | None = None

    @property
    def sources(self) -> list[str]:
        """The official-warning sources polled, as the feed-down watch names them."""
        return [CAP_SOURCE] * (self.feed is not None) + [QWEATHER_SOURCE] * (
            self.qweather is not None
        )

    async def poll(self) -> list[Receipt]:
        """One poll; returns the receipts of the messages not seen before.

        Each source's attempt is recorded as a `ForecastRun` (ok when it answered
        without an error), so a source that stops answering raises the feed-down
        alert like a forecast feed (`Pipeline.check_official`)."""
        self.errors = []
        receipts: list[Receipt] = []
        if self.feed is not None:
            started = self.clock()
            before = len(self.errors)
            receipts = await self._poll_cap()
            self._record_attempt(CAP_SOURCE, started, self.errors[before:])
        if self.qweather is not None:
            started = self.clock()
            receipts.extend(await self.qweather.poll())
            self.errors.extend(self.qweather.errors)
            self._record_attempt(QWEATHER_SOURCE, started, self.qweather.errors)
        if self.on_change is not None and any(r.changes_warnings for r in receipts):
            await self.on_change()
        return receipts

    async def _poll_cap(self) -> list[Receipt]:
        assert self.feed is not None
        fetched = await self.feed.fetch()
        self.errors.extend(fetched.errors)
        for error in fetched.errors:
            log.warning("CAP source %s", error)
        receipts = []
        for where, data in fetched.messages:
            # one transaction per message: each is applied whole or not at all
            with self.sessions.begin() as session:
                receipt = receive(
                    session, data, source=where, now=self.clock(), max_bytes=self.max_bytes
                )
            if receipt.state != DUPLICATE:
                receipts.append(receipt)
        return receipts

    def _record_attempt(self, source: str, started: datetime, errors: list[str]) -> None:
        with self.sessions.begin() as session:
            session.add(
                ForecastRun(
                    source=source,
                    started_at=started,
                    finished_at=self.clock(),
                    ok=not errors,
                    error="; ".join(errors)[:4000] or None,
                )
            )
