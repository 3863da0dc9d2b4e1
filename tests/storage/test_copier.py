"""A batch's COPYs sent by a second thread (PostgreSQL): seen by the next statement,
their failure the batch's, nothing left behind; the same batch on SQLite in line."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.storage import held
from dispatcher.storage.copier import Copier
from dispatcher.storage.models import AuditEvent, ForecastRun

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


def test_a_batch_sends_its_copies_from_a_second_thread_on_postgresql_alone(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, held.batch(session):
        held.insert_rows(session, ForecastRun, _runs(1, 10))
        postgres = session.get_bind().dialect.name == "postgresql"
        assert len(_copiers()) == (1 if postgres else 0)
        assert isinstance(session.info.get("yujing.held.copier"), Copier) is postgres
    assert not _copiers()
