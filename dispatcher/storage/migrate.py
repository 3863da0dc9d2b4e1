"""Schema migrations: Alembic, configured in code — no alembic.ini to lose.

The scripts live in the top-level `migrations` package and are found through
its `__file__`, so this works from any working directory and from an installed
wheel. The database URL travels in `Config.attributes`; `migrations/env.py`
opens it with `make_engine`, so SQLite gets the same pragmas as the daemon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import make_url

import migrations
from dispatcher.storage.db import make_engine
from dispatcher.storage.models import Base

SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at `url`, without any ini file."""
    config = Config()
    # Main options go through ConfigParser interpolation, where '%' is special:
    # a password such as 'p%40ss' must be written 'p%%40ss' to survive.
    config.set_main_option("script_location", _escape(str(SCRIPT_LOCATION)))
    config.set_main_option("sqlalchemy.url", _escape(url))
    # env.py reads this first: the URL exactly as given, no interpolation involved
    config.attributes["url"] = url
    return config


# taken around migrations so several instances starting at once on one
# PostgreSQL database migrate one after the other instead of racing
MIGRATION_LOCK_KEY = 0x59554A4D4947  # "YUJMIG"


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` forward to `revision` (default: the newest)."""
    config = alembic_config(url)
    if make_url(url).get_backend_name() != "postgresql":
        command.upgrade(config, revision)  # SQLite: one instance, BEGIN IMMEDIATE
        return
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at `url` back to `revision` (default: no tables at all)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at `url` is at, or None if it was never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def check_models_match(url: str) -> list[Any]:
    """Differences between the migrated database at `url` and the models.

    Runs Alembic's autogenerate comparison (types included) against
    `Base.metadata`; an empty list means the migrations build exactly the
    schema the models describe. Each item is an Alembic diff tuple such as
    `("add_column", None, "alerts", Column(...))`.
    """
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs: list[Any] = compare_metadata(context, Base.metadata)
            return diffs
    finally:
        engine.dispose()


def _escape(value: str) -> str:
    return value.replace("%", "%%")


__all__ = [
    "SCRIPT_LOCATION",
    "alembic_config",
    "check_models_match",
    "current",
    "downgrade",
    "upgrade",
]
