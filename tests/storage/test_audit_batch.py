"""A batch of audit events (a poll's commit) is written at its end as one `record` each
would have written them: same order, same chain, and nothing when the batch fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.storage.models import AuditEvent

T0 = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)


def _events(session: Session) -> list[tuple[str, str, dict[str, object]]]:
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    return [(e.action, e.subject, e.data) for e in rows]


def _append_three(session: Session) -> None:
    for i in range(3):
        audit.append(
            session,
            at=T0 + timedelta(seconds=i),
            actor="system",
            action="alert.new",
            subject=f"alert:{i}",
            data={"n": i, "evidence": (1.5, 2)},
        )


def test_a_batch_writes_the_same_chain_as_one_record_each(
    sessions: sessionmaker[Session],
) -> None:
    # given the same three events, appended one at a time and in a batch
    with sessions.begin() as session:
        _append_three(session)
        one_by_one = [(e.prev_hash, e.hash) for e in session.scalars(select(AuditEvent))]
        session.execute(delete(AuditEvent))
    with sessions.begin() as session, audit.batch(session):
        _append_three(session)
        # then nothing is written before the batch ends …
        assert session.scalar(select(func.count(AuditEvent.id))) == 0

    # … and at its end the rows and hashes are exactly those of one record each
    with sessions() as session:
        batched = [(e.prev_hash, e.hash) for e in session.scalars(select(AuditEvent))]
        assert batched == one_by_one
        assert [d for _, _, d in _events(session)] == [
            {"n": i, "evidence": [1.5, 2]} for i in range(3)
        ]
        assert audit.verify(session) == []


def test_a_reader_inside_a_batch_sees_its_events_after_write_pending(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, audit.batch(session):
        _append_three(session)
        audit.write_pending(session)
        assert session.scalar(select(func.count(AuditEvent.id))) == 3
        audit.append(session, at=T0, actor="system", action="alert.calming", subject="alert:9")

    with sessions() as session:
        assert [s for _, s, _ in _events(session)] == ["alert:0", "alert:1", "alert:2", "alert:9"]
        assert audit.verify(session) == []


def test_a_record_inside_a_batch_comes_after_the_events_held(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, audit.batch(session):
        _append_three(session)
        recorded = audit.record(session, at=T0, actor="console", action="alert.acknowledged")
        audit.append(session, at=T0, actor="system", action="alert.resolved", subject="alert:0")

    with sessions() as session:
        actions = [a for a, _, _ in _events(session)]
        assert actions == ["alert.new"] * 3 + ["alert.acknowledged", "alert.resolved"]
        assert (
            recorded.id == session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()[3]
        )
        assert audit.verify(session) == []


def test_a_failed_batch_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session, audit.batch(session):
        _append_three(session)
        raise RuntimeError("the poll failed")

    with sessions() as session:
        assert session.scalar(select(func.count(AuditEvent.id))) == 0


def test_bad_data_is_refused_where_it_is_appended_not_at_the_end(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, audit.batch(session):
        with pytest.raises(ValueError, match="plain JSON"):
            audit.append(session, at=T0, actor="system", action="x", data={"t": {1, 2}})
        with pytest.raises(ValueError, match="timezone-aware"):
            audit.append(session, at=T0.replace(tzinfo=None), actor="system", action="x")
