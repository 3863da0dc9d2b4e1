"""Recording outcomes: what a send's result does to its row, and the audit it leaves.

A sent row becomes `sent`; a retryable failure puts it back `pending` with a
doubling backoff (until `max_attempts` or its time-to-live, then it fails); a
permanent failure fails it. Every outcome is recorded with a guard — the row
must still be `sending` with the attempt number this worker claimed — so a
worker whose lease expired while it was sending cannot overwrite the outcome
of the attempt that replaced it (that outcome is audited as stale).

Outcomes are recorded in batches (`OutcomeBatcher`): one transaction and one
`AuditBatch` of events for many sends. The audit batch is explicit: made per
recording transaction, passed to what adds to it, flushed where the order of
the audit chain needs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels.base import Outcome, SendResult
from dispatcher import audit
from dispatcher.outbox.claim import Claimed
from dispatcher.outbox.receipts import link_early_receipts
from dispatcher.outbox.rows import ERROR_CODE_WIDTH, PROVIDER_ID_WIDTH, OnFailed, clip
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import Notification

logger = logging.getLogger(__name__)

JITTER_FRACTION: Final = 0.2
"""Retry delays are spread ±20% so rows that failed together do not retry together."""


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


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how far apart a failed send is tried again."""

    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float
    jitter: Callable[[], float]
    """A float in [0, 1) for the spread of each delay (tests pass a constant)."""

    def delay(self, failed_attempt: int) -> float:
        """Seconds before the attempt after `failed_attempt`."""
        return backoff_delay(
            failed_attempt,
            base=self.backoff_seconds,
            cap=self.backoff_max_seconds,
            jitter=self.jitter(),
        )


@dataclass
class AuditBatch:
    """The audit events of one recording transaction, appended to the chain in order.

    Events about many rows are collected and appended together (one insert,
    not one per event); `flush` appends what is collected so far, before
    something else writes to the audit chain in the same transaction.
    """

    actor: str
    entries: list[audit.Entry] = field(default_factory=list)

    def add(self, now: datetime, action: str, claimed: Claimed, **data: Any) -> None:
        """Collect one event about the notification `claimed`."""
        self.entries.append(
            audit.Entry(
                at=now,
                actor=self.actor,
                action=action,
                subject=f"notification:{claimed.id}",
                data={"channel": claimed.channel, "attempt": claimed.attempt, **data},
            )
        )

    def flush(self, session: Session) -> None:
        """Append the collected events to the audit chain."""
        if self.entries:
            audit.record_many(session, self.entries)
            self.entries = []


def record_outcomes(
    session: Session,
    outcomes: Sequence[tuple[Claimed, SendResult]],
    *,
    now: datetime,
    retry: RetryPolicy,
    actor: str,
    on_failed: OnFailed | None,
) -> None:
    """Record several outcomes in the caller's transaction (one commit, not one each).

    Under load a batch holds hundreds of outcomes, nearly all of them sends
    that went through: their rows are checked and updated with a statement
    each for the whole batch, and their audit events appended in one go.
    Only rows with another outcome are loaded as objects, one by one.
    """
    # lock every row of the batch first, in id order, before any audit lock:
    # the same order as receipts take (row, then audit), so two writers never
    # wait on each other in a circle
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
    events = AuditBatch(actor)
    for claimed, result in outcomes:
        # still ours: nobody re-claimed it after our lease expired
        ours = state.get(claimed.id) == (NotificationStatus.SENDING, claimed.attempt)
        if ours and result.outcome is Outcome.OK:
            sent.append(_record_sent(events, claimed, result, now))
            state[claimed.id] = (NotificationStatus.SENT, claimed.attempt)
        elif not ours:
            _record_stale(events, claimed, result, now)
        else:
            row = session.get_one(Notification, claimed.id)
            _record_unsent(session, events, row, claimed, result, now, retry, on_failed)
            state[claimed.id] = (row.status, row.attempts)
    if sent:
        session.execute(update(Notification), sent)  # by primary key, for all
    events.flush(session)
    link_early_receipts(
        session,
        {row["provider_id"]: row["id"] for row in sent if row["provider_id"]},
        actor=actor,
        now=now,
    )


def _record_unsent(
    session: Session,
    events: AuditBatch,
    row: Notification,
    claimed: Claimed,
    result: SendResult,
    now: datetime,
    retry: RetryPolicy,
    on_failed: OnFailed | None,
) -> None:
    """Record a failed send on its (locked, still ours) row: retry it or fail it."""
    if result.outcome is Outcome.RETRYABLE and claimed.attempt < retry.max_attempts:
        if claimed.expires_at is not None and now >= claimed.expires_at:
            _record_failed(session, events, row, claimed, result, now, on_failed, expired=True)
        else:
            _record_retry(events, row, claimed, result, now, retry)
    else:
        _record_failed(session, events, row, claimed, result, now, on_failed)


def _record_sent(
    events: AuditBatch, claimed: Claimed, result: SendResult, now: datetime
) -> dict[str, Any]:
    """Audit a send that went through; return the columns its row gets."""
    provider_id = clip(result.provider_id, PROVIDER_ID_WIDTH)
    events.add(now, "notification.sent", claimed, provider_id=provider_id)
    logger.info(
        "notification %s sent via %s (attempt %d, provider id %s)",
        claimed.id,
        claimed.channel,
        claimed.attempt,
        provider_id,
    )
    return {
        "id": claimed.id,
        "status": NotificationStatus.SENT,
        "sent_at": now,
        "provider_id": provider_id,
        "lease_until": None,
        # the columns describe the row as it is now; earlier failures stay in the audit log
        "error_code": None,
        "last_error": None,
    }


def _record_retry(
    events: AuditBatch,
    row: Notification,
    claimed: Claimed,
    result: SendResult,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    delay = retry.delay(claimed.attempt)
    if result.retry_after is not None:
        # the provider knows its own rate limits better than our schedule
        delay = max(delay, result.retry_after)
    row.status = NotificationStatus.PENDING
    row.next_attempt_at = now + timedelta(seconds=delay)
    if claimed.expires_at is not None and row.next_attempt_at > claimed.expires_at:
        # one last try when the time-to-live runs out, then failover
        row.next_attempt_at = max(now, claimed.expires_at)
    row.lease_until = None
    row.error_code = clip(result.error_code, ERROR_CODE_WIDTH)
    row.last_error = result.reason
    events.add(
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
    session: Session,
    events: AuditBatch,
    row: Notification,
    claimed: Claimed,
    result: SendResult,
    now: datetime,
    on_failed: OnFailed | None,
    *,
    expired: bool = False,
) -> None:
    if expired:
        reason = f"not delivered within its time-to-live: {result.reason}"
    elif result.outcome is Outcome.RETRYABLE:
        reason = f"gave up after {claimed.attempt} attempts: {result.reason}"
    else:
        reason = result.reason
    row.status = NotificationStatus.FAILED
    row.finished_at = now
    row.lease_until = None
    row.error_code = clip(result.error_code, ERROR_CODE_WIDTH)
    row.last_error = reason
    events.add(now, "notification.failed", claimed, error_code=row.error_code, reason=reason)
    logger.error(
        "notification %s via %s failed for good (attempt %d): %s",
        row.id,
        claimed.channel,
        claimed.attempt,
        reason,
    )
    if on_failed is not None:
        events.flush(session)  # the failure is logged before what failover does
        on_failed(session, row, reason, now)


def _record_stale(events: AuditBatch, claimed: Claimed, result: SendResult, now: datetime) -> None:
    # Our lease expired mid-send and the row moved on without us. Its state
    # is left alone, but what we did is still recorded: a send that went
    # through here means the recipient may get the message twice, and the
    # provider id links any receipts for it.
    events.add(
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


class OutcomeBatcher:
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
