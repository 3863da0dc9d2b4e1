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

log = logging.getLogger("yujing.official")


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

    async def poll(self) -> list[Receipt]:
        """One poll; returns the receipts of the messages not seen before."""
        self.errors = []
        receipts = await self._poll_cap() if self.feed is not None else []
        if self.qweather is not None:
            receipts.extend(await self.qweather.poll())
            self.errors.extend(self.qweather.errors)
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
