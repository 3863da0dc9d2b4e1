"""Leadership: on PostgreSQL, only one instance runs the scheduler.

Every `yujing run` delivers (workers claim outbox rows with SKIP LOCKED), but
polling, evaluating and escalating must happen once. The instance holding a
PostgreSQL session-level advisory lock is the leader; if it dies, its session
ends, the lock is released, and another instance takes over within a few
seconds. PostgreSQL is the consensus — nothing home-made. On SQLite there is
only ever one instance (see `daemon.sqlite_instance_lock`), which always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("yujing.leader")

# an arbitrary constant shared by every instance: "the Yujing scheduler"
LEADER_LOCK_KEY = 0x59554A494E47  # "YUJING"


class Leadership:
    """Hold (or try to hold) the scheduler's advisory lock on a dedicated connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exclusive = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    @property
    def instance(self) -> str:
        """This instance's identity: host name and process id."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def identity(self) -> dict[str, Any]:
        """Who this instance is and whether it leads (for /healthz)."""
        return {"instance": self.instance, "leading": self.held, "exclusive": self.exclusive}

    @property
    def held(self) -> bool:
        return not self.exclusive or self._conn is not None

    def refresh(self) -> bool:
        """Try to become leader, or check we still are; returns whether we lead."""
        if not self.exclusive:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                log.error("lost the database session holding leadership")
                self._drop()
                return False
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            log.warning(
                "cannot reach the database to contend for leadership: %s", type(exc).__name__
            )
            return False
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}
            ).scalar_one()
            conn.commit()  # end the implicit transaction; the session lock stays
        except DBAPIError:
            conn.close()
            return False
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK_KEY})
            self._conn.commit()
        except DBAPIError:
            pass  # the session is going away anyway, which releases the lock
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except DBAPIError:
                pass


async def lead(
    leadership: Leadership,
    *,
    on_gain: Callable[[], None],
    on_loss: Callable[[], None],
    stop: asyncio.Event,
    every: float,
) -> None:
    """Contend for leadership until `stop`; call on_gain/on_loss when it changes."""
    leading = False
    try:
        while not stop.is_set():
            now_leading = await asyncio.to_thread(leadership.refresh)
            if now_leading and not leading:
                log.info("this instance leads: scheduling polls and escalations")
                on_gain()
            elif leading and not now_leading:
                log.warning("leadership lost: pausing the scheduler")
                on_loss()
            leading = now_leading
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        if leading:
            on_loss()
        await asyncio.to_thread(leadership.release)
