"""The durable outbox: delivery workers that claim due notification rows and send them.

A notification row is written in the same transaction as the alert transition it
announces (see `dispatcher.alerts.lifecycle`). From then on this module owns it:

    pending ──claim──► sending ──send OK──► sent ──receipt──► delivered | undelivered | failed
       ▲                  │
       └── retryable ─────┤ (backoff; after max_attempts → failed)
                          └── permanent ──► failed

Delivery is *at least once*. A claim is a lease: the row is marked `sending`
with `lease_until`, in a short transaction that is committed before anything is
sent. A worker that dies mid-send leaves the row `sending`; when the lease runs
out any worker (this process after a restart, or another instance) claims it
again. Providers deduplicate on the idempotency key where they can.

Scale-out: several processes share one PostgreSQL outbox; the claim query uses
``FOR UPDATE SKIP LOCKED`` so two workers never claim the same row and never
wait for each other. On SQLite, ``BEGIN IMMEDIATE`` (see `storage.db`)
serialises claims instead.

Every outcome is recorded with a guard — the row must still be `sending` with
the attempt number this worker claimed — so a worker whose lease expired while
it was sending cannot overwrite the outcome of the attempt that replaced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from channels.base import Channel, Outcome, OutgoingMessage, SendResult
from dispatcher import audit
from dispatcher.digest import DigestPolicy
from dispatcher.ratelimit import ChannelPacer, Rate, parse_rates
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, Notification, Receipt

__all__ = [
    "JITTER_FRACTION",
    "Claimed",
    "DeliveryWorker",
    "backoff_delay",
    "record_receipt",
]

logger = logging.getLogger(__name__)

OnFailed = Callable[[Session, Notification, str, datetime], object]
"""Called in the recording transaction when a row failed for good (see dispatcher.failover)."""

PENDING: Final = "pending"
SENDING: Final = "sending"
SENT: Final = "sent"
DELIVERED: Final = "delivered"
UNDELIVERED: Final = "undelivered"
FAILED: Final = "failed"

# How far along a row is; a receipt may only move a row to a higher rank.
_RANK: Final[Mapping[str, int]] = {
    PENDING: 0,
    SENDING: 1,
    SENT: 2,
    DELIVERED: 3,
    UNDELIVERED: 3,
    FAILED: 3,
}

# Provider (Twilio MessageStatus) values that end a message's life, and the
# notification status each one means. queued/accepted/scheduled/sending/sent
# are progress reports that never change the row: it is already `sent`.
_TERMINAL_RECEIPTS: Final[Mapping[str, str]] = {
    "delivered": DELIVERED,
    "read": DELIVERED,  # WhatsApp: read implies delivered
    "undelivered": UNDELIVERED,
    "failed": FAILED,
    "canceled": FAILED,  # a scheduled message cancelled before it went out
}

JITTER_FRACTION: Final = 0.2
"""Retry delays are spread ±20% so rows that failed together do not retry together."""

# Giving up on a send at this fraction of the lease keeps a single owner per
# row: past the lease, another worker may already have claimed it again.
_SEND_TIMEOUT_OF_LEASE: Final = 0.8
# Less time than this left of the lease after waiting to send: do not start the send.
_MIN_SEND_SECONDS: Final = 1.0
# A row is claimed only if its rate limit lets it go within this long (see claim()).
_PACE_AHEAD_SECONDS: Final = 2.0
_MAX_CLAIM_ROUNDS: Final = 8

# Column widths in `Notification`; a provider's over-long value must not make
# the outcome's transaction fail (the row would then be re-sent on lease expiry).
_ERROR_CODE_WIDTH: Final = 32
_PROVIDER_ID_WIDTH: Final = 64


# what a claim reads of a row (as plain columns, not as an ORM object)
_CLAIM_COLUMNS: Final = (
    Notification.id,
    Notification.status,
    Notification.attempts,
    Notification.channel,
    Notification.idempotency_key,
    Notification.address,
    Notification.body,
    Notification.recipient_name,
    Notification.created_at,
)


class _Claimable(Protocol):
    """A claimed row's columns: a `Notification` or a row of `_CLAIM_COLUMNS`."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def recipient_name(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class Claimed:
    """A plain snapshot of one claimed outbox row, safe to use outside any session."""

    id: int
    channel: str
    message: OutgoingMessage
    attempt: int
    """Which attempt this claim is: 1 for the first send, 2 for the first retry …"""
    lease_until: datetime
    expires_at: datetime | None = None
    """After this the row is not retried but failed over (time-to-live by alert level)."""
    members: tuple[tuple[int, int], ...] = ()
    """Other rows (id, attempt) merged into this digest message; they share its outcome."""
    send_at: float = 0.0
    """When its rate limit lets it go (`time.monotonic()`; the slot is taken)."""


def backoff_delay(failed_attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after attempt number `failed_attempt` (1-based) failed.

    `base` × 2^(failed_attempt − 1), spread by ±`JITTER_FRACTION` according to
    `jitter` (a number in [0, 1); 0.5 means no spread), and never more than `cap`:
    the cap is applied last so `delivery_backoff_max_seconds` is a true maximum.
    """
    # the exponent is bounded so a huge attempt count cannot overflow a float
    raw = base * 2.0 ** min(max(failed_attempt - 1, 0), 62)
    spread = raw * (1.0 + JITTER_FRACTION * (2.0 * jitter - 1.0))
    return max(0.0, min(spread, cap))


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
        digest: DigestPolicy | None = None,
    ) -> None:
        """Create a worker.

        `clock` returns timezone-aware UTC now. `status_callback_url` is put on
        every outgoing message (channels that cannot use it ignore it).
        `jitter_source` returns a float in [0, 1) for the retry spread; tests
        pass a constant. `actor` names this worker in audit events. `rates`
        override the per-second limits the channels declare. `ttl_seconds` maps
        an alert level to how long its messages are retried before `on_failed`
        (the failover, in the same transaction) takes over; `on_failed` is also
        called for permanent failures and exhausted retries. `digest` merges
        messages to bureau staff into one per person and channel.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if lease_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("lease_seconds and poll_seconds must be positive")
        if backoff_seconds < 0 or backoff_max_seconds < 0:
            raise ValueError("backoff_seconds and backoff_max_seconds must not be negative")
        self.sessions = sessions
        self.channels = channels
        self.clock = clock
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.status_callback_url = status_callback_url
        self.actor = actor
        self._jitter = jitter_source if jitter_source is not None else random.Random().random
        self._wake = asyncio.Event()
        self.ttl_seconds = dict(ttl_seconds or {})
        self.on_failed = on_failed
        self.digest = digest
        self._outcomes = _OutcomeBatcher(self._record_batch)
        # audit events of the batch being recorded (None outside _record_batch)
        self._audit_buffer: list[audit.Entry] | None = None
        self._pacer = ChannelPacer(channels, rates or {})
        self._sending = 0  # senders of run() busy with a send
        self._more_due = False  # run()'s last claim was full: more rows may be due
        # how near a rate limit slot must be for its row to be claimed: well
        # inside the lease, which the wait for the slot uses up
        self._pace_ahead = min(_PACE_AHEAD_SECONDS, lease_seconds / 4)

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
        digest: DigestPolicy | None = None,
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
            digest=digest if settings.digest_enabled else None,
        )

    # --- claiming ---------------------------------------------------------------

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows to this worker, in one short committed transaction.

        Due means `pending` with `next_attempt_at` ≤ now, or `sending` whose lease
        has expired (its worker died or hung). Each claim counts as an attempt.
        A row whose expired lease was already its last allowed attempt is marked
        failed instead of being sent again.

        A row is claimed only if its channel's (or robot's) rate limit lets it go
        within `_PACE_AHEAD_SECONDS` (or a quarter of the lease, if shorter); its
        slot is taken then (`Claimed.send_at`).
        The others stay in the outbox, unleased, and the claim reads past them:
        ten messages waiting for a robot that takes one every 3 s hold neither a
        sender nor a lease, and the SMS behind them goes out at once.
        """
        if limit <= 0:
            return []
        now = self.clock()
        lease_until = now + timedelta(seconds=self.lease_seconds)
        claimed: list[Claimed] = []
        with self.sessions.begin() as session:
            # Each round reads past the budgets that are busy when it starts; a
            # row passed over in a round makes its budget busy, so the rounds end
            # (the bound is a safety net).
            for _ in range(_MAX_CLAIM_ROUNDS):
                got, passed_over = self._claim_round(
                    session, now, lease_until, limit - len(claimed)
                )
                claimed += got
                if not passed_over or len(claimed) >= limit:
                    break
        return claimed

    def _claim_round(
        self, session: Session, now: datetime, lease_until: datetime, limit: int
    ) -> tuple[list[Claimed], bool]:
        """Claim up to `limit` rows; also say whether a row was passed over for its pace."""
        # rows whose worker died mid-send first (few: at most the rows in
        # flight), then the due pending rows, oldest first. Two queries, not
        # one with OR: each reads its index in order and stops at the limit,
        # where one query would sort every due row of a long queue each time.
        busy = [
            Notification.channel != channel
            if address is None
            else or_(Notification.channel != channel, Notification.address != address)
            for channel, address in self._pacer.busy(self._pace_ahead)
        ]
        expired = and_(Notification.status == SENDING, Notification.lease_until < now, *busy)
        due = and_(Notification.status == PENDING, Notification.next_attempt_at <= now, *busy)
        rows = self._due_rows(session, expired, limit)
        rows += self._due_rows(session, due, limit - len(rows))
        digestible = self._digestible(session, rows)
        claimed: list[Claimed] = []
        taken: set[int] = set()
        leased: list[int] = []
        passed_over = False
        for row in rows:
            if row.id in taken:
                continue  # already riding along in a digest claimed above
            if row.status == SENDING and row.attempts >= self.max_attempts:
                self._give_up_expired(session, session.get_one(Notification, row.id), now)
                continue
            wait = self._pacer.reserve(row.channel, row.address, self._pace_ahead)
            if wait is None:
                passed_over = True  # its turn is further off: it waits in the outbox
                continue
            send_at = time.monotonic() + wait
            # (a digest still gathering its burst leaves this slot unused: once a window)
            if row.id in digestible:
                digest = self._claim_digest(
                    session, session.get_one(Notification, row.id), row.level, now, lease_until
                )
                if digest is not None:
                    taken.update(member for member, _ in digest.members)
                    claimed.append(replace(digest, send_at=send_at))
                continue
            # (a digest's mates are digestible: never one of these rows)
            leased.append(row.id)
            claimed.append(self._snapshot(row, lease_until, row.level, row.attempts + 1, send_at))
        if leased:
            session.execute(
                update(Notification)
                .where(Notification.id.in_(leased))
                .values(
                    status=SENDING, attempts=Notification.attempts + 1, lease_until=lease_until
                ),
                execution_options={"synchronize_session": False},
            )
        return claimed, passed_over

    @staticmethod
    def _due_rows(session: Session, where: ColumnElement[bool], limit: int) -> list[Any]:
        """Up to `limit` rows matching `where`, oldest due first, locked for this claim."""
        if limit <= 0:
            return []
        return list(
            session.execute(
                select(*_CLAIM_COLUMNS, Alert.level)
                .outerjoin(Alert, Alert.id == Notification.alert_id)
                .where(where)
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(limit)
                # PostgreSQL: rows another worker is claiming right now are
                # skipped, not waited for. SQLite ignores this clause; its
                # BEGIN IMMEDIATE already makes claims one at a time.
                .with_for_update(skip_locked=True, of=Notification)
            )
        )

    @staticmethod
    def _lease(row: Notification, lease_until: datetime) -> None:
        row.status = SENDING
        row.attempts += 1
        row.lease_until = lease_until

    def _digestible(self, session: Session, rows: Sequence[_Claimable]) -> set[int]:
        pending = [row.id for row in rows if row.status == PENDING]
        if self.digest is None or not pending:
            return set()
        return set(
            session.scalars(
                select(Notification.id).where(
                    Notification.id.in_(pending), self.digest.digestible()
                )
            )
        )

    def _claim_digest(
        self,
        session: Session,
        row: Notification,
        level: str | None,
        now: datetime,
        lease_until: datetime,
    ) -> Claimed | None:
        """Claim `row` with every pending digestible row to the same person and channel."""
        assert self.digest is not None
        ready = row.created_at + timedelta(seconds=self.digest.window_seconds)
        if ready > now:
            row.next_attempt_at = ready  # wait for the rest of the burst
            return None
        mates = session.scalars(
            select(Notification)
            .where(
                Notification.status == PENDING,
                Notification.person_id == row.person_id,
                Notification.channel == row.channel,
                Notification.id != row.id,
                self.digest.digestible(),
            )
            .order_by(Notification.id)
            .with_for_update(skip_locked=True)
        ).all()
        self._lease(row, lease_until)
        snapshot = self._snapshot(row, lease_until, level, row.attempts)
        if not mates:
            return snapshot
        for mate in mates:
            self._lease(mate, lease_until)
        body = self.digest.compose(session, [row, *mates])
        return replace(
            snapshot,
            message=replace(snapshot.message, body=body),
            members=tuple((mate.id, mate.attempts) for mate in mates),
        )

    def _snapshot(
        self,
        row: _Claimable,
        lease_until: datetime,
        level: str | None,
        attempt: int,
        send_at: float = 0.0,
    ) -> Claimed:
        """What is sent for `row`, leased until `lease_until` for its `attempt`."""
        ttl = self.ttl_seconds.get(level or "")
        return Claimed(
            id=row.id,
            channel=row.channel,
            message=OutgoingMessage(
                idempotency_key=row.idempotency_key,
                address=row.address,
                body=row.body,
                recipient_name=row.recipient_name,
                status_callback_url=self.status_callback_url,
                notification_id=row.id,
            ),
            attempt=attempt,
            lease_until=lease_until,
            expires_at=row.created_at + timedelta(seconds=ttl) if ttl else None,
            send_at=send_at,
        )

    def _give_up_expired(self, session: Session, row: Notification, now: datetime) -> None:
        reason = (
            f"gave up after {row.attempts} attempts: the worker sending attempt "
            f"{row.attempts} stopped before recording an outcome (lease expired)"
        )
        row.status = FAILED
        row.lease_until = None
        row.finished_at = now
        row.error_code = "lease_expired"
        row.last_error = reason
        audit.record(
            session,
            at=now,
            actor=self.actor,
            action="notification.failed",
            subject=f"notification:{row.id}",
            data={
                "channel": row.channel,
                "attempt": row.attempts,
                "error_code": row.error_code,
                "reason": reason,
            },
        )
        logger.warning("notification %s: %s", row.id, reason)
        if self.on_failed is not None:
            self.on_failed(session, row, reason, now)

    # --- delivering -------------------------------------------------------------

    async def deliver(self, claimed: Claimed) -> None:
        """Send one claimed row and record the outcome in a new short transaction.

        Provider and network errors come back as a `SendResult`; a database
        error while recording propagates (the row stays `sending` and is sent
        again when its lease expires).
        """
        await _slot(claimed)
        result = await self._send(claimed)
        await self._outcomes.record(claimed, result)

    async def _send(self, claimed: Claimed) -> SendResult:
        channel = self.channels.get(claimed.channel)
        if channel is None:
            configured = ", ".join(sorted(self.channels)) or "none"
            return SendResult.permanent(
                f"channel {claimed.channel!r} is not configured in this instance "
                f"(configured: {configured})",
                error_code="unknown_channel",
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
                f"for a free send slot or the {claimed.channel} rate limit; not sent",
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
        """Record several outcomes in one short transaction (one commit, not one each).

        Under load a batch holds hundreds of outcomes, nearly all of them sends
        that went through: their rows are checked and updated with a statement
        each for the whole batch, and their audit events appended in one go.
        Only rows with another outcome are loaded as objects, one by one.
        """
        now = self.clock()
        # a digest's rows all share its outcome
        if any(claimed.members for claimed, _ in outcomes):
            outcomes = [
                (replace(claimed, id=member, attempt=attempt, members=()), result)
                for claimed, result in outcomes
                for member, attempt in ((claimed.id, claimed.attempt), *claimed.members)
            ]
        with self.sessions.begin() as session:
            # lock every row of the batch first, in id order, before any audit
            # lock: the same order as receipts take (row, then audit), so two
            # writers never wait on each other in a circle
            state: dict[int, tuple[str, int]] = {
                id_: (status, attempts)
                for id_, status, attempts in session.execute(
                    select(Notification.id, Notification.status, Notification.attempts)
                    .where(Notification.id.in_(sorted({c.id for c, _ in outcomes})))
                    .order_by(Notification.id)
                    .with_for_update()
                )
            }
            sent: list[dict[str, Any]] = []
            self._audit_buffer = []
            try:
                for claimed, result in outcomes:
                    # still ours: nobody re-claimed it after our lease expired
                    ours = state.get(claimed.id) == (SENDING, claimed.attempt)
                    if ours and result.outcome is Outcome.OK:
                        sent.append(self._record_sent(claimed, result, now))
                        state[claimed.id] = (SENT, claimed.attempt)
                    elif not ours:
                        self._record_stale(session, claimed, result, now)
                    else:
                        row = session.get_one(Notification, claimed.id)
                        self._record_unsent(session, row, claimed, result, now)
                        state[claimed.id] = (row.status, row.attempts)
                if sent:
                    session.execute(update(Notification), sent)  # by primary key, for all
                self._flush_audit(session)
            finally:
                self._audit_buffer = None
            _link_early_receipts(
                session,
                {row["provider_id"]: row["id"] for row in sent if row["provider_id"]},
                actor=self.actor,
                now=now,
            )

    def _record_unsent(
        self,
        session: Session,
        row: Notification,
        claimed: Claimed,
        result: SendResult,
        now: datetime,
    ) -> None:
        """Record a failed send on its (locked, still ours) row: retry it or fail it."""
        if result.outcome is Outcome.RETRYABLE and claimed.attempt < self.max_attempts:
            if claimed.expires_at is not None and now >= claimed.expires_at:
                self._record_failed(session, row, claimed, result, now, expired=True)
            else:
                self._record_retry(session, row, claimed, result, now)
        else:
            self._record_failed(session, row, claimed, result, now)

    def _record_sent(self, claimed: Claimed, result: SendResult, now: datetime) -> dict[str, Any]:
        """Audit a send that went through; return the columns its row gets."""
        provider_id = _clip(result.provider_id, _PROVIDER_ID_WIDTH)
        self._audit_entry(now, "notification.sent", claimed, provider_id=provider_id)
        logger.info(
            "notification %s sent via %s (attempt %d, provider id %s)",
            claimed.id,
            claimed.channel,
            claimed.attempt,
            provider_id,
        )
        return {
            "id": claimed.id,
            "status": SENT,
            "sent_at": now,
            "provider_id": provider_id,
            "lease_until": None,
            # the columns describe the row as it is now; earlier failures stay in the audit log
            "error_code": None,
            "last_error": None,
        }

    def _record_retry(
        self,
        session: Session,
        row: Notification,
        claimed: Claimed,
        result: SendResult,
        now: datetime,
    ) -> None:
        delay = backoff_delay(
            claimed.attempt,
            base=self.backoff_seconds,
            cap=self.backoff_max_seconds,
            jitter=self._jitter(),
        )
        if result.retry_after is not None:
            # the provider knows its own rate limits better than our schedule
            delay = max(delay, result.retry_after)
        row.status = PENDING
        row.next_attempt_at = now + timedelta(seconds=delay)
        if claimed.expires_at is not None and row.next_attempt_at > claimed.expires_at:
            # one last try when the time-to-live runs out, then failover
            row.next_attempt_at = max(now, claimed.expires_at)
        row.lease_until = None
        row.error_code = _clip(result.error_code, _ERROR_CODE_WIDTH)
        row.last_error = result.reason
        self._audit_entry(
            now,
            "notification.retry",
            claimed,
            error_code=row.error_code,
            reason=result.reason,
            next_attempt_at=row.next_attempt_at.isoformat(),
        )
        logger.warning(
            "notification %s via %s failed (attempt %d): %s; retrying in %.0f s",
            row.id,
            claimed.channel,
            claimed.attempt,
            result.reason,
            delay,
        )

    def _record_failed(
        self,
        session: Session,
        row: Notification,
        claimed: Claimed,
        result: SendResult,
        now: datetime,
        *,
        expired: bool = False,
    ) -> None:
        if expired:
            reason = f"not delivered within its time-to-live: {result.reason}"
        elif result.outcome is Outcome.RETRYABLE:
            reason = f"gave up after {claimed.attempt} attempts: {result.reason}"
        else:
            reason = result.reason
        row.status = FAILED
        row.finished_at = now
        row.lease_until = None
        row.error_code = _clip(result.error_code, _ERROR_CODE_WIDTH)
        row.last_error = reason
        self._audit_entry(
            now, "notification.failed", claimed, error_code=row.error_code, reason=reason
        )
        logger.error(
            "notification %s via %s failed for good (attempt %d): %s",
            row.id,
            claimed.channel,
            claimed.attempt,
            reason,
        )
        if self.on_failed is not None:
            self._flush_audit(session)  # the failure is logged before what failover does
            self.on_failed(session, row, reason, now)

    def _record_stale(
        self, session: Session, claimed: Claimed, result: SendResult, now: datetime
    ) -> None:
        # Our lease expired mid-send and the row moved on without us. Its state
        # is left alone, but what we did is still recorded: a send that went
        # through here means the recipient may get the message twice, and the
        # provider id links any receipts for it.
        self._audit_entry(
            now,
            "notification.stale",
            claimed,
            outcome=result.outcome.value,
            provider_id=result.provider_id,
            error_code=result.error_code,
            reason=result.reason,
        )
        logger.warning(
            "notification %s: outcome of attempt %d (%s) arrived after its lease "
            "expired; not recorded on the row",
            claimed.id,
            claimed.attempt,
            result.outcome.value,
        )

    def _audit_entry(self, now: datetime, action: str, claimed: Claimed, **data: Any) -> None:
        """Buffer one event about a notification; `_flush_audit` appends it, in order."""
        assert self._audit_buffer is not None, "only while recording a batch"
        self._audit_buffer.append(
            audit.Entry(
                at=now,
                actor=self.actor,
                action=action,
                subject=f"notification:{claimed.id}",
                data={"channel": claimed.channel, "attempt": claimed.attempt, **data},
            )
        )

    def _flush_audit(self, session: Session) -> None:
        """Append the buffered events of the batch being recorded to the audit chain."""
        if self._audit_buffer:
            audit.record_many(session, self._audit_buffer)
            self._audit_buffer = []

    # --- running ----------------------------------------------------------------

    def wake(self) -> None:
        """Start delivering now rather than at the next poll (call after committing rows)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim up to `concurrency` due rows, deliver them concurrently; return how many.

        All deliveries finish before this returns; if any raised (a database
        error while recording), the first such error is raised afterwards.
        """
        claimed = self.claim(self.concurrency)
        if not claimed:
            return 0
        results = await asyncio.gather(*(self.deliver(c) for c in claimed), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors[1:]:
            logger.error("delivery failed", exc_info=error)
        if errors:
            raise errors[0]
        return len(claimed)

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
        `run` returns only when every outcome is.
        """
        pipe = _Pipe(asyncio.Queue(), set())
        senders = [
            asyncio.create_task(self._sender(pipe), name=f"outbox-sender-{i}")
            for i in range(self.concurrency)
        ]
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        try:
            while not stop.is_set():
                # cleared before claiming, so a wake() during the claim is not lost
                self._wake.clear()
                if self._runs_low(pipe):
                    limit = 2 * self.concurrency - self._sending - pipe.waiting
                    try:
                        claimed = self.claim(limit)
                    except Exception:
                        logger.exception(
                            "could not claim outbox rows; trying again in %g s", self.poll_seconds
                        )
                        claimed = []
                    # a full claim: more may be due, so senders call for the next one
                    self._more_due = len(claimed) >= limit
                    for row in claimed:
                        pipe.put(row)
                # woken by a poll, wake(), stop, or a sender when the queue runs low
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
        finally:
            stopping.cancel()
            if pipe.paced:
                await asyncio.wait(pipe.paced)  # their slots come within seconds
            for _ in senders:
                pipe.queue.put_nowait(None)  # after the rows still queued: those are sent first
            await asyncio.wait(senders)
            await self._outcomes.drain()

    def _runs_low(self, pipe: _Pipe) -> bool:
        """Too few claimed rows wait to keep every free sender busy."""
        return pipe.waiting < self.concurrency - self._sending

    async def _sender(self, pipe: _Pipe) -> None:
        """Send the queued rows one at a time until a None comes."""
        while (claimed := await pipe.queue.get()) is not None:
            self._sending += 1
            try:
                await self._deliver_logged(claimed)
            finally:
                self._sending -= 1
            if self._more_due and self._runs_low(pipe):
                self._wake.set()

    async def _deliver_logged(self, claimed: Claimed) -> None:
        """Send one claimed row and hand its outcome to the batcher, without waiting
        for the commit: the sender is free for the next send while the batch lingers."""
        try:
            result = await self._send(claimed)
        except Exception:
            # _send answers every provider and channel error; this is a bug of ours.
            # The loop must survive: the row is sent again when its lease expires.
            logger.exception("could not send notification %s", claimed.id)
            return
        self._outcomes.submit(claimed, result).add_done_callback(
            functools.partial(_log_unrecorded, claimed.id)
        )


@dataclass(frozen=True)
class _Pipe:
    """Claimed rows on their way to the senders: queued, or waiting for their slot."""

    queue: asyncio.Queue[Claimed | None]
    paced: set[asyncio.Task[None]]

    @property
    def waiting(self) -> int:
        return self.queue.qsize() + len(self.paced)

    def put(self, claimed: Claimed) -> None:
        """Queue `claimed` now, or when its rate limit slot comes."""
        if claimed.send_at <= time.monotonic():
            self.queue.put_nowait(claimed)
            return
        task = asyncio.create_task(self._put_later(claimed))
        self.paced.add(task)
        task.add_done_callback(self.paced.discard)

    async def _put_later(self, claimed: Claimed) -> None:
        await _slot(claimed)
        self.queue.put_nowait(claimed)


async def _slot(claimed: Claimed) -> None:
    """Wait for the rate limit slot `claimed` took (a time, whenever this is awaited)."""
    wait = claimed.send_at - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


class _OutcomeBatcher:
    """Collects send outcomes for a few milliseconds and records them together.

    Under load, one commit (with its audit events) per batch instead of one per
    message. `record` returns once its outcome is committed; `submit` returns
    at once, with a future that completes when it is. If a batch fails, every
    future in it gets the error (their rows are sent again when the lease runs
    out, as after a crash).
    """

    def __init__(
        self,
        record: Callable[[Sequence[tuple[Claimed, SendResult]]], None],
        *,
        linger: float = 0.05,
        max_batch: int = 256,
    ) -> None:
        self._record = record
        self._linger = linger
        self._max_batch = max_batch
        self._waiting: list[tuple[Claimed, SendResult, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, claimed: Claimed, result: SendResult) -> asyncio.Future[None]:
        """Queue an outcome for the next batch; the future completes once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((claimed, result, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def record(self, claimed: Claimed, result: SendResult) -> None:
        """Queue an outcome and return once it is committed (the error if its batch failed)."""
        # the flush runs to completion even if this caller is cancelled
        await asyncio.shield(self.submit(claimed, result))

    async def drain(self) -> None:
        """Return once every outcome submitted so far is recorded (or its batch failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._waiting:
            if len(self._waiting) < self._max_batch:
                await asyncio.sleep(self._linger)
            batch, self._waiting = (
                self._waiting[: self._max_batch],
                self._waiting[self._max_batch :],
            )
            try:
                self._record([(claimed, result) for claimed, result, _ in batch])
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)


def _log_unrecorded(notification_id: int, future: asyncio.Future[None]) -> None:
    """Log an outcome whose batch could not be committed (the row is retried on lease expiry)."""
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


# --- receipts -------------------------------------------------------------------


def record_receipt(
    session: Session,
    *,
    provider_id: str,
    status: str,
    error_code: str | None,
    payload: Mapping[str, str],
    at: datetime,
    actor: str = "provider",
    on_failed: OnFailed | None = None,
) -> Notification | None:
    """Store a provider's status report and apply it to its notification; does not commit.

    A report that the message was undelivered or failed calls `on_failed` (the
    failover) in the same transaction.

    The receipt row is always stored — even when no notification carries
    `provider_id` yet (then `notification_id` is NULL; the worker links it when
    it records that provider id). Terminal statuses (delivered, read,
    undelivered, failed, canceled) finish the notification; progress reports
    (queued, sending, sent …) change nothing, and no receipt ever moves a row
    backwards: a late "sent" after "delivered" is stored but ignored.
    Returns the notification, or None when the provider id is unknown.
    """
    notification = session.scalars(
        select(Notification)
        .where(Notification.provider_id == provider_id)
        .order_by(Notification.id)
        .limit(1)
        # two callbacks for one message may arrive at once; apply them one by one
        .with_for_update()
    ).first()
    receipt = Receipt(
        notification_id=notification.id if notification is not None else None,
        provider_id=provider_id,
        status=status,
        error_code=error_code,
        received_at=at,
        payload=dict(payload),
    )
    session.add(receipt)
    session.flush()  # assigns receipt.id for the audit event
    change = _apply_receipt(notification, receipt) if notification is not None else None
    audit.record(
        session,
        at=at,
        actor=actor,
        action="notification.receipt",
        subject=(
            f"notification:{notification.id}"
            if notification is not None
            else f"provider_message:{provider_id}"
        ),
        data=_receipt_audit_data(receipt, change),
    )
    if (
        on_failed is not None
        and notification is not None
        and change is not None
        and change[1] in (UNDELIVERED, FAILED)
    ):
        on_failed(session, notification, notification.last_error or receipt.status, at)
    return notification


def _apply_receipt(notification: Notification, receipt: Receipt) -> tuple[str, str] | None:
    """Move `notification` forward as `receipt` says; return (from, to) if it moved."""
    target = _TERMINAL_RECEIPTS.get(receipt.status.lower())
    if target is None or _RANK[target] <= _RANK.get(notification.status, 0):
        return None
    before = notification.status
    notification.status = target
    notification.finished_at = receipt.received_at
    notification.lease_until = None
    if target != DELIVERED:
        notification.error_code = _clip(receipt.error_code, _ERROR_CODE_WIDTH)
        code = f" (error {receipt.error_code})" if receipt.error_code else ""
        notification.last_error = f"provider reported {receipt.status}{code}"
    return before, target


def _link_early_receipts(
    session: Session, sent: Mapping[str, int], *, actor: str, now: datetime
) -> None:
    """Attach receipts that arrived before the worker recorded their provider ids.

    A fast provider can call back while the outcome transaction is still
    waiting for the database; those receipts were stored unattached and would
    otherwise never reach the row. `sent` maps the provider ids just recorded
    to their notification ids; one query finds the receipts for all of them.
    """
    if not sent:
        return
    early: Iterable[Receipt] = session.scalars(
        select(Receipt)
        .where(Receipt.provider_id.in_(sorted(sent)), Receipt.notification_id.is_(None))
        .order_by(Receipt.id)
    ).all()
    for receipt in early:
        notification = session.get_one(Notification, sent[receipt.provider_id])
        receipt.notification_id = notification.id
        change = _apply_receipt(notification, receipt)
        audit.record(
            session,
            at=now,
            actor=actor,
            action="notification.receipt",
            subject=f"notification:{notification.id}",
            data={**_receipt_audit_data(receipt, change), "linked_late": True},
        )


def _receipt_audit_data(receipt: Receipt, change: tuple[str, str] | None) -> dict[str, Any]:
    return {
        "receipt_id": receipt.id,
        "provider_id": receipt.provider_id,
        "status": receipt.status,
        "error_code": receipt.error_code,
        "received_at": receipt.received_at.isoformat(),
        "from": change[0] if change else None,
        "to": change[1] if change else None,
    }


def _clip(value: str | None, width: int) -> str | None:
    return value[:width] if value is not None else None
