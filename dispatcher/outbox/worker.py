"""The delivery worker: one loop that claims due rows, sends them and records the outcomes.

There is one send path. `run` (the daemon), `run_until_idle` (drills, tests,
`dispatcher.runtime.drain`) and `run_once` (one round, for tests) are the
same loop — concurrent senders fed from a queue of claimed rows, outcomes
recorded in batches — and differ only in when it stops: when told to, when
nothing is due and nothing is in flight, or after one claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from channels.base import Channel, SendResult
from dispatcher.metrics import Metrics
from dispatcher.outbox.claim import (
    DEFAULT_PRIORITY_AGING_SECONDS,
    ClaimCheck,
    Claimed,
    Claimer,
    until_slot,
)
from dispatcher.outbox.record import OutcomeBatcher, RetryPolicy, record_outcomes
from dispatcher.outbox.rows import OnFailed
from dispatcher.ratelimit import ChannelPacer, Rate, parse_rates
from dispatcher.settings import Settings

logger = logging.getLogger(__name__)

# Giving up on a send at this fraction of the lease keeps a single owner per
# row: past the lease, another worker may already have claimed it again.
_SEND_TIMEOUT_OF_LEASE: Final = 0.8
# Less time than this left of the lease after waiting to send: do not start the send.
_MIN_SEND_SECONDS: Final = 1.0


class _Until(enum.Enum):
    """When the delivery loop returns."""

    STOPPED = "stopped"  # the daemon: when `stop` is set
    IDLE = "idle"  # nothing due and nothing in flight
    ONE_ROUND = "one round"  # after one claim's rows are sent and recorded


class DeliveryWorker:
    """Claims due outbox rows, sends them through their channel and records the outcome.

    Database work happens in short synchronous transactions (see `storage.db`);
    no transaction is ever open while a message is on the network.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime],
        *,
        concurrency: int = 8,
        max_attempts: int = 8,
        backoff_seconds: float = 5.0,
        backoff_max_seconds: float = 600.0,
        lease_seconds: float = 120.0,
        poll_seconds: float = 1.0,
        status_callback_url: str | None = None,
        jitter_source: Callable[[], float] | None = None,
        actor: str = "outbox",
        rates: Mapping[str, Rate] | None = None,
        ttl_seconds: Mapping[str, float] | None = None,
        on_failed: OnFailed | None = None,
        priority_aging_seconds: float = DEFAULT_PRIORITY_AGING_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        """Create a worker.

        `clock` returns timezone-aware UTC now; `monotonic` returns seconds on
        a clock that never goes back, for rate limit slots (tests pass a fake
        to decide pacing without waiting). `status_callback_url` is put on
        every outgoing message (channels that cannot use it ignore it).
        `jitter_source` returns a float in [0, 1) for the retry spread; tests
        pass a constant. `actor` names this worker in audit events. `rates`
        override the per-second limits the channels declare. `ttl_seconds` maps
        an alert level to how long its messages are retried before `on_failed`
        (the failover, in the same transaction) takes over; `on_failed` is also
        called for permanent failures and exhausted retries. Due rows go red
        first, then orange, yellow, blue (see `dispatcher.outbox.claim`); a row
        due for more than `priority_aging_seconds` counts as red. `metrics` times
        the sends and counts the errors per channel.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if lease_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("lease_seconds and poll_seconds must be positive")
        if priority_aging_seconds <= 0:
            raise ValueError("priority_aging_seconds must be positive")
        if backoff_seconds < 0 or backoff_max_seconds < 0:
            raise ValueError("backoff_seconds and backoff_max_seconds must not be negative")
        self.sessions = sessions
        bind = sessions.kw.get("bind")
        # several instances share the outbox only on PostgreSQL (see `Claimer.still_ours`)
        self.verify_claims = bind is not None and bind.dialect.name == "postgresql"
        self.channels = channels
        self.clock = clock
        self.monotonic = monotonic
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.status_callback_url = status_callback_url
        self.actor = actor
        self.ttl_seconds = dict(ttl_seconds or {})
        self.on_failed = on_failed
        self.metrics = metrics or Metrics()
        self._retry = RetryPolicy(
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            backoff_max_seconds=backoff_max_seconds,
            jitter=jitter_source if jitter_source is not None else random.Random().random,
        )
        self._pacer = ChannelPacer(channels, rates or {}, clock=monotonic)
        self._claimer = Claimer(
            sessions=sessions,
            clock=clock,
            monotonic=monotonic,
            pacer=self._pacer,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            ttl_seconds=self.ttl_seconds,
            status_callback_url=status_callback_url,
            actor=actor,
            on_failed=on_failed,
            priority_aging_seconds=priority_aging_seconds,
        )
        self._outcomes = OutcomeBatcher(self._record_batch)
        self._claim_check = ClaimCheck(self._claimer)
        self._wake = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime],
        status_callback_url: str | None = None,
        jitter_source: Callable[[], float] | None = None,
        actor: str = "outbox",
        on_failed: OnFailed | None = None,
        metrics: Metrics | None = None,
    ) -> DeliveryWorker:
        """A worker configured by the `delivery_*` settings."""
        return cls(
            sessions,
            channels,
            clock,
            concurrency=settings.delivery_concurrency,
            max_attempts=settings.delivery_max_attempts,
            backoff_seconds=settings.delivery_backoff_seconds,
            backoff_max_seconds=settings.delivery_backoff_max_seconds,
            lease_seconds=settings.delivery_lease_seconds,
            poll_seconds=settings.delivery_poll_seconds,
            status_callback_url=status_callback_url,
            jitter_source=jitter_source,
            actor=actor,
            rates=parse_rates(settings.rate_limits),
            ttl_seconds={
                "blue": settings.delivery_ttl_blue_seconds,
                "yellow": settings.delivery_ttl_yellow_seconds,
                "orange": settings.delivery_ttl_orange_seconds,
                "red": settings.delivery_ttl_red_seconds,
            },
            on_failed=on_failed,
            priority_aging_seconds=settings.outbox_priority_aging_seconds,
            metrics=metrics,
        )

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows to this worker (see `Claimer.claim`)."""
        return self._claimer.claim(limit)

    def wake(self) -> None:
        """Start delivering now rather than at the next poll (call after committing rows)."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish the sends in flight and return.

        `concurrency` senders each send one row at a time, taking the next from
        a queue of claimed rows as soon as the provider answers. The claimer
        tops the queue up while rows are due; when nothing is due it sleeps
        `poll_seconds`, or less if `wake()` is called. A row whose rate limit
        slot is a little ahead (see `claim`) joins the queue when its slot
        comes. Sends are never cancelled part-way — not on `stop`, and not if
        this task is cancelled: they run to completion and record their outcome.

        Rows are claimed up to one round ahead (at most `concurrency` rows wait
        claimed for a free sender): under load one claim serves several rounds
        of sends instead of a claim per freed sender. Rows claimed ahead are
        sent before `run` returns, not left leased until their leases run out.
        The outcome of a send is committed with its batch (a few ms later), and
        `run` returns only when every outcome is. Errors (a failed claim, an
        outcome that could not be committed) are logged and the loop goes on.
        """
        await self._deliver(stop, _Until.STOPPED)

    async def run_until_idle(self) -> int:
        """Deliver until nothing is due and nothing is in flight; return how many
        claimed messages it processed, whatever their outcome.

        The loop of `run`, for drills and tests: it returns once a claim finds
        nothing to lease while no send is in flight and every outcome is
        committed — so rows that earlier outcomes made due (a retry due now, a
        failover) are sent too. Rows a rate limit holds back beyond the claim
        horizon count as not due. The first error (a failed claim, a send that
        raised, an outcome that could not be committed) is raised once every
        send in flight has finished.
        """
        return await self._deliver(asyncio.Event(), _Until.IDLE)

    async def run_once(self) -> int:
        """One round of the loop: claim up to `concurrency` due rows, deliver them, return how many.

        All deliveries finish, and their outcomes are committed, before this
        returns; rows those outcomes make due wait for the next round. Errors
        are raised as in `run_until_idle`.
        """
        return await self._deliver(asyncio.Event(), _Until.ONE_ROUND)

    async def _deliver(self, stop: asyncio.Event, until: _Until) -> int:
        """The delivery loop behind `run`, `run_until_idle` and `run_once`."""
        flow = _Flow(until, self.monotonic)
        senders = [
            asyncio.create_task(self._sender(flow), name=f"outbox-sender-{i}")
            for i in range(self.concurrency)
        ]
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        claimed_count = 0
        try:
            while not stop.is_set():
                # cleared before claiming, so a wake() during the claim is not lost
                self._wake.clear()
                claimed: list[Claimed] = []
                if self._runs_low(flow):
                    ahead = 1 if until is _Until.ONE_ROUND else 2
                    limit = ahead * self.concurrency - flow.sending - flow.waiting
                    claimed = self._claim_for(flow, limit)
                    # a full claim: more may be due, so senders call for the next one
                    flow.more_due = len(claimed) >= limit
                    for row in claimed:
                        flow.put(row)
                    claimed_count += len(claimed)
                if until is _Until.ONE_ROUND or flow.errors:
                    break
                if until is _Until.IDLE and not claimed and flow.idle:
                    break
                # woken by a poll, wake(), stop, a sender when the queue runs low,
                # or (until idle) an outcome committed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
        finally:
            stopping.cancel()
            if flow.paced:
                await asyncio.wait(flow.paced)  # their slots come within seconds
            for _ in senders:
                flow.queue.put_nowait(None)  # after the rows still queued: those are sent first
            await asyncio.wait(senders)
            await self._outcomes.drain()
        flow.raise_first_error()
        return claimed_count

    def _claim_for(self, flow: _Flow, limit: int) -> list[Claimed]:
        """Claim up to `limit` rows; the daemon logs a failed claim and tries again later."""
        if flow.until is not _Until.STOPPED:
            return self.claim(limit)
        try:
            return self.claim(limit)
        except Exception:
            logger.exception("could not claim outbox rows; trying again in %g s", self.poll_seconds)
            return []

    def _runs_low(self, flow: _Flow) -> bool:
        """Too few claimed rows wait to keep every free sender busy."""
        return flow.waiting < self.concurrency - flow.sending

    async def _sender(self, flow: _Flow) -> None:
        """Send the queued rows one at a time until a None comes."""
        while (claimed := await flow.queue.get()) is not None:
            flow.sending += 1
            try:
                recorded = await self._send_and_submit(claimed)
            except Exception as exc:
                # _send answers every provider and channel error; this is a bug of ours.
                # The loop must survive: the row is sent again when its lease expires.
                logger.exception("could not send notification %s", claimed.id)
                flow.failed(exc)
            else:
                flow.track(claimed.id, recorded, self._wake)
            finally:
                flow.sending -= 1
            if (flow.more_due and self._runs_low(flow)) or (
                flow.until is _Until.IDLE and flow.idle
            ):
                self._wake.set()

    # --- one send ---------------------------------------------------------------

    async def deliver(self, claimed: Claimed) -> None:
        """Send one claimed row when its slot comes and return once its outcome is committed.

        The step each sender of the loop takes, for tests that interleave
        workers by hand. Provider and network errors come back as a
        `SendResult`; a database error while recording propagates (the row
        stays `sending` and is sent again when its lease expires).
        """
        await until_slot(claimed, self.monotonic)
        # the commit runs to completion even if this caller is cancelled
        await asyncio.shield(await self._send_and_submit(claimed))

    async def _send_and_submit(self, claimed: Claimed) -> asyncio.Future[None]:
        """Send `claimed` and hand its outcome to the batcher, without waiting for the
        commit: the sender is free for the next send while the batch lingers."""
        started = time.perf_counter()
        result = await self._send(claimed)
        self.metrics.sent(claimed.channel, result, time.perf_counter() - started)
        return self._outcomes.submit(claimed, result)

    async def _send(self, claimed: Claimed) -> SendResult:
        channel = self.channels.get(claimed.channel)
        if channel is None:
            configured = ", ".join(sorted(self.channels)) or "none"
            return SendResult.permanent(
                f"channel {claimed.channel!r} is not configured in this instance "
                f"(configured: {configured})",
                error_code="unknown_channel",
            )
        if self.verify_claims and not await self._claim_check.still_ours(claimed):
            # claimed again by another instance while this one could not run
            # (frozen, paused, or its clock lags): sending now would send it
            # twice. Checked before the rate limit's last word, which counts
            # the send as gone
            logger.warning(
                "notification %s: claim (attempt %d) no longer this worker's; dropped, not sent",
                claimed.id,
                claimed.attempt,
            )
            return SendResult.retryable(
                "the claim was not this worker's any more when its turn to send came "
                "(its lease ran out and the row was claimed again), or the database "
                "could not say; not sent",
                error_code="claim_lost",
            )
        # its slot was taken when it was claimed; this keeps the spacing when
        # a pause of the event loop made it late
        while (wait := self._pacer.send_wait(channel.name, claimed.message.address)) > 0:
            await asyncio.sleep(wait)
        # a send must end inside its lease (after that the row may be claimed
        # again); waiting for a slot or for the rate limit used some of it
        left = (claimed.lease_until - self.clock()).total_seconds()
        timeout = min(self.lease_seconds, left) * _SEND_TIMEOUT_OF_LEASE
        if timeout < _MIN_SEND_SECONDS:
            return SendResult.retryable(
                f"waited {self.lease_seconds - left:.0f} s of its {self.lease_seconds:g} s lease "
                f"(for a free send slot, the {claimed.channel} rate limit, or while this process "
                "was paused); not sent",
                error_code="lease_used_up",
            )
        try:
            async with asyncio.timeout(timeout):
                return await channel.send(claimed.message)
        except TimeoutError:
            return SendResult.retryable(
                f"{claimed.channel} did not answer within {timeout:g} s", error_code="timeout"
            )
        except Exception as exc:
            # The protocol says channels never raise; one that does has a bug,
            # but the message must still go out, so treat it as retryable.
            logger.exception(
                "channel %s raised while sending notification %s", claimed.channel, claimed.id
            )
            return SendResult.retryable(
                f"{claimed.channel} raised {type(exc).__name__}: {exc}", error_code="channel_error"
            )

    def _record_batch(self, outcomes: Sequence[tuple[Claimed, SendResult]]) -> None:
        """Record a batch of outcomes in one short transaction (see `record_outcomes`)."""
        now = self.clock()
        with self.sessions.begin() as session:
            record_outcomes(
                session,
                outcomes,
                now=now,
                retry=self._retry,
                actor=self.actor,
                on_failed=self.on_failed,
            )


class _Flow:
    """One run of the loop: claimed rows on their way to the senders (queued, or
    waiting for their slot), the sends in flight and the outcomes not yet committed."""

    def __init__(self, until: _Until, monotonic: Callable[[], float]) -> None:
        self.until = until
        self.monotonic = monotonic
        self.queue: asyncio.Queue[Claimed | None] = asyncio.Queue()
        self.paced: set[asyncio.Task[None]] = set()
        self.sending = 0  # senders busy with a send
        self.more_due = False  # the last claim was full: more rows may be due
        self.unrecorded = 0  # outcomes handed to the batcher, not yet committed
        self.errors: list[BaseException] = []  # kept unless the daemon runs: raised at the end

    @property
    def waiting(self) -> int:
        """Claimed rows no sender has taken yet."""
        return self.queue.qsize() + len(self.paced)

    @property
    def idle(self) -> bool:
        """Nothing claimed waits, nothing is being sent, every outcome is committed."""
        return self.waiting == 0 and self.sending == 0 and self.unrecorded == 0

    def put(self, claimed: Claimed) -> None:
        """Queue `claimed` now, or when its rate limit slot comes."""
        if claimed.send_at <= self.monotonic():
            self.queue.put_nowait(claimed)
            return
        task = asyncio.create_task(self._put_later(claimed))
        self.paced.add(task)
        task.add_done_callback(self.paced.discard)

    async def _put_later(self, claimed: Claimed) -> None:
        await until_slot(claimed, self.monotonic)
        self.queue.put_nowait(claimed)

    def track(
        self, notification_id: int, recorded: asyncio.Future[None], wake: asyncio.Event
    ) -> None:
        """Follow one outcome to its commit (until idle: then look for what is due)."""
        self.unrecorded += 1
        recorded.add_done_callback(functools.partial(self._recorded, notification_id, wake))

    def _recorded(
        self, notification_id: int, wake: asyncio.Event, future: asyncio.Future[None]
    ) -> None:
        self.unrecorded -= 1
        if self.until is _Until.IDLE:
            wake.set()
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            logger.error(
                "could not record the outcome of notification %s; it is sent again when its "
                "lease runs out",
                notification_id,
                exc_info=error,
            )
            self.failed(error)

    def failed(self, error: BaseException) -> None:
        """Keep `error` for `raise_first_error` (the daemon only logs it)."""
        if self.until is not _Until.STOPPED:
            self.errors.append(error)

    def raise_first_error(self) -> None:
        """Raise the first error of a run that does not only log them."""
        if self.errors:
            raise self.errors[0]
