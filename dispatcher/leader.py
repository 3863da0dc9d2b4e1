"""Leadership: on PostgreSQL, one instance runs the scheduler — and only while it makes progress.

Every `yujing run` delivers (workers claim outbox rows with SKIP LOCKED), but
polling, evaluating, escalating and watching the feed and the rule files must
happen once. On SQLite there is only ever one instance (see
`daemon.sqlite_instance_lock`), which always leads; nothing here runs there.

On PostgreSQL the leader holds a **lease**: the row ``leader_leases`` named
"scheduler" (`LeaderLease`) with its holder (host:pid), a fencing **epoch** and
an expiry. Every step below is one short transaction, timed by the database's
clock (``now()``), so instance clocks do not matter:

- the holder renews the lease (expiry = now + `lease_seconds`) every half
  `leader_poll_seconds`, from the daemon's event loop (`lead`): a process that
  is frozen (SIGSTOP, a VM pause) or whose loop is wedged stops renewing;
- a standby checks every `leader_poll_seconds`, and just after the expiry it
  last read; once the lease has expired it takes it over, and the epoch grows
  by one. With the default lease of twice the poll interval, a frozen leader
  is replaced within 2 × `leader_poll_seconds` (plus a transaction);
- every leader-only write is **fenced** (`install_fence`, `leader_work`): a
  transaction the scheduler commits first reads the lease row ``FOR SHARE``
  and commits only if the epoch is still the one this instance was granted;
  otherwise it rolls back with `NotLeader` and the instance steps down. The
  share lock makes a takeover wait for a fenced commit under way, so the old
  leader's last write lands before the new epoch or not at all;
- a fenced transaction also sets ``idle_in_transaction_session_timeout`` to the
  lease: if its process freezes mid-transaction, PostgreSQL ends the session
  and its row locks go with it, so the new leader is never blocked behind a
  frozen one (and the takeover itself waits at most a short ``lock_timeout``);
- a scheduler job holds the event loop while it computes (a province's poll
  for many seconds), so while a job of the leader's runs, a thread of its own
  (`keep_lease`) renews the lease for it — for at most `job_seconds`: a long
  poll keeps the lead, a job stuck longer than that loses it, and a frozen
  process (every thread stopped) loses it after one lease as before. (A fenced
  transaction still may not sit idle longer than one lease, so that the row
  locks of a process frozen inside one are freed for the new leader and the
  delivery workers: a job computes between its transactions, not inside one);
- a resumed old leader finds its epoch gone at its next renewal (or its next
  fenced commit) and steps down; it contends again like any standby.

The advisory lock the lead used to live in is gone: it followed the
connection, not progress — a frozen process kept its session, hence the lock,
for ever. Terminating its backend (``pg_terminate_backend``) would free the lock
but not fence a write already under way, and needs the right to signal other
backends; the lease with its epoch does both with one row and plain UPDATEs.
PostgreSQL is still the consensus: the row lock serialises takeovers, and its
clock times them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = logging.getLogger("yujing.leader")

LEASE_NAME = "scheduler"
"""The lease row the scheduler's leader holds."""

# a takeover that finds the lease row locked (a fenced commit under way) tries
# again at its next check rather than holding up the leadership loop
_LOCK_TIMEOUT_SECONDS = 2.0
# a standby checks again this long after the expiry it read (the database's now
# and ours are read in one statement, so this only covers a transaction's time)
_AFTER_EXPIRY_SECONDS = 0.05

# One statement takes the lease over when it has expired (or is not there yet)
# and renews it for its holder; the epoch grows only at a takeover.
_TAKE_OR_RENEW = text(
    """
    INSERT INTO leader_leases AS l (name, holder, epoch, acquired_at, renewed_at, expires_at)
    VALUES (:name, :holder, 1, now(), now(), now() + make_interval(secs => :ttl))
    ON CONFLICT (name) DO UPDATE SET
        holder = EXCLUDED.holder,
        epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = :epoch
                     THEN l.epoch ELSE l.epoch + 1 END,
        acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = :epoch
                           THEN l.acquired_at ELSE now() END,
        renewed_at = now(),
        expires_at = EXCLUDED.expires_at
    WHERE (l.holder = EXCLUDED.holder AND l.epoch = :epoch) OR l.expires_at <= now()
    RETURNING l.holder, l.epoch, l.expires_at, now() AS db_now
    """
)
_READ = text(
    "SELECT holder, epoch, expires_at, now() AS db_now FROM leader_leases WHERE name = :name"
)
_FENCE = text("SELECT holder, epoch FROM leader_leases WHERE name = :name FOR SHARE")
_RELEASE = text(
    "UPDATE leader_leases SET expires_at = now() "
    "WHERE name = :name AND holder = :holder AND epoch = :epoch"
)


class NotLeader(RuntimeError):
    """A leader-only write refused: this instance's lease epoch is no longer current."""


@dataclass(frozen=True)
class Lease:
    """The lease row as last read: who holds it, its epoch, when it expires."""

    holder: str
    epoch: int
    expires_at: datetime
    remaining: float
    """Seconds it had left when read (by the database's clock)."""
    read_at: float
    """When it was read, on this process's monotonic clock."""

    def left(self) -> float:
        """Seconds it has left now, as far as this process can tell."""
        return self.remaining - (time.monotonic() - self.read_at)


def instance_name() -> str:
    """This process's identity: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Hold (or contend for) the scheduler's lease; fence the leader's writes.

    `lease_seconds`: how long a lease lasts without renewal — how long a frozen
    leader keeps the lead. `refresh` renews or takes it; `fence` checks, in a
    leader-only transaction, that the epoch is still ours.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float = 10.0,
        job_seconds: float = 600.0,
        instance: str | None = None,
    ) -> None:
        self.engine = engine
        self.exclusive = engine.dialect.name == "postgresql"
        self.lease_seconds = lease_seconds
        self.job_seconds = max(job_seconds, lease_seconds)
        """How long a running leader job keeps the lease renewed (`keep_lease`)."""
        self.instance = instance or instance_name()
        self._refreshing = threading.Lock()  # `lead` and `keep_lease` both renew
        self._jobs = 0
        self._working_since: float | None = None
        self.epoch: int | None = None
        """The epoch this instance was last granted (None: never)."""
        self.lease: Lease | None = None
        """The lease as last read (ours or another instance's)."""
        self._leading = False
        self.on_lost: Callable[[], None] = lambda: None
        """Called when a fenced write finds the lead gone (from any thread)."""

    @property
    def held(self) -> bool:
        """Whether this instance leads (always, on SQLite)."""
        return not self.exclusive or self._leading

    def identity(self) -> dict[str, Any]:
        """Who this instance is, whether it leads, and the lease (for /healthz)."""
        lease = self.lease
        return {
            "instance": self.instance,
            "leading": self.held,
            "exclusive": self.exclusive,
            "epoch": lease.epoch if lease is not None else None,
            "holder": lease.holder if lease is not None else None,
            "lease_expires_at": lease.expires_at.isoformat() if lease is not None else None,
        }

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """A leader job runs in this block: `keep_lease` renews the lease meanwhile."""
        with self._refreshing:
            if self._jobs == 0:
                self._working_since = time.monotonic()
            self._jobs += 1
        try:
            yield
        finally:
            with self._refreshing:
                self._jobs -= 1
                if self._jobs == 0:
                    self._working_since = None

    def renew_while_working(self) -> bool:
        """Renew the lease if a leader job has been running for less than `job_seconds`;
        returns whether it renewed (`keep_lease` calls this from its own thread)."""
        since = self._working_since
        if not self.exclusive or not self._leading or since is None:
            return False
        if time.monotonic() - since >= self.job_seconds:
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Renew our lease, or take it over if it has expired; returns whether we lead."""
        if not self.exclusive:
            return True
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            with self.engine.begin() as conn:
                _bound_waits(conn, self.lease_seconds)
                row = conn.execute(
                    _TAKE_OR_RENEW,
                    {
                        "name": LEASE_NAME,
                        "holder": self.instance,
                        "epoch": self.epoch if self.epoch is not None else -1,
                        "ttl": self.lease_seconds,
                    },
                ).one_or_none()
                leading = row is not None
                if row is None:
                    row = conn.execute(_READ, {"name": LEASE_NAME}).one()
        except DBAPIError as exc:
            # the epoch is kept: if nobody took over meanwhile, the next renewal keeps it
            if self._leading:
                log.warning(
                    "cannot renew the leader lease (%s): pausing the scheduler",
                    type(exc).__name__,
                )
            self._leading = False
            return False
        self.lease = Lease(
            holder=row.holder,
            epoch=int(row.epoch),
            expires_at=row.expires_at,
            remaining=(row.expires_at - row.db_now).total_seconds(),
            read_at=time.monotonic(),
        )
        if leading and self.epoch != int(row.epoch):
            log.info("took the leader lease: epoch %d", row.epoch)
        elif self._leading and not leading:
            log.warning(
                "the leader lease went to %s (epoch %d): this instance no longer leads",
                row.holder,
                row.epoch,
            )
        if leading:
            self.epoch = int(row.epoch)
        self._leading = leading
        return leading

    def next_check(self, every: float) -> float:
        """Seconds until `lead` should call `refresh` again.

        The holder renews every half `every`; a standby checks every `every`,
        or just after the lease it read expires, if sooner.
        """
        if not self.exclusive:
            return every
        if self._leading:
            return every / 2
        if self.lease is None:
            return every
        return max(0.0, min(every, self.lease.left() + _AFTER_EXPIRY_SECONDS))

    def fence(self, session: Session) -> None:
        """In a leader-only transaction: refuse it unless the lease epoch is still ours.

        Holds the lease row's share lock until the transaction ends, so no
        takeover happens between this check and the commit. Raises `NotLeader`
        (and steps down) otherwise.
        """
        if not self.exclusive:
            return
        row = session.execute(_FENCE, {"name": LEASE_NAME}).one_or_none()
        ours = row is not None and row.holder == self.instance and int(row.epoch) == self.epoch
        if self.epoch is not None and ours:
            return
        granted = self.epoch
        self._leading = False
        self.on_lost()
        now = f"{row.holder} holds epoch {row.epoch}" if row is not None else "nobody holds it"
        raise NotLeader(
            f"not committed: this instance's leader lease (epoch {granted}) is gone ({now})"
        )

    def release(self) -> None:
        """Give the lease up (on shutdown) so that a standby takes over at its next check."""
        if not self.exclusive or self.epoch is None or not self._leading:
            return
        self._leading = False
        try:
            with self.engine.begin() as conn:
                _bound_waits(conn, self.lease_seconds)
                conn.execute(
                    _RELEASE, {"name": LEASE_NAME, "holder": self.instance, "epoch": self.epoch}
                )
        except DBAPIError:
            pass  # it expires on its own


def _idle_limit(seconds: float) -> TextClause:
    """How long this transaction may sit idle before PostgreSQL ends it."""
    return text(f"SET LOCAL idle_in_transaction_session_timeout = {int(1000 * seconds)}")


def _bound_waits(conn: Connection, lease_seconds: float) -> None:
    """This transaction waits for a lock at most briefly, and if this process
    freezes in it, PostgreSQL ends it after the lease (so no lock outlives us)."""
    lock_ms = int(1000 * min(_LOCK_TIMEOUT_SECONDS, lease_seconds / 4))
    idle_ms = int(1000 * lease_seconds)
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {lock_ms}")
    conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}")


# --- the fence on the scheduler's writes ----------------------------------------

_leader_work: ContextVar[Leadership | None] = ContextVar("yujing_leader_work", default=None)


@contextlib.contextmanager
def leader_work(leadership: Leadership) -> Iterator[None]:
    """Every transaction committed inside this block (and in tasks it starts) is fenced.

    The daemon runs each scheduler job inside it; the delivery workers and the
    web server, which every instance runs, are not.
    """
    token = _leader_work.set(leadership)
    try:
        with leadership.working():
            yield
    finally:
        _leader_work.reset(token)


def install_fence(sessions: sessionmaker[Session]) -> None:
    """Fence the transactions of `sessions` that run inside `leader_work` (PostgreSQL)."""
    event.listen(sessions, "after_begin", _bound_fenced)
    event.listen(sessions, "before_commit", _check_fence)


def _bound_fenced(session: Session, _transaction: SessionTransaction, conn: Connection) -> None:
    leadership = _leader_work.get()
    if leadership is not None and leadership.exclusive:
        conn.execute(_idle_limit(leadership.lease_seconds))


def _check_fence(session: Session) -> None:
    leadership = _leader_work.get()
    if leadership is not None:
        leadership.fence(session)


async def lead(
    leadership: Leadership,
    *,
    on_gain: Callable[[], None],
    on_loss: Callable[[], None],
    stop: asyncio.Event,
    every: float,
) -> None:
    """Contend for leadership until `stop`; call on_gain/on_loss when it changes.

    Runs on the daemon's event loop, so the lease is renewed only while the
    loop runs: a frozen or wedged process loses the lead when its lease expires.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def lost() -> None:
        loop.call_soon_threadsafe(changed.set)

    leadership.on_lost = lost
    leading = False
    keeper = threading.Event()
    threading.Thread(
        target=keep_lease, args=(leadership, every / 2, keeper), name="yujing-lease", daemon=True
    ).start()
    try:
        while not stop.is_set():
            changed.clear()
            now_leading = await asyncio.to_thread(leadership.refresh)
            if now_leading and not leading:
                log.info("this instance leads: scheduling polls and escalations")
                on_gain()
            elif leading and not now_leading:
                log.warning("leadership lost: pausing the scheduler")
                on_loss()
            leading = now_leading
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(leadership.next_check(every)):
                    # a fenced write that found the lead gone wakes this at once
                    await _first(stop.wait(), changed.wait())
    finally:
        keeper.set()
        if leading:
            on_loss()
        await asyncio.to_thread(leadership.release)


def keep_lease(leadership: Leadership, every: float, stop: threading.Event) -> None:
    """Renew the lease every `every` seconds while a leader job holds the event loop
    (`Leadership.renew_while_working`), until `stop`. Runs in a thread of its own: a
    frozen process stops it too, so it keeps a busy leader, never a frozen one."""
    while not stop.wait(every):
        try:
            leadership.renew_while_working()
        except Exception:  # the loop's own renewal reports failures
            log.debug("lease renewal during a job failed", exc_info=True)


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
