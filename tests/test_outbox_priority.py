"""Priority when a rate limit binds: red before orange before yellow before blue.

Every test runs on SQLite and PostgreSQL (the `sessions` fixture) against a
real database; the only double is the channel (`ScriptedChannel`, recording
what it was asked to send). Alerts are inserted directly (zone alerts, events
and system alerts all carry `level`), as are their outbox rows.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from channels.base import ChannelLimits
from dispatcher.outbox import DeliveryWorker, enqueue
from dispatcher.settings import Settings
from dispatcher.states import AlertKind, AlertState, NotificationStatus, priority_of
from dispatcher.storage.models import Alert, Notification
from tests.support import Clock, MonotonicClock, ScriptedChannel

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
_codes = (f"P{n:03d}" for n in itertools.count())
_keys = itertools.count()


def add_alert(sessions: sessionmaker[Session], level: str, kind: str = AlertKind.EVENT) -> int:
    """An open alert at `level` (an event by default; no zone needed)."""
    with sessions.begin() as session:
        alert = Alert(
            code=next(_codes),
            kind=kind,
            zone_id=None,
            hazard="cold_wave" if kind != AlertKind.SYSTEM else "feed_down",
            rule_id="coldwave" if kind != AlertKind.SYSTEM else "system",
            title="寒潮",
            level=level,
            state=AlertState.FIRING,
            opened_at=NOW,
            updated_at=NOW,
        )
        session.add(alert)
        session.flush()
        return alert.id


def add_rows(
    sessions: sessionmaker[Session],
    alert_id: int | None,
    count: int = 1,
    *,
    due: datetime = NOW,
    channel: str = "sms",
) -> list[int]:
    """`count` pending rows about `alert_id` (None: a row without an alert), due at `due`,
    with the priority `outbox.rows.enqueue` gives them (from the alert's level)."""
    with sessions.begin() as session:
        alert = session.get(Alert, alert_id) if alert_id is not None else None
        rows = [
            Notification(
                idempotency_key=f"{alert_id}:new:prio{next(_keys)}:{channel}",
                alert_id=alert_id,
                transition="new",
                person_id=None,
                recipient_name="值班员",
                address="+8613800000001",
                channel=channel,
                body="【柳林县自然资源局】寒潮预警",
                next_attempt_at=due,
                created_at=due,
                priority=priority_of(alert.level if alert is not None else None),
            )
            for _ in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def status(sessions: sessionmaker[Session], ids: list[int]) -> list[str]:
    with sessions() as session:
        return [session.get_one(Notification, i).status for i in ids]


def worker_for(
    sessions: sessionmaker[Session],
    channel: ScriptedChannel,
    clock: Callable[[], datetime],
    **options: Any,
) -> DeliveryWorker:
    settings: dict[str, Any] = {
        "concurrency": 2,
        "max_attempts": 3,
        "lease_seconds": 60.0,
        "poll_seconds": 0.05,
        "jitter_source": lambda: 0.5,
    }
    return DeliveryWorker(sessions, {channel.name: channel}, clock, **(settings | options))


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# --- the order of one claim ----------------------------------------------------------


def test_a_claim_takes_red_then_orange_then_yellow_then_blue(
    sessions: sessionmaker[Session],
) -> None:
    # given rows enqueued least urgent first: blue, yellow, a row without an
    # alert, an orange system alert (the feed is down), orange, red
    blue = add_rows(sessions, add_alert(sessions, "blue"), due=NOW - timedelta(seconds=50))
    yellow = add_rows(sessions, add_alert(sessions, "yellow"), due=NOW - timedelta(seconds=40))
    no_alert = add_rows(sessions, None, due=NOW - timedelta(seconds=30))
    system = add_rows(
        sessions,
        add_alert(sessions, "orange", AlertKind.SYSTEM),
        due=NOW - timedelta(seconds=20),
    )
    orange = add_rows(
        sessions, add_alert(sessions, "orange", AlertKind.HAZARD), due=NOW - timedelta(seconds=10)
    )
    red = add_rows(sessions, add_alert(sessions, "red"))
    worker = worker_for(sessions, ScriptedChannel(), Clock(NOW))

    got = worker.claim(10)

    # then red goes first; orange rows (the system alert and the row without an
    # alert rank as orange) in the order they fell due; then yellow, then blue
    assert [c.id for c in got] == red + no_alert + system + orange + yellow + blue


def test_a_red_row_takes_the_first_free_slot_of_its_channel_in_the_same_or_a_later_claim(
    sessions: sessionmaker[Session],
) -> None:
    # given 50 yellow rows, then a red one, on a channel that takes one a second
    yellow = add_rows(sessions, add_alert(sessions, "yellow"), 50, due=NOW - timedelta(minutes=1))
    first_red = add_rows(sessions, add_alert(sessions, "red"))
    ticks = MonotonicClock()
    worker = worker_for(
        sessions, ScriptedChannel(limits=ChannelLimits(per_second=1)), Clock(NOW), monotonic=ticks
    )

    # when it claims: the slots within 2 s (0, 1, 2 s ahead)
    first = worker.claim(10)
    # then the red row has the first slot, the oldest yellow rows the next
    assert [(c.id, c.send_at) for c in first] == [
        (first_red[0], 100.0),
        (yellow[0], 101.0),
        (yellow[1], 102.0),
    ]

    # when another red row is committed after that claim, and the next claim comes
    second_red = add_rows(sessions, add_alert(sessions, "red"))
    ticks.advance(2.0)
    second = worker.claim(10)
    # then it takes the first slot nobody holds, ahead of every yellow row still waiting
    assert [(c.id, c.send_at) for c in second] == [
        (second_red[0], 103.0),
        (yellow[2], 104.0),
    ]
    assert status(sessions, yellow).count("pending") == 47


# --- through the real worker ---------------------------------------------------------


async def test_a_red_row_after_50_yellow_goes_out_before_the_yellow_rows_still_waiting(
    sessions: sessionmaker[Session],
) -> None:
    # given a running worker sending 50 yellow rows on a channel that takes 20 a second
    channel = ScriptedChannel(limits=ChannelLimits(per_second=20))
    yellow = add_rows(sessions, add_alert(sessions, "yellow"), 50)
    clock = Clock(NOW)
    worker = worker_for(sessions, channel, clock)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: len(channel.sent) >= 5)

        # when a red row is committed a second later (enqueued and due after them all)
        clock.advance(1)
        [red] = add_rows(sessions, add_alert(sessions, "red"), due=clock())
        gone_before = len(channel.sent)
        worker.wake()

        await eventually(lambda: len(channel.sent) == 51)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)

    # then it went out next, but for the few yellow rows already claimed ahead
    # (two senders, claiming one round ahead: at most four), not after the ~45
    # still waiting
    order = [m.notification_id or 0 for m in channel.sent]
    assert gone_before < 45
    assert order.index(red) <= gone_before + 2 * 2
    # and every yellow row still went out, once each
    assert sorted(i for i in order if i != red) == yellow
    assert set(status(sessions, [*yellow, red])) == {NotificationStatus.SENT}


# --- no starvation -------------------------------------------------------------------


@pytest.mark.parametrize(("age", "first"), [(301.0, "blue"), (299.0, "red")])
def test_a_row_due_for_longer_than_the_aging_bound_goes_ahead_of_a_fresh_red_one(
    sessions: sessionmaker[Session], age: float, first: str
) -> None:
    # given a blue row due `age` seconds ago and a red row due now, aging bound 300 s
    blue = add_rows(sessions, add_alert(sessions, "blue"), due=NOW - timedelta(seconds=age))
    red = add_rows(sessions, add_alert(sessions, "red"))
    worker = worker_for(sessions, ScriptedChannel(), Clock(NOW), priority_aging_seconds=300.0)

    got = worker.claim(1)

    assert [c.id for c in got] == (blue if first == "blue" else red)


def test_a_yellow_row_behind_a_steady_stream_of_red_goes_once_it_has_aged(
    sessions: sessionmaker[Session],
) -> None:
    # given a yellow row due now, and every minute a fresh red row that takes
    # the channel's only slot of that claim
    [yellow] = add_rows(sessions, add_alert(sessions, "yellow"))
    red_alert = add_alert(sessions, "red")
    clock = Clock(NOW)
    # (leases outlast the test: no red row comes back as an expired lease)
    worker = worker_for(sessions, ScriptedChannel(), clock, lease_seconds=3600.0)
    claimed: list[int] = []
    for _ in range(7):
        add_rows(sessions, red_alert, due=clock())
        claimed += [c.id for c in worker.claim(1)]
        clock.advance(60)

    # then red goes first for five minutes; after that the yellow row counts as red
    # and, due longest, goes before the newest red row
    assert claimed.index(yellow) == 6
    assert status(sessions, [yellow]) == [NotificationStatus.SENDING]


def test_the_aging_bound_comes_from_the_settings(sessions: sessionmaker[Session]) -> None:
    blue = add_rows(sessions, add_alert(sessions, "blue"), due=NOW - timedelta(seconds=61))
    add_rows(sessions, add_alert(sessions, "red"))
    settings = Settings(_env_file=None, outbox_priority_aging_seconds=60)

    worker = DeliveryWorker.from_settings(
        settings, sessions=sessions, channels={}, clock=Clock(NOW)
    )

    assert [c.id for c in worker.claim(1)] == blue


# --- the stored priority and its index -------------------------------------------------


@pytest.mark.parametrize(
    ("level", "kind", "priority"),
    [
        ("red", AlertKind.HAZARD, 0),
        ("orange", AlertKind.SYSTEM, 1),  # a system alert at its level
        ("yellow", AlertKind.EVENT, 2),
        ("blue", AlertKind.EVENT, 3),
        ("purple", AlertKind.EVENT, 1),  # a level of another name counts as orange
        (None, AlertKind.EVENT, 1),  # no alert (a failover of a row without one)
    ],
)
def test_enqueue_stores_the_priority_of_the_alerts_level(
    sessions: sessionmaker[Session], level: str | None, kind: str, priority: int
) -> None:
    alert_id = add_alert(sessions, level, kind) if level is not None else None
    with sessions.begin() as session:
        alert = session.get(Alert, alert_id) if alert_id is not None else None
        row = enqueue(
            session, alert, "new", _Group(), "sms", "寒潮预警", NOW, audience="group:duty"
        )
        session.flush()
        row_id = row.id

    with sessions() as session:
        assert session.get_one(Notification, row_id).priority == priority


class _Group:
    person_id = None
    name = "值班室"
    address = "+8613800000009"


def test_a_claim_in_a_backlog_of_thousands_reads_the_claim_index_in_order_without_a_sort(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # given 3,000 due yellow SMS rows and 150 red ones committed after them, fresh,
    # and two red rows for a robot that takes one message a minute
    yellow_alert, red_alert = add_alert(sessions, "yellow"), add_alert(sessions, "red")
    robot = add_rows(sessions, red_alert, 2, due=NOW - timedelta(seconds=90), channel="robot")
    with sessions.begin() as session:
        session.execute(
            insert(Notification),
            [
                {
                    "idempotency_key": f"backlog:{i}",
                    "alert_id": red_alert if i >= 3000 else yellow_alert,
                    "transition": "new",
                    "address": f"+86170{i:08d}",
                    "channel": "sms",
                    "body": "寒潮预警",
                    "status": NotificationStatus.PENDING,
                    "next_attempt_at": NOW - timedelta(seconds=60 - i / 100),
                    "created_at": NOW,
                    "priority": priority_of("red" if i >= 3000 else "yellow"),
                }
                for i in range(3150)
            ],
        )
        if engine.dialect.name == "postgresql":
            session.execute(text("ANALYZE notifications"))
    statements: list[tuple[str, Any]] = []

    def remember(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY notifications.priority" in statement and "LIMIT" in statement:
            statements.append((statement, parameters))

    channels = {
        "sms": ScriptedChannel(),
        "robot": ScriptedChannel(name="robot", limits=ChannelLimits(per_minute=1)),
    }
    worker = DeliveryWorker(
        sessions, channels, Clock(NOW), concurrency=2, poll_seconds=0.05, lease_seconds=60.0
    )
    event.listen(engine, "before_cursor_execute", remember)
    try:
        # when a worker claims 64 of them (the robot's second row is passed over,
        # and the claim reads on past the robot's rows)
        got = worker.claim(64)
    finally:
        event.remove(engine, "before_cursor_execute", remember)

    # then it took the robot's first row and the 63 oldest red SMS, before any
    # earlier yellow row
    with sessions() as session:
        claimed = [session.get_one(Notification, c.id) for c in got]
    assert claimed[0].id == robot[0] and robot[1] not in {row.id for row in claimed}
    assert len(claimed) == 64 and {row.alert_id for row in claimed} == {red_alert}
    # and every query that chose them (the one in IN (…); the outer one reads
    # the rows chosen) reads ix_notifications_claim in its order, with or without
    # the robot left out
    assert len(statements) == 2
    for statement, parameters in statements:
        chosen = statement[statement.index("IN (") + 4 : statement.rindex(")")]
        assert plan_reads_index_in_order(engine, chosen, parameters), chosen


def plan_reads_index_in_order(engine: Engine, statement: str, parameters: Any) -> bool:
    """Whether the database plans `statement` on ix_notifications_claim with no sort."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = [
                row[-1]
                for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            ]
            return any("ix_notifications_claim" in step for step in plan) and not any(
                "TEMP B-TREE" in step for step in plan
            )
        lines = [row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)]
        return any("ix_notifications_claim" in line for line in lines) and not any(
            "Sort" in line for line in lines
        )
