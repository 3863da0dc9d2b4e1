"""Rows held in a batch (a poll's outbox rows and timers) are inserted at its end, in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.outbox.rows import HeldRow, queue
from dispatcher.routing import Recipient
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage import held
from dispatcher.storage.models import Alert, Notification
from tests.support import example_county

NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)


def _alert(session: Session) -> Alert:
    alert = Alert(
        code="ACDE",
        kind=AlertKind.HAZARD,
        hazard="cold_wave",
        rule_id="r",
        level="yellow",
        state=AlertState.FIRING,
        opened_at=NOW,
        updated_at=NOW,
    )
    session.add(alert)
    session.flush()
    return alert


PEOPLE = [p for p in example_county().people.values() if p.duty_role is None][:3]


def _queue_three(session: Session, alert: Alert) -> list[object]:
    return [
        queue(
            session,
            alert,
            "new",
            Recipient(p.id, p.name, p.phone, "monitoring"),
            "console",
            f"正文{i}",
            NOW,
        )
        for i, p in enumerate(PEOPLE)
    ]


def _keys(session: Session) -> list[str]:
    return list(session.scalars(select(Notification.idempotency_key).order_by(Notification.id)))


def test_rows_queued_in_a_batch_are_inserted_at_its_end_in_order(
    db: sessionmaker[Session],
) -> None:
    with db.begin() as session, held.batch(session):
        alert = _alert(session)
        queued = _queue_three(session, alert)
        # held, not added: no row and no ORM object yet
        assert all(isinstance(q, HeldRow) for q in queued)
        assert session.scalar(select(func.count(Notification.id))) == 0

    with db() as session:
        assert _keys(session) == [f"{alert.id}:new:{p.id}:console" for p in PEOPLE]
        row = session.scalars(select(Notification).order_by(Notification.id)).first()
        assert row is not None
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, NOW)


def test_a_reader_inside_a_batch_writes_what_is_held_first(
    db: sessionmaker[Session],
) -> None:
    with db.begin() as session, held.batch(session):
        alert = _alert(session)
        _queue_three(session, alert)
        held.write(session)
        assert len(_keys(session)) == 3


def test_outside_a_batch_a_queued_row_is_an_ordinary_notification(
    db: sessionmaker[Session],
) -> None:
    with db.begin() as session:
        queued = _queue_three(session, _alert(session))
        assert all(isinstance(q, Notification) for q in queued)
        session.flush()
        assert len(_keys(session)) == 3


def test_a_failed_batch_inserts_nothing(db: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), db.begin() as session, held.batch(session):
        _queue_three(session, _alert(session))
        raise RuntimeError("the poll failed")

    with db() as session:
        assert session.scalar(select(func.count(Notification.id))) == 0
