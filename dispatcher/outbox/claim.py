"""Claiming: lease due outbox rows to a worker, paced by rate limits.

A claim is a lease: the row is marked `sending` with `lease_until`, in a short
transaction that is committed before anything is sent. Due means `pending`
with `next_attempt_at` ≤ now, or `sending` whose lease ran out (its worker
died or hung). Both clocks are passed in: the wall clock (`clock`, for due
times and leases) and the monotonic one (`monotonic`, for rate limit slots),
so a test can move either by hand.

Priority: when a rate limit binds, the most urgent message goes first. Due
rows are claimed in the order (rank, `next_attempt_at`, id), the rank being
the row's stored `priority`, set when it was created from the level of its
alert (an event's, a zone's or a system alert's; `states.priority_of`): red 0,
orange 1, yellow 2, blue 3; a row without an alert, or with a level of another
name, is orange. So that a flood of red never starves the rest, a row due for
longer than `priority_aging_seconds` (setting `outbox_priority_aging_seconds`,
300 s) ranks as red: among red rows the oldest due goes first, so an aged
yellow or blue row leaves ahead of a fresh red one. Every aged row fell due
before every fresh one, so the order is two index reads, each with its LIMIT
and no sort (`pending_rows`): the aged rows in due order
(`ix_notifications_status_due`), then the fresh ones in the order of
`ix_notifications_claim` (status, priority, due time, id). A province's burst
of 60,000 rows costs a claim what a county's does.
The order holds across claims and inside one: a red row claimed in the same
batch as yellow rows of its channel takes the earlier rate limit slot, and one
committed later takes the first slot no claimed row holds yet (the slots
already taken are at most `PACE_AHEAD_SECONDS` ahead).

Scale-out: several processes share one PostgreSQL outbox; the claim query uses
``FOR UPDATE SKIP LOCKED`` so two workers never claim the same row and never
wait for each other. On SQLite, ``BEGIN IMMEDIATE`` (see `storage.db`)
serialises claims instead.

A claim is checked again right before its send (`still_ours`, on PostgreSQL;
see `DeliveryWorker`): a process frozen past its lease (SIGSTOP, a VM pause)
while another instance claimed and sent the row again drops it on resuming
instead of sending it a second time. The claim's token is its attempt number
(each claim adds one): the outcome is recorded on the row only if the row is
still `sending` with that attempt, checked under the row's lock (`record`).
On SQLite one process owns the outbox and its own clock times the leases, so
the worker's check of the lease against that clock is the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from channels.base import OutgoingMessage
from dispatcher import audit
from dispatcher.outbox.rows import OnFailed
from dispatcher.ratelimit import ChannelPacer
from dispatcher.states import PRIORITY_RANKS, NotificationStatus
from dispatcher.storage.models import Alert, Notification

logger = logging.getLogger(__name__)

# A row is claimed only if its rate limit lets it go within this long (see claim()).
PACE_AHEAD_SECONDS: Final = 2.0
_MAX_CLAIM_ROUNDS: Final = 8

DEFAULT_PRIORITY_AGING_SECONDS: Final = 300.0


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
    Notification.mentions,
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
    @property
    def mentions(self) -> list[str] | None: ...


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
    send_at: float = 0.0
    """When its rate limit lets it go (on the claimer's monotonic clock; the slot is taken)."""


async def until_slot(claimed: Claimed, monotonic: Callable[[], float]) -> None:
    """Wait for the rate limit slot `claimed` took (a time, whenever this is awaited)."""
    wait = claimed.send_at - monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


@dataclass
class Claimer:
    """Leases due rows to one worker: the claim transaction and what it reads and writes.

    `pacer` is shared with the worker's senders (they check the rate once more
    as each send goes). `ttl_seconds` maps an alert level to how long its
    messages are retried; `on_failed` (the failover) is called for a row whose
    expired lease was its last allowed attempt.
    """

    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    pacer: ChannelPacer
    lease_seconds: float
    max_attempts: int
    ttl_seconds: Mapping[str, float]
    status_callback_url: str | None
    actor: str
    on_failed: OnFailed | None
    priority_aging_seconds: float = DEFAULT_PRIORITY_AGING_SECONDS

    @property
    def pace_ahead(self) -> float:
        """How near a rate limit slot must be for its row to be claimed: well inside
        the lease, which the wait for the slot uses up."""
        return min(PACE_AHEAD_SECONDS, self.lease_seconds / 4)

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows, in one short committed transaction.

        Each claim counts as an attempt. A row whose expired lease was already
        its last allowed attempt is marked failed instead of being sent again.

        A row is claimed only if its channel's (or robot's) rate limit lets it go
        within `PACE_AHEAD_SECONDS` (or a quarter of the lease, if shorter); its
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
        pace_ahead = self.pace_ahead
        # rows whose worker died mid-send first (few: at most the rows in
        # flight), then the due pending rows, most urgent first. Two queries,
        # not one with OR: the first reads few rows, and each uses its index.
        busy = [
            Notification.channel != channel
            if address is None
            else or_(Notification.channel != channel, Notification.address != address)
            for channel, address in self.pacer.busy(pace_ahead)
        ]
        expired = and_(
            Notification.status == NotificationStatus.SENDING,
            Notification.lease_until < now,
            *busy,
        )
        aged_before = now - timedelta(seconds=self.priority_aging_seconds)
        expired_rank = case(
            (Notification.next_attempt_at < aged_before, PRIORITY_RANKS["red"]),
            else_=Notification.priority,
        )
        rows = _due_rows(
            session, expired, (expired_rank, Notification.next_attempt_at, Notification.id), limit
        )
        rows += pending_rows(session, now, aged_before, limit - len(rows), *busy)
        claimed: list[Claimed] = []
        leased: list[int] = []
        passed_over = False
        for row in rows:
            if row.status == NotificationStatus.SENDING and row.attempts >= self.max_attempts:
                self._give_up_expired(session, session.get_one(Notification, row.id), now)
                continue
            wait = self.pacer.reserve(row.channel, row.address, pace_ahead)
            if wait is None:
                passed_over = True  # its turn is further off: it waits in the outbox
                continue
            send_at = self.monotonic() + wait
            leased.append(row.id)
            claimed.append(self._snapshot(row, lease_until, row.level, row.attempts + 1, send_at))
        if leased:
            session.execute(
                update(Notification)
                .where(Notification.id.in_(leased))
                .values(
                    status=NotificationStatus.SENDING,
                    attempts=Notification.attempts + 1,
                    lease_until=lease_until,
                ),
                execution_options={"synchronize_session": False},
            )
        return claimed, passed_over

    def still_ours(self, claims: Sequence[Claimed]) -> set[int]:
        """The ids of `claims` still this worker's, read from the database in one
        query just before their sends: the row is `sending` with the attempt and
        lease the claim gave it, and the lease has not run out.

        A worker whose process was frozen (or whose clock lags) while another
        claimed a row again finds it changed and does not send it.
        """
        if not claims:
            return set()
        tokens = {c.id: (c.attempt, c.lease_until) for c in claims}
        with self.sessions() as session:
            rows = session.execute(
                select(
                    Notification.id,
                    Notification.status,
                    Notification.attempts,
                    Notification.lease_until,
                ).where(Notification.id.in_(sorted(tokens)))
            ).all()
        now = self.clock()
        return {
            row.id
            for row in rows
            if row.status == NotificationStatus.SENDING
            and (row.attempts, row.lease_until) == tokens[row.id]
            and row.lease_until is not None
            and row.lease_until > now
        }

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
                mentions=tuple(row.mentions or ()),
            ),
            attempt=attempt,
            lease_until=lease_until,
            expires_at=row.created_at + timedelta(seconds=ttl) if ttl else None,
            send_at=send_at,
        )

    def _give_up_expired(self, session: Session, row: Notification, now: datetime) -> None:
        """Fail a row whose worker stopped mid-send on its last allowed attempt."""
        reason = (
            f"gave up after {row.attempts} attempts: the worker sending attempt "
            f"{row.attempts} stopped before recording an outcome (lease expired)"
        )
        row.status = NotificationStatus.FAILED
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


class ClaimCheck:
    """Checks claims just before their sends (`Claimer.still_ours`), many in one query.

    Senders freed together (the provider's answers arrive together under load)
    ask together: the asks made while the event loop runs one round share one
    query, so the check costs one round trip per batch, not one per message.
    """

    def __init__(self, claimer: Claimer) -> None:
        self._claimer = claimer
        self._asked: list[tuple[Claimed, asyncio.Future[bool]]] = []
        self._checker: asyncio.Task[None] | None = None

    async def still_ours(self, claimed: Claimed) -> bool:
        """Whether `claimed` is still this worker's; not when the database cannot say
        (then its outcome could not be recorded either: the row goes again when
        its lease runs out, sent once rather than perhaps twice)."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked.append((claimed, answer))
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check())
        try:
            return await answer
        except Exception as exc:
            logger.warning(
                "notification %s: could not check its claim (%s); not sent",
                claimed.id,
                type(exc).__name__,
            )
            return False

    async def _check(self) -> None:
        while self._asked:
            await asyncio.sleep(0)  # the senders ready in this round of the loop join
            batch, self._asked = self._asked, []
            try:
                ours = self._claimer.still_ours([claimed for claimed, _ in batch])
            except Exception as exc:
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
            else:
                for claimed, answer in batch:
                    if not answer.done():
                        answer.set_result(claimed.id in ours)


def pending_rows(
    session: Session,
    now: datetime,
    aged_before: datetime,
    limit: int,
    *also: ColumnElement[bool],
) -> list[Any]:
    """Up to `limit` pending rows due at `now` (and matching `also`), most urgent
    first, locked for this claim: the rows due since before `aged_before` (they
    rank as red, and fell due before any other) in due order, then the others by
    priority and due time. Each part is read off an index in its order."""
    pending = Notification.status == NotificationStatus.PENDING
    aged = _due_rows(
        session,
        and_(pending, Notification.next_attempt_at < aged_before, *also),
        (Notification.next_attempt_at, Notification.id),
        limit,
    )
    due_at: ColumnElement[datetime] = Notification.next_attempt_at.expression
    if session.get_bind().dialect.name == "sqlite":
        # `+next_attempt_at`: the same value, but no term SQLite reads an index by,
        # so it reads ix_notifications_claim in order rather than the due-time
        # range of ix_notifications_status_due and a sort of every due row
        # (SQLite has no index hints; PostgreSQL chooses the claim index itself)
        due_at = UnaryExpression(due_at, operator=custom_op("+"), type_=due_at.type)
    return aged + _due_rows(
        session,
        and_(pending, due_at >= aged_before, due_at <= now, *also),
        (Notification.priority, Notification.next_attempt_at, Notification.id),
        limit - len(aged),
    )


def _due_rows(
    session: Session,
    where: ColumnElement[bool],
    order: tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...],
    limit: int,
) -> list[Any]:
    """Up to `limit` rows matching `where`, in `order`, locked for this claim."""
    if limit <= 0:
        return []
    # Only the ids in the locking query (read off the index in its order), the
    # rest of the columns and the alert's level read for the `limit` chosen.
    chosen = (
        select(Notification.id)
        .where(where)
        .order_by(*order)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are
        # skipped, not waited for. SQLite ignores this clause; its
        # BEGIN IMMEDIATE already makes claims one at a time.
        .with_for_update(skip_locked=True)
    )
    return list(
        session.execute(
            select(*_CLAIM_COLUMNS, Alert.level)
            .outerjoin(Alert, Alert.id == Notification.alert_id)
            .where(Notification.id.in_(chosen))
            .order_by(*order)
        )
    )
