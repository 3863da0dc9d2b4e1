"""Engines and sessions: SQLite (WAL) by default, PostgreSQL for production.

The database is used through short synchronous transactions from the event
loop; each one is a few milliseconds, so this keeps the code plain without
starving the loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, create the file's folder and turn on WAL and FKs.

    JSON columns are written with their text as it reads (`json_text`)."""
    kwargs.setdefault("json_serializer", json_text)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # let SQLAlchemy, not pysqlite, open transactions, so BEGIN IMMEDIATE works
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def json_text(value: Any) -> str:
    """A JSON column's stored text: Chinese kept as it is, not spelled as \\u escapes.

    A province's escalation timers hold every warning text in four media; spelled
    in escapes they were twice the bytes to write, fsync and (PostgreSQL) parse.
    A module-level function: the driver warns of closures as serialisers."""
    return _JSON.encode(value)


# one encoder for all (json.dumps with an option builds one per call); it keeps no state
_JSON = json.JSONEncoder(ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on disk before the message it records is sent. NORMAL
    # (the usual WAL choice) can lose the last commits to a power cut, and with
    # them the audit events of messages that did go out.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: two writers queue instead of
    # failing later with "database is locked" on upgrade from a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
