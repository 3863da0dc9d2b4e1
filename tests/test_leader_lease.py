"""The leader lease: taken, renewed, taken over when it lapses; leader-only writes fenced.

Two `Leadership`s named "a" and "b" stand for two instances on one PostgreSQL
database (the lease is timed by the database's clock, so these tests wait real,
short leases out). On SQLite there is one instance, which always leads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.leader import Leadership, NotLeader, install_fence, keep_lease, leader_work
from dispatcher.storage.models import AuditEvent, LeaderLease

LEASE = 0.6  # seconds: short, so the tests wait it out

on_postgres = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def write_as_leader(sessions: sessionmaker[Session], leadership: Leadership, what: str) -> None:
    """One leader-only transaction (as a scheduler job commits): an audit row."""
    with leader_work(leadership), sessions.begin() as session:
        session.add(
            AuditEvent(
                at=datetime.now(UTC),
                actor="scheduler",
                action=what,
                subject="test",
                data={},
                prev_hash="0" * 64,
                hash=what.ljust(64, "0"),
            )
        )


def written(sessions: sessionmaker[Session], what: str) -> int:
    with sessions() as session:
        return (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == what)
            )
            or 0
        )


def wait_out(leadership: Leadership) -> None:
    """Sleep until the lease `leadership` last read has expired."""
    assert leadership.lease is not None
    time.sleep(max(0.0, leadership.lease.left()) + 0.05)


@on_postgres
def test_one_instance_takes_the_lease_and_the_other_waits(engine: Engine) -> None:
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")

    assert a.refresh() is True
    assert b.refresh() is False
    # the standby knows who leads, with which epoch, and checks again just after expiry
    assert b.lease is not None and (b.lease.holder, b.lease.epoch) == ("a", 1)
    assert 0 < b.next_check(every=5.0) <= LEASE + 0.1
    assert a.next_check(every=5.0) == 2.5  # the holder renews every half poll interval


@on_postgres
def test_a_renewed_lease_stays_with_its_holder_past_its_first_expiry(engine: Engine) -> None:
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")
    assert a.refresh()

    for _ in range(4):  # 4 × LEASE / 2: twice the first lease
        time.sleep(LEASE / 2)
        assert a.refresh() is True
        assert b.refresh() is False

    assert a.epoch == 1


@on_postgres
def test_a_lease_not_renewed_is_taken_over_with_the_next_epoch(engine: Engine) -> None:
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")
    assert a.refresh()
    assert not b.refresh()

    # when a stops renewing (frozen) and its lease runs out
    wait_out(b)

    # then b takes over with a new epoch, and a finds it gone when it resumes
    assert b.refresh() is True
    assert b.epoch == 2
    assert a.refresh() is False
    assert a.held is False
    assert a.identity()["holder"] == "b" and a.identity()["epoch"] == 2
    with Session(engine) as session:
        lease = session.get_one(LeaderLease, "scheduler")
        assert (lease.holder, lease.epoch) == ("b", 2)


@on_postgres
def test_a_released_lease_is_taken_over_at_once(engine: Engine) -> None:
    a = Leadership(engine, lease_seconds=60.0, instance="a")
    b = Leadership(engine, lease_seconds=60.0, instance="b")
    assert a.refresh()
    assert not b.refresh()

    a.release()  # a clean shutdown

    assert b.refresh() is True


@on_postgres
def test_a_write_of_the_current_epoch_commits(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    install_fence(sessions)
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    assert a.refresh()

    write_as_leader(sessions, a, "poll.one")

    assert written(sessions, "poll.one") == 1


@on_postgres
def test_an_old_epochs_commit_is_refused_and_its_holder_steps_down(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    install_fence(sessions)
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")
    lost: list[str] = []
    a.on_lost = lambda: lost.append("a")
    assert a.refresh()
    assert not b.refresh()
    wait_out(b)
    assert b.refresh()  # a was frozen; b leads with epoch 2

    # when a, resumed, commits what it was doing before it noticed
    with pytest.raises(NotLeader, match=r"epoch 1.*b holds epoch 2"):
        write_as_leader(sessions, a, "poll.stale")

    # then nothing of it is written, a steps down, and b's writes go through
    assert written(sessions, "poll.stale") == 0
    assert a.held is False and lost == ["a"]
    write_as_leader(sessions, b, "poll.new")
    assert written(sessions, "poll.new") == 1


@on_postgres
def test_writes_outside_the_leaders_work_are_not_fenced(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # delivery and the web server run on every instance, leader or not
    install_fence(sessions)
    Leadership(engine, lease_seconds=LEASE, instance="a").refresh()

    with sessions.begin() as session:
        session.add(
            AuditEvent(
                at=datetime.now(UTC),
                actor="outbox",
                action="notification.sent",
                subject="notification:1",
                data={},
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )

    assert written(sessions, "notification.sent") == 1


@on_postgres
def test_a_leader_frozen_inside_a_fenced_transaction_does_not_block_the_takeover(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    install_fence(sessions)
    a = Leadership(engine, lease_seconds=LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")
    assert a.refresh()
    # given a leader frozen between its fence check and its commit: the lease
    # row's share lock is held, and would hold up any takeover
    frozen = sessions()
    with leader_work(a):
        frozen.begin()
        a.fence(frozen)
    try:
        # then PostgreSQL ends the idle transaction after the lease, and b takes over
        deadline = time.monotonic() + 4 * LEASE + 2.0
        while not b.refresh():
            assert time.monotonic() < deadline, "the frozen transaction blocked the takeover"
            time.sleep(0.1)
        assert b.epoch == 2
    finally:
        # its connection was ended by the server: closing it reports that
        with contextlib.suppress(DBAPIError):
            frozen.close()


@contextlib.contextmanager
def keeper(leadership: Leadership) -> Iterator[None]:
    """The daemon's lease keeper thread for `leadership`, renewing during its jobs."""
    stop = threading.Event()
    thread = threading.Thread(target=keep_lease, args=(leadership, LEASE / 4, stop))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@on_postgres
def test_a_leader_busy_in_a_long_job_keeps_the_lease_and_commits(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    install_fence(sessions)
    # twice the usual lease: the keeper renews every LEASE / 4, and a machine busy
    # with other tests may hold its thread back for longer than one short lease
    lease = 2 * LEASE
    a = Leadership(engine, lease_seconds=lease, instance="a")
    b = Leadership(engine, lease_seconds=lease, instance="b")
    assert a.refresh()
    # given a poll that holds a's event loop (no renewal from the loop) for
    # several leases
    with keeper(a), leader_work(a):
        deadline = time.monotonic() + 4 * lease
        while time.monotonic() < deadline:
            # then the standby never takes over meanwhile
            assert not b.refresh(), "a busy leader lost its lease"
            time.sleep(lease / 3)
        # and the long job's write at its end commits with a's epoch
        write_as_leader(sessions, a, "poll.long")
    assert written(sessions, "poll.long") == 1
    assert a.held and a.epoch == 1


@on_postgres
def test_a_job_stuck_longer_than_job_seconds_loses_the_lease(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    install_fence(sessions)
    a = Leadership(engine, lease_seconds=LEASE, job_seconds=2 * LEASE, instance="a")
    b = Leadership(engine, lease_seconds=LEASE, instance="b")
    assert a.refresh()
    # given a job that never ends (a wedged loop inside a leader job)
    with keeper(a), leader_work(a):
        started = time.monotonic()
        while not b.refresh():
            # then the keeper stops renewing after job_seconds, and b takes over
            assert time.monotonic() - started < 2 * LEASE + 2 * LEASE + 2.0, "never taken over"
            time.sleep(0.05)
        assert time.monotonic() - started >= 2 * LEASE  # not before job_seconds
    assert b.epoch == 2
    with pytest.raises(NotLeader):
        write_as_leader(sessions, a, "poll.wedged")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_on_sqlite_the_only_instance_always_leads_and_nothing_is_fenced(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    a = Leadership(engine, lease_seconds=LEASE, instance="a")

    assert a.refresh() is True and a.held is True
    write_as_leader(sessions, a, "poll.sqlite")

    assert written(sessions, "poll.sqlite") == 1
