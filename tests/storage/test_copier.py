"""A batch's rows sent by a second thread (COPYs on PostgreSQL, INSERTs of many rows
on SQLite): seen by the next statement, their failure the batch's, nothing left
behind."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.storage import held
from dispatcher.storage.copier import ROWS_PER_INSERT, Copier
from dispatcher.storage.db import make_engine
from dispatcher.storage.models import AuditEvent, Base, ForecastRun

AT = datetime(2026, 1, 6, 16, tzinfo=UTC)


def _runs(first: int, count: int) -> list[dict[str, object]]:
    return [
        {"id": first + i, "source": f"回放{i}", "started_at": AT, "finished_at": AT, "ok": True}
        for i in range(count)
    ]


def _copiers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yujing-copy"]


def _count(session: Session) -> int:
    return session.scalar(select(func.count(ForecastRun.id))) or 0


def test_rows_written_in_a_batch_are_seen_by_its_next_statement(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, held.batch(session):
        for part in range(5):
            held.insert_rows(session, ForecastRun, _runs(1 + 300 * part, 300))
        # on PostgreSQL the COPYs may still be under way: the SELECT waits for them
        assert _count(session) == 1500
        held.insert_rows(session, ForecastRun, _runs(1501, 10))
        assert session.scalar(select(func.max(ForecastRun.id))) == 1510
    assert not _copiers()
    with sessions() as session:
        assert _count(session) == 1510
        assert session.get_one(ForecastRun, 1509).source == "回放8"


def test_a_failed_copy_fails_the_batch_and_nothing_is_committed(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(IntegrityError), sessions.begin() as session, held.batch(session):
        held.insert_rows(session, ForecastRun, _runs(1, 100))
        held.insert_rows(session, ForecastRun, _runs(50, 10))  # ids 50–59 taken
        held.insert_rows(session, ForecastRun, _runs(200, 10))
        session.execute(text("SELECT 1"))  # the duplicate is raised here at the latest
    assert not _copiers()
    with sessions() as session:
        assert _count(session) == 0


def test_a_batch_that_raises_drops_its_copies_and_leaves_the_connection_usable(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session, held.batch(session):
        for part in range(20):
            held.insert_rows(session, ForecastRun, _runs(1 + 100 * part, 100))
        raise RuntimeError("the poll failed")
    assert not _copiers()
    with sessions.begin() as session:
        assert _count(session) == 0
        held.insert_rows(session, ForecastRun, _runs(1, 3))  # in line, outside a batch
    with sessions() as session:
        assert _count(session) == 3


def test_audit_events_chained_in_parts_of_a_batch_verify(
    sessions: sessionmaker[Session],
) -> None:
    """The chain's tail is kept between a batch's parts, not read back; an event
    recorded in the middle (`record`, in line) chains onto it all the same."""
    with sessions.begin() as session, audit.batch(session), held.batch(session):
        for part in range(3):
            for i in range(50):
                audit.append(session, at=AT, actor="t", action="a.b", data={"i": i, "p": part})
            audit.write_pending(session)
        audit.record(session, at=AT, actor="t", action="a.middle", data={"名": "中"})
        audit.append(session, at=AT, actor="t", action="a.end")
    with sessions() as session:
        assert audit.verify(session) == []
        assert session.scalar(select(func.count(AuditEvent.id))) == 152
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions[-2:] == ["a.middle", "a.end"]


def test_a_batch_sends_its_rows_from_a_second_thread(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, held.batch(session):
        held.insert_rows(session, ForecastRun, _runs(1, 10))
        assert len(_copiers()) == 1
        assert isinstance(session.info.get("yujing.held.copier"), Copier)
    assert not _copiers()


def test_rows_in_statements_of_many_rows_keep_every_value_and_their_order(
    sessions: sessionmaker[Session],
) -> None:
    """More rows than one statement takes, and a remainder: each row's values, None,
    Chinese text, JSON and instants, come back as given, in the ids' order."""
    count = 2 * ROWS_PER_INSERT + 37
    runs = [
        {
            "id": 1 + i,
            "source": f"回放{i}",
            "started_at": AT.replace(minute=i % 60),
            "finished_at": AT,
            "ok": i % 2 == 0,
            "points": i,
            "variables": [f"气温{i}", "降水"][: i % 3],
            "first_time": None if i % 3 else AT,
            "error": None if i % 5 else f"第{i}次：超时",
        }
        for i in range(count)
    ]
    with sessions.begin() as session, held.batch(session):
        held.insert_rows(session, ForecastRun, runs)
    with sessions() as session:
        stored = session.scalars(select(ForecastRun).order_by(ForecastRun.id)).all()
        assert [
            {
                "id": r.id,
                "source": r.source,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "ok": r.ok,
                "points": r.points,
                "variables": r.variables,
                "first_time": r.first_time,
                "error": r.error,
            }
            for r in stored
        ] == runs


def test_a_failed_copy_in_a_savepoint_is_raised_as_the_database_error_it_is(
    sessions: sessionmaker[Session],
) -> None:
    """Raised to the next statement (or send) as SQLAlchemy raises a failed insert,
    whichever thread met it; the savepoint's own rollback then runs."""
    with (
        pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"),
        sessions.begin() as session,
        held.batch(session),
        session.begin_nested(),
    ):
        held.insert_rows(session, ForecastRun, _runs(1, 10))
        held.insert_rows(session, ForecastRun, _runs(5, 10))  # ids 5–14: 5–10 taken
        held.insert_rows(session, ForecastRun, _runs(100, 1))
        session.execute(text("SELECT 1"))
    assert not _copiers()
    with sessions() as session:
        assert _count(session) == 0


def test_a_sqlite_taking_fewer_parameters_gets_shorter_inserts(tmp_path: Path) -> None:
    """SQLite before 3.32 takes 999 parameters a statement: the rows still all go in."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")

    @event.listens_for(engine, "connect")
    def as_before_3_32(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    Base.metadata.create_all(engine)

    count = ROWS_PER_INSERT + 1  # 501 rows of five columns: 2,505 parameters in one
    with sessionmaker(engine).begin() as session, held.batch(session):
        held.insert_rows(session, ForecastRun, _runs(1, count))
    with sessionmaker(engine)() as session:
        assert _count(session) == count
        assert session.get_one(ForecastRun, count).source == f"回放{count - 1}"
    engine.dispose()
