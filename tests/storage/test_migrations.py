"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from dispatcher.storage import migrate
from dispatcher.storage.db import make_engine
from dispatcher.storage.models import Base

# the newest revision in migrations/versions
HEAD = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_builds_exactly_the_models(db_url: str) -> None:
    # given an empty database
    # when it is migrated to the newest revision
    migrate.upgrade(db_url)
    # then Alembic's autogenerate comparison finds nothing to change
    assert migrate.check_models_match(db_url) == []


def test_upgrade_creates_every_model_table(db_url: str) -> None:
    migrate.upgrade(db_url)

    assert _tables(db_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_a_schema_that_drifted_from_the_models_is_reported(db_url: str) -> None:
    # given a migrated database that someone altered by hand
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_notifications_status_due"))
    engine.dispose()
    # when compared with the models
    diffs = migrate.check_models_match(db_url)
    # then the missing index is named
    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_notifications_status_due")]


def test_current_is_none_before_any_migration_and_the_revision_after(db_url: str) -> None:
    assert migrate.current(db_url) is None

    migrate.upgrade(db_url)

    assert migrate.current(db_url) == HEAD


def test_downgrade_to_base_removes_every_table(db_url: str) -> None:
    # given a migrated database
    migrate.upgrade(db_url)
    # when downgraded all the way
    migrate.downgrade(db_url)
    # then only Alembic's (empty) bookkeeping table is left
    assert _tables(db_url) == {"alembic_version"}
    assert migrate.current(db_url) is None


def test_upgrade_after_a_full_downgrade_rebuilds_the_schema(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.downgrade(db_url)

    migrate.upgrade(db_url)

    assert migrate.current(db_url) == HEAD
    assert migrate.check_models_match(db_url) == []


def test_migrations_are_found_from_any_working_directory(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a working directory with no migrations (and no alembic.ini) in it
    monkeypatch.chdir(tmp_path)
    # when migrating
    migrate.upgrade(db_url)
    # then the scripts were found through the package
    assert migrate.current(db_url) == HEAD


def test_a_percent_sign_in_the_url_survives_the_alembic_config() -> None:
    # given a password with URL-escaped characters ('%40' is '@')
    url = "postgresql+psycopg://yujing:p%40ss%25word@db.example/yujing"
    # when it goes into an Alembic configuration
    config = migrate.alembic_config(url)
    # then both ways env.py may read it give it back unchanged
    assert config.attributes["url"] == url
    assert config.get_main_option("sqlalchemy.url") == url
