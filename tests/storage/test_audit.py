"""The audit log is an append-only hash chain: tampering of any kind is reported."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, bindparam, delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.audit import (
    GENESIS_HASH,
    Appended,
    Entry,
    chain_hash,
    event_hash,
    record,
    record_many,
    verify,
)
from dispatcher.storage.models import AuditEvent

T0 = datetime(2025, 1, 15, 0, 0, tzinfo=UTC)


def _append(sessions: sessionmaker[Session], count: int, actor: str = "system") -> list[Appended]:
    """`count` events, each committed in its own transaction, as the daemon writes them."""
    events = []
    for i in range(count):
        with sessions() as session, session.begin():
            events.append(
                record(
                    session,
                    at=T0 + timedelta(minutes=i),
                    actor=actor,
                    action="alert.fired",
                    subject=f"alert:{i}",
                    data={"level": "blue", "zone": "LL-001", "n": i},
                )
            )
    return events


def _problems(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return verify(session)


# --- building the chain


def test_the_first_event_follows_the_genesis_hash(sessions: sessionmaker[Session]) -> None:
    [first] = _append(sessions, 1)

    assert first.prev_hash == GENESIS_HASH == "0" * 64


def test_each_event_carries_the_hash_of_the_one_before(sessions: sessionmaker[Session]) -> None:
    events = _append(sessions, 3)

    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def test_the_hash_is_sha256_of_prev_hash_and_canonical_json(
    sessions: sessionmaker[Session],
) -> None:
    # given an event recorded at 08:00 Beijing time, with Chinese text in it
    with sessions() as session, session.begin():
        event = record(
            session,
            at=datetime(2025, 1, 15, 8, 0, tzinfo=timezone(timedelta(hours=8))),
            actor="p-007",
            action="alert.acknowledged",
            subject="alert:12",
            data={"via": "sms", "reply": "收到"},
        )
    # then anyone can recompute its hash from the documented recipe
    canonical = (
        '{"action":"alert.acknowledged","actor":"p-007",'
        '"at":"2025-01-15T00:00:00.000000+00:00",'
        '"data":{"reply":"收到","via":"sms"},"subject":"alert:12"}'
    )
    expected = hashlib.sha256((GENESIS_HASH + canonical).encode("utf-8")).hexdigest()
    assert event.hash == expected


def test_every_instant_actor_and_action_is_hashed_as_the_recipe_says() -> None:
    # given events at one instant spelled in two time zones, at the next microsecond,
    # by two actors, of two actions (the hash spells each head once and reuses it)
    instants = [T0, T0.astimezone(timezone(timedelta(hours=8))), T0 + timedelta(microseconds=1)]
    for at in instants:
        for actor in ("system", 'p-"007"'):
            for action in ("alert.new", "escalation.step"):
                # then each hash is the documented recipe's, whatever came before it
                content = json.dumps(
                    {
                        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                        "actor": actor,
                        "action": action,
                        "subject": "alert:1",
                        "data": {"n": 1},
                    },
                    sort_keys=True,
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                expected = hashlib.sha256((GENESIS_HASH + content).encode()).hexdigest()
                hashed = chain_hash(
                    GENESIS_HASH,
                    at=at,
                    actor=actor,
                    action=action,
                    subject="alert:1",
                    data={"n": 1},
                )
                assert hashed == expected, (at, actor, action)


def test_data_is_stored_as_its_json_round_trip(sessions: sessionmaker[Session]) -> None:
    # given data with a tuple, which JSON turns into a list
    with sessions() as session, session.begin():
        event = record(session, at=T0, actor="system", action="drill", data={"ids": (1, 2)})
    # then the event holds what the database gives back, and the chain verifies
    with sessions() as session:
        assert session.get_one(AuditEvent, event.id).data == {"ids": [1, 2]}
    assert _problems(sessions) == []


def test_record_does_not_commit(sessions: sessionmaker[Session]) -> None:
    # given an event recorded in a transaction that then rolls back
    with sessions() as session:
        record(session, at=T0, actor="system", action="alert.fired")
        session.rollback()
    # then it never happened
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_two_events_in_one_transaction_chain_onto_each_other(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session, session.begin():
        first = record(session, at=T0, actor="system", action="alert.fired")
        second = record(session, at=T0, actor="system", action="notification.queued")

    assert second.prev_hash == first.hash
    assert _problems(sessions) == []


def test_many_events_appended_at_once_chain_in_order(sessions: sessionmaker[Session]) -> None:
    _append(sessions, 2)
    entries = [
        Entry(
            T0 + timedelta(seconds=i), "outbox", "notification.sent", f"notification:{i}", {"i": i}
        )
        for i in range(300)
    ]
    with sessions() as session, session.begin():
        record_many(session, entries)
        after = record(session, at=T0, actor="system", action="after")

    with sessions() as session:
        stored = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [e.subject for e in stored[2:-1]] == [f"notification:{i}" for i in range(300)]
        assert [e.data for e in stored[2:-1]] == [{"i": i} for i in range(300)]
        assert stored[2].prev_hash == stored[1].hash
        assert after.prev_hash == stored[-2].hash
        assert (after.id, after.hash) == (stored[-1].id, stored[-1].hash)
        assert verify(session) == []


def test_appending_nothing_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        record_many(session, [])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_a_naive_time_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="timezone-aware"):
        record(session, at=datetime(2025, 1, 15, 8, 0), actor="system", action="x")


def test_data_that_is_not_json_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="plain JSON"):
        record(session, at=T0, actor="system", action="x", data={"when": T0})


# --- verifying it


def test_an_untouched_chain_verifies(sessions: sessionmaker[Session]) -> None:
    _append(sessions, 5)

    assert _problems(sessions) == []


def test_an_empty_log_verifies(sessions: sessionmaker[Session]) -> None:
    assert _problems(sessions) == []


def test_a_row_edited_with_raw_sql_is_named(sessions: sessionmaker[Session]) -> None:
    # given a chain of three events
    events = _append(sessions, 3)
    # when someone downgrades the second one's level behind the application's back
    with sessions() as session, session.begin():
        session.execute(
            text("UPDATE audit_events SET data = :data WHERE id = :id").bindparams(
                bindparam("data", type_=JSON)
            ),
            {"data": {"level": "none", "zone": "LL-001", "n": 1}, "id": events[1].id},
        )
    # then verification names that row, and only that row
    assert _problems(sessions) == [
        f"event {events[1].id}: hash does not match its content (edited?)"
    ]


def test_an_edit_with_a_recomputed_hash_is_caught_at_the_next_row(
    sessions: sessionmaker[Session],
) -> None:
    # given a forger who edits the second event and recomputes its hash
    events = _append(sessions, 3)
    with sessions() as session, session.begin():
        forged = session.get_one(AuditEvent, events[1].id)
        forged.actor = "someone-else"
        forged.hash = event_hash(forged)
    # then the third event no longer follows it
    assert _problems(sessions) == [
        f"event {events[2].id}: prev_hash does not match event {events[1].id} "
        "(deleted or inserted row?)"
    ]


def test_a_deleted_middle_row_is_detected(sessions: sessionmaker[Session]) -> None:
    # given a chain of three events
    events = _append(sessions, 3)
    # when the middle one is deleted
    with sessions() as session, session.begin():
        session.execute(delete(AuditEvent).where(AuditEvent.id == events[1].id))
    # then the row after the gap no longer follows its predecessor
    assert _problems(sessions) == [
        f"event {events[2].id}: prev_hash does not match event {events[0].id} "
        "(deleted or inserted row?)"
    ]


def test_a_deleted_first_row_is_detected(sessions: sessionmaker[Session]) -> None:
    events = _append(sessions, 2)

    with sessions() as session, session.begin():
        session.execute(delete(AuditEvent).where(AuditEvent.id == events[0].id))

    assert _problems(sessions) == [
        f"event {events[1].id}: prev_hash does not match the start of the log "
        "(deleted or inserted row?)"
    ]


def test_an_inserted_forged_row_is_detected(sessions: sessionmaker[Session]) -> None:
    # given a chain of three events
    events = _append(sessions, 3)
    # when a forger inserts a self-consistent row claiming to follow the first event
    fake = AuditEvent(
        at=T0 + timedelta(seconds=30),
        actor="p-007",
        action="alert.acknowledged",
        subject="alert:0",
        data={"via": "console"},
        prev_hash=events[0].hash,
    )
    fake.hash = event_hash(fake)
    with sessions() as session, session.begin():
        forged_id = session.execute(
            insert(AuditEvent)
            .values(
                at=fake.at,
                actor=fake.actor,
                action=fake.action,
                subject=fake.subject,
                data=fake.data,
                prev_hash=fake.prev_hash,
                hash=fake.hash,
            )
            .returning(AuditEvent.id)
        ).scalar_one()
    # then it does not follow the row before it
    assert _problems(sessions) == [
        f"event {forged_id}: prev_hash does not match event {events[2].id} "
        "(deleted or inserted row?)"
    ]


def test_a_changed_time_is_detected(sessions: sessionmaker[Session]) -> None:
    events = _append(sessions, 2)

    with sessions() as session, session.begin():
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == events[0].id)
            .values(at=T0 - timedelta(hours=1))
        )

    assert _problems(sessions) == [
        f"event {events[0].id}: hash does not match its content (edited?)"
    ]


# --- concurrency


def test_a_second_appender_waits_for_the_first_to_commit(
    sessions: sessionmaker[Session],
) -> None:
    # given a transaction that has recorded an event but not committed
    with sessions() as first_session, ThreadPoolExecutor(max_workers=1) as pool:
        first_session.begin()
        first = record(first_session, at=T0, actor="system", action="alert.fired")

        # when another transaction records an event at the same time
        def second_appender() -> Appended:
            with sessions() as session, session.begin():
                return record(session, at=T0, actor="system", action="alert.escalated")

        second = pool.submit(second_appender)
        # then it waits (on SQLite for the write lock, on PostgreSQL for the advisory lock)
        done, _ = wait([second], timeout=0.5)
        assert not done, "the second appender read the tail while the first was still open"
        # and, once the first commits, chains onto the first's event
        first_session.commit()
        assert second.result(timeout=30).prev_hash == first.hash
    assert _problems(sessions) == []


def test_concurrent_appenders_never_fork_the_chain(sessions: sessionmaker[Session]) -> None:
    # given four workers appending 25 events each, all at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda w: _append(sessions, 25, f"worker-{w}"), range(4)))
    # then every event has a distinct predecessor and the chain verifies
    prev_hashes = [e.prev_hash for batch in batches for e in batch]
    assert len(set(prev_hashes)) == 100
    assert _problems(sessions) == []
