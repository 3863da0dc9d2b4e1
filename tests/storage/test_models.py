"""Column types and constraints behave the same on SQLite and PostgreSQL.

These run on the migrated schema, since that, not `create_all`, is what a
deployed database has.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from dispatcher.storage import migrate
from dispatcher.storage.db import make_engine
from dispatcher.storage.models import Notification, Person

BEIJING = timezone(timedelta(hours=8))


def _engine(url: str) -> Engine:
    if url.startswith("postgresql"):
        # a server whose session time zone is not UTC, as a Chinese install may be
        return make_engine(url, connect_args={"options": "-c TimeZone=Asia/Shanghai"})
    return make_engine(url)


@pytest.fixture
def migrated(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    migrate.upgrade(db_url)
    engine = _engine(db_url)
    yield engine
    engine.dispose()


def _person(updated_at: datetime, person_id: str = "p1") -> Person:
    return Person(id=person_id, name="张三", phone="+8613800000000", updated_at=updated_at)


def _notification(key: str) -> Notification:
    now = datetime(2025, 1, 15, tzinfo=UTC)
    return Notification(
        idempotency_key=key,
        transition="fire",
        address="+8613800000000",
        channel="console",
        body="寒潮蓝色预警",
        next_attempt_at=now,
        created_at=now,
    )


def test_an_aware_time_comes_back_as_the_same_instant_in_utc(migrated: Engine) -> None:
    # given 08:00 in Beijing
    with Session(migrated) as session, session.begin():
        session.add(_person(datetime(2025, 1, 15, 8, 0, tzinfo=BEIJING)))
    # when read back in a fresh session
    with Session(migrated) as session:
        stored = session.scalars(select(Person.updated_at)).one()
    # then it is 00:00 UTC, labelled UTC
    assert stored == datetime(2025, 1, 15, 0, 0, tzinfo=UTC)
    assert stored.tzinfo is UTC


def test_microseconds_survive_the_round_trip(migrated: Engine) -> None:
    moment = datetime(2025, 1, 15, 0, 0, 0, 123456, tzinfo=UTC)
    with Session(migrated) as session, session.begin():
        session.add(_person(moment))

    with Session(migrated) as session:
        assert session.scalars(select(Person.updated_at)).one() == moment


def test_times_compare_as_instants_in_queries(migrated: Engine) -> None:
    # given two people updated an hour apart, one written in Beijing time
    with Session(migrated) as session, session.begin():
        session.add(_person(datetime(2025, 1, 15, 8, 30, tzinfo=BEIJING), "early"))  # 00:30Z
        session.add(_person(datetime(2025, 1, 15, 1, 30, tzinfo=UTC), "late"))
    # when filtering with a UTC bound between them
    with Session(migrated) as session:
        bound = datetime(2025, 1, 15, 1, 0, tzinfo=UTC)
        found = session.scalars(select(Person.id).where(Person.updated_at < bound)).all()
    # then only the earlier instant matches
    assert found == ["early"]


def test_a_naive_time_is_refused(migrated: Engine) -> None:
    with Session(migrated) as session:
        session.add(_person(datetime(2025, 1, 15, 8, 0)))

        with pytest.raises(StatementError, match="naive datetime") as raised:
            session.flush()

    assert isinstance(raised.value.orig, ValueError)


def test_the_outbox_refuses_a_second_row_with_the_same_idempotency_key(
    migrated: Engine,
) -> None:
    # given a queued notification
    with Session(migrated) as session, session.begin():
        session.add(_notification("alert:1:fire:p1:sms"))
    # when the same message is queued again
    with Session(migrated) as session:
        session.add(_notification("alert:1:fire:p1:sms"))
        with pytest.raises(IntegrityError):
            session.flush()
    # then there is still exactly one row
    with Session(migrated) as session:
        assert session.scalars(select(Notification.idempotency_key)).all() == [
            "alert:1:fire:p1:sms"
        ]


def test_constraint_names_follow_the_naming_convention(migrated: Engine) -> None:
    schema = inspect(migrated)

    unique = {c["name"] for c in schema.get_unique_constraints("notifications")}
    foreign = {c["name"] for c in schema.get_foreign_keys("notifications")}
    primary = schema.get_pk_constraint("notifications")["name"]

    assert "uq_notifications_idempotency_key" in unique
    assert foreign == {
        "fk_notifications_alert_id_alerts",
        "fk_notifications_person_id_people",
        "fk_notifications_failover_of_id_notifications",
    }
    assert primary == "pk_notifications"


def test_sqlite_stores_naive_utc_text(tmp_path: Path) -> None:
    # given a SQLite database (the on-disk form is SQLite's own business)
    url = f"sqlite:///{tmp_path / 'yujing.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    # when a Beijing time is stored
    with Session(engine) as session, session.begin():
        session.add(_person(datetime(2025, 1, 15, 8, 0, tzinfo=BEIJING)))
    # then the text is UTC without an offset, so text order is time order
    with engine.connect() as connection:
        raw = connection.execute(text("SELECT updated_at FROM people")).scalar_one()
    engine.dispose()
    assert raw == "2025-01-15 00:00:00.000000"
