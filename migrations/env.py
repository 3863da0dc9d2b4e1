"""Alembic environment, driven from `dispatcher.storage.migrate` (there is no alembic.ini).

Where the database is, in order of preference:
  1. `config.attributes["connection"]`: an open Connection, used as is;
  2. `config.attributes["url"]`: a URL, exactly as given (see `alembic_config`);
  3. the `sqlalchemy.url` main option;
  4. the daemon's settings (YUJING_DATABASE_URL or .env).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, event, pool

from dispatcher.storage.db import make_engine
from dispatcher.storage.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from dispatcher.settings import Settings  # only when nothing else says where

    return Settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Keep generated migrations free of imports from the application: a
    # migration must build the same schema even after the models move on.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        # SQLite cannot ALTER most things; batch mode copies the table instead
        render_as_batch=sqlite,
        # make_engine has SQLAlchemy, not pysqlite, issue BEGIN, so DDL on
        # SQLite is transactional: run the whole upgrade as one transaction
        transactional_ddl=True,
    )


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    # Foreign keys were off while tables were copied (see below); check the
    # result now, inside the transaction, so a broken reference rolls it back.
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left rows with broken foreign keys: {problems[:10]}")


def _foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (`alembic upgrade --sql`)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against a live database."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = make_engine(_url(), poolclass=pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        # Batch mode drops and recreates tables; with foreign keys on, dropping
        # a referenced table fails or cascades. SQLite's documented recipe is
        # to turn them off (only possible outside a transaction, hence at
        # connect, after make_engine's pragmas) and run foreign_key_check after.
        event.listen(engine, "connect", _foreign_keys_off)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _check_sqlite_foreign_keys(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
