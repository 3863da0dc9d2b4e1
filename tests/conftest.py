"""Shared fixtures: a fresh database on SQLite and, when available, PostgreSQL;
the example county, parsed once per session, and its directory in a database.

`db_url` is parametrised over both databases. PostgreSQL comes from
YUJING_TEST_POSTGRES_URL (`.ci/run` starts a server and sets it); each test
gets its own freshly created database. Under CI a missing PostgreSQL is an
error, not a skip.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.county import County
from dispatcher.directory import sync_directory
from dispatcher.feeds.points import assign_points
from dispatcher.storage.db import make_engine, session_factory
from dispatcher.storage.models import Base
from tests.support import OPENED, example_county

POSTGRES_URL = os.environ.get("YUJING_TEST_POSTGRES_URL")


def _postgres_database() -> Iterator[str]:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail(
                "YUJING_TEST_POSTGRES_URL is not set under CI; .ci/run must start PostgreSQL"
            )
        pytest.skip("PostgreSQL not configured: set YUJING_TEST_POSTGRES_URL (see .ci/run)")
    name = f"yujing_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    """Drop a test database; an autovacuum worker still in it only delays the drop."""
    for attempt in range(20):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError:
            # FORCE may not terminate a superuser's autovacuum worker without
            # pg_signal_backend; it finishes within moments
            time.sleep(0.25 * (attempt + 1))
    warnings.warn(f"could not drop test database {name}", stacklevel=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an empty database (no tables), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'yujing.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database whose tables are created from the models."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions on the `engine` fixture's database."""
    return session_factory(engine)


@pytest.fixture(scope="session")
def county() -> County:
    """The example county (examples/liulin); a test module may shadow the name."""
    return example_county()


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The example county's zones and people in the database."""
    # not the `county` fixture: modules that shadow that name mean something else by it
    county = example_county()
    _, point_of = assign_points([(z.id, z.latitude, z.longitude) for z in county.zones], 0.02)
    with sessions.begin() as session:
        sync_directory(session, county, point_of, OPENED)
    return sessions
