"""Durable timers: claiming due escalation timers, running them, cancelling the rest.

Every later step, repeat and acknowledgement deadline of an alert is a row of
`escalation_timers`. The scheduler's `escalate_due` claims due rows with a
lease (SKIP LOCKED on PostgreSQL, like the outbox) and runs each in its own
transaction, so a restart or another instance picks them up and a failing one
does not block the others. `cancel_escalation` (an acknowledgement, a
resolution, a level change) cancels the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.audit import serialise_with_audit
from dispatcher.escalation.plan import ESCALATION_PREFIX
from dispatcher.escalation.told import AlertRef
from dispatcher.states import NotificationStatus, TimerStatus
from dispatcher.storage import held
from dispatcher.storage.models import Alert, EscalationTimer, Notification

__all__ = [
    "LEASE",
    "EscalationRun",
    "TimerRunner",
    "cancel_escalation",
    "cancel_escalations",
    "escalate_due",
]

log = logging.getLogger("yujing.escalation")

# A claimed timer is run within milliseconds; past this, its runner died.
LEASE: Final = timedelta(seconds=60)

# alert ids per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000

_TIMERS = EscalationTimer.metadata.tables[EscalationTimer.__tablename__]
_NOTIFICATIONS = Notification.metadata.tables[Notification.__tablename__]


@dataclass(frozen=True)
class EscalationRun:
    """What one `escalate_due` call did."""

    timers: int = 0
    notifications: int = 0


class TimerRunner(Protocol):
    """What fires a claimed timer: `dispatcher.escalation.engine.Escalation`."""

    def run_timer(self, session: Session, timer: EscalationTimer, now: datetime) -> int:
        """Fire one due timer (already locked by the caller); returns notifications enqueued."""
        ...


def cancel_escalation(
    session: Session, alert: Alert, *, at: datetime, actor: str, reason: str
) -> tuple[list[int], list[int]]:
    """Cancel the alert's pending timers and its escalation messages not yet sent.

    Returns (timer ids, notification ids) cancelled; records one audit event
    when anything was cancelled. Does not commit.
    """
    cancelled = cancel_escalations(session, [alert], at=at, actor=actor, reason=reason)
    return cancelled[alert.id]


def cancel_escalations(
    session: Session,
    alerts: Sequence[AlertRef],
    *,
    at: datetime,
    actor: str,
    reason: str,
    before: Callable[[AlertRef], object] = lambda alert: None,
) -> dict[int, tuple[list[int], list[int]]]:
    """`cancel_escalation` for many alerts (`Alert`s or only their columns): two
    statements per thousand, then, per alert in order, `before(alert)` and its
    `escalation.cancelled` audit event.

    `before` lets a caller put an alert's own audit event ahead of its
    cancellation's, as when one alert at a time is closed. Does not commit.
    """
    held.write(session)
    session.flush()  # statements on the tables do not flush the session themselves
    ids = [alert.id for alert in alerts]
    timers: dict[int, list[int]] = {alert_id: [] for alert_id in ids}
    notes: dict[int, list[int]] = {alert_id: [] for alert_id in ids}
    # the tables, not the models: the ORM's bulk-update bookkeeping is no use here
    timer_rows, note_rows = _TIMERS, _NOTIFICATIONS
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        # RETURNING: exactly the rows this statement changed, not those a worker claimed meanwhile
        for timer_id, alert_id in session.execute(
            update(timer_rows)
            .where(
                timer_rows.c.alert_id.in_(chunk),
                _unindexed(timer_rows.c.status) == TimerStatus.PENDING,
            )
            .values(status=TimerStatus.CANCELLED, finished_at=at, lease_until=None)
            .returning(timer_rows.c.id, timer_rows.c.alert_id)
        ):
            timers[alert_id].append(timer_id)
        for note_id, note_alert_id in session.execute(
            update(note_rows)
            .where(
                note_rows.c.alert_id.in_(chunk),
                _unindexed(note_rows.c.status) == NotificationStatus.PENDING,
                note_rows.c.transition.startswith(ESCALATION_PREFIX),
            )
            .values(status=NotificationStatus.CANCELLED, finished_at=at)
            .returning(note_rows.c.id, note_rows.c.alert_id)
        ):
            notes[note_alert_id].append(note_id)
    out: dict[int, tuple[list[int], list[int]]] = {}
    for alert in alerts:
        before(alert)
        cancelled = out[alert.id] = (sorted(timers[alert.id]), sorted(notes[alert.id]))
        if cancelled[0] or cancelled[1]:
            audit.append(
                session,
                at=at,
                actor=actor,
                action="escalation.cancelled",
                subject=f"alert:{alert.id}",
                data={
                    "code": alert.code,
                    "reason": reason,
                    "timers": cancelled[0],
                    "notifications": cancelled[1],
                },
            )
    return out


def _unindexed(status: ColumnElement[str]) -> ColumnElement[str]:
    """`status` as an expression no index serves (`status || ''`, the same value).

    Cancelling by alert ids must search the alert id's index. Without
    statistics SQLite's planner prefers the status index (every pending timer or
    message of every alert, read again for each thousand alert ids: a
    province's all-clear read millions of rows); PostgreSQL picks by its
    statistics either way.
    """
    return status.concat("")


def escalate_due(
    sessions: sessionmaker[Session],
    escalation: TimerRunner,
    now: datetime,
    *,
    limit: int = 200,
) -> EscalationRun:
    """Run every escalation timer due at `now`; the scheduler calls this every few seconds.

    Claims up to `limit` due timers in one short transaction (a lease; SKIP
    LOCKED on PostgreSQL, so instances never run the same timer), then runs each
    in its own transaction, guarded by the lease: a timer an acknowledgement
    cancelled meanwhile is skipped, and a runner that dies leaves its timers to
    be claimed again when the lease runs out.
    """
    lease_until = now + LEASE
    with sessions.begin() as session:
        rows = session.scalars(
            select(EscalationTimer)
            .where(
                EscalationTimer.status == TimerStatus.PENDING,
                EscalationTimer.due_at <= now,
                or_(EscalationTimer.lease_until.is_(None), EscalationTimer.lease_until < now),
            )
            .order_by(EscalationTimer.due_at, EscalationTimer.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.lease_until = lease_until
        claimed = [row.id for row in rows]
    fired = notified = 0
    for timer_id in claimed:
        try:
            with sessions.begin() as session:
                # the chain lock first, as every writer takes it (see serialise_with_audit);
                # it also orders this timer after any acknowledgement in progress
                serialise_with_audit(session)
                timer = session.scalar(
                    select(EscalationTimer)
                    .where(
                        and_(
                            EscalationTimer.id == timer_id,
                            EscalationTimer.status == TimerStatus.PENDING,
                            EscalationTimer.lease_until == lease_until,
                        )
                    )
                    .with_for_update()
                )
                if timer is None:
                    continue  # cancelled, or re-claimed after our lease ran out
                notified += escalation.run_timer(session, timer, now)
                fired += 1
        except Exception:
            # one broken timer must not hold up the others; it is retried after the lease
            log.exception("escalation timer %d failed; retrying after its lease", timer_id)
    if fired:
        log.info("escalation: %d timers fired, %d notifications", fired, notified)
    return EscalationRun(fired, notified)
