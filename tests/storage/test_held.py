"""Rows held in a batch (a poll's outbox rows and timers) are inserted at its end, in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.outbox.rows import HeldRow, queue
from dispatcher.routing import Recipient
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage import held
from dispatcher.storage.models import Alert, Base, EscalationTimer, Notification
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


# --- the driver-level insert stores exactly what SQLAlchemy's own insert stores


def _stored(session: Session, table: str, key: str, value: object) -> dict[str, object]:
    """One row as the database keeps it (raw driver values, not through the model)."""
    row = session.execute(
        text(f"SELECT * FROM {table} WHERE {key} = :value"), {"value": value}
    ).one()
    return {k: v for k, v in row._mapping.items() if k not in ("id", key)}


def test_insert_rows_stores_what_sqlalchemy_stores(db: sessionmaker[Session]) -> None:
    later = datetime(2026, 1, 6, 18, 30, 15, 123456, tzinfo=UTC)
    with db.begin() as session:
        alert = _alert(session)
        notification = {
            "alert_id": alert.id,
            "transition": "new",
            "person_id": None,
            "recipient_name": "冯家沟村",
            "address": "village:穆村镇/冯家沟村",
            "channel": "console",
            "body": '【柳林县】寒潮"黄色"预警\n回复1确认',
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": later,
            "created_at": NOW,
            "mentions": None,  # JSON's null, as SQLAlchemy stores it: not SQL NULL
            "priority": 2,
            "failover_of_id": None,
        }
        timer = {
            "alert_id": alert.id,
            "kind": "step",
            "step": 1,
            "round": 0,
            "epoch": 0,
            "due_at": later,
            "status": "pending",
            "plan": {"body": "正文", "targets": ["leader_on_duty"], "n": 1.5, "none": None},
            "created_at": NOW,
        }
        session.execute(
            insert(Base.metadata.tables["notifications"]),
            [notification | {"idempotency_key": "by-sqlalchemy"}],
        )
        held.insert_rows(session, Notification, [notification | {"idempotency_key": "by-driver"}])
        session.execute(
            insert(Base.metadata.tables["escalation_timers"]), [timer | {"kind": "by-sqlalchemy"}]
        )
        held.insert_rows(session, EscalationTimer, [timer | {"kind": "by-driver"}])

    with db() as session:
        assert _stored(session, "notifications", "idempotency_key", "by-sqlalchemy") == _stored(
            session, "notifications", "idempotency_key", "by-driver"
        )
        assert _stored(session, "escalation_timers", "kind", "by-sqlalchemy") == _stored(
            session, "escalation_timers", "kind", "by-driver"
        )
        # and the model reads them back alike
        by_driver = session.scalars(
            select(Notification).where(Notification.idempotency_key == "by-driver")
        ).one()
        assert (by_driver.next_attempt_at, by_driver.mentions) == (later, None)


def test_insert_rows_fills_python_side_defaults_and_keeps_order(
    db: sessionmaker[Session],
) -> None:
    with db.begin() as session:
        alert = _alert(session)
        rows = [
            {
                "alert_id": alert.id,
                "due_at": NOW,
                "created_at": NOW,
                "kind": f"k{i}",
            }  # step, round, epoch, status and plan left to their defaults
            for i in range(5)
        ]
        held.insert_rows(session, EscalationTimer, rows)

    with db() as session:
        timers = session.scalars(select(EscalationTimer).order_by(EscalationTimer.id)).all()
        assert [t.kind for t in timers] == [f"k{i}" for i in range(5)]
        assert {(t.step, t.round, t.epoch, t.status) for t in timers} == {(0, 0, 0, "pending")}
        assert [t.plan for t in timers] == [{}] * 5


def test_insert_rows_asks_for_nothing_back(db: sessionmaker[Session]) -> None:
    # PostgreSQL would otherwise be asked for each row's id (RETURNING), sent back
    # and thrown away: tens of thousands of rows a province's commit
    with db() as session:
        dialect = session.connection().dialect
        plan = held._plan(
            Base.metadata.tables["notifications"], ("body", "idempotency_key"), frozenset(), dialect
        )
        assert "RETURNING" not in plan.sql.upper()


# --- a poll's zone alerts name their event before it is written: the key checked at commit


def _zone_alert(session: Session, id_: int, event_id: int) -> None:
    row = {
        "id": id_,
        "code": f"C{id_:03d}",
        "kind": AlertKind.HAZARD,
        "hazard": "cold_wave",
        "rule_id": "r",
        "title": "寒潮",
        "level": "yellow",
        "state": AlertState.FIRING,
        "opened_at": NOW,
        "updated_at": NOW,
        "event_id": event_id,
    }
    session.execute(insert(Alert), row)


def test_a_zone_alert_may_name_its_event_before_the_event_is_written(
    db: sessionmaker[Session],
) -> None:
    with db.begin() as session:
        _zone_alert(session, 1, event_id=2)
        _zone_alert(session, 2, event_id=2)  # the "event", written after its zone
    with db() as session:
        assert session.get_one(Alert, 1).event_id == 2


def test_an_event_that_never_comes_fails_the_commit_and_nothing_is_kept(
    db: sessionmaker[Session],
) -> None:
    with pytest.raises(IntegrityError), db.begin() as session:
        _zone_alert(session, 1, event_id=2)
        _zone_alert(session, 3, event_id=99)
    with db() as session:
        assert session.scalar(select(func.count(Alert.id))) == 0
