"""Engines and sessions: SQLite (WAL) by default, PostgreSQL for production.

The database is used through short synchronous transactions from the event
loop; each one is a few milliseconds, so this keeps the code plain without
starving the loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("yujing")


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


# how often the WAL is copied into the database file (`checkpoint_in_background`)
_CHECKPOINT_EVERY: Final = 1.0

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


def checkpoint_in_background(
    engine: Engine, *, every: float = _CHECKPOINT_EVERY
) -> Checkpointer | None:
    """For a SQLite file: the engine's commits no longer copy the WAL into the
    database file themselves; a `Checkpointer` thread does it (None otherwise).

    SQLite checkpoints in the commit that fills the WAL past 1,000 pages, so a
    province's cold-front poll waited half of its 1.0 s commit for its half a
    million rows to be copied once more. In a thread of its own, on its own
    connection, SQLite copies them on the other core: the driver lets go of
    the interpreter lock meanwhile, and a PASSIVE checkpoint waits for no one.
    The engine's pooled connections are closed (the next ones open without
    checkpoints); `stop` the thread before disposing of the engine."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    event.listen(engine, "connect", _no_checkpoint_at_commit)
    engine.dispose()  # connections opened before now checkpoint at commit
    return Checkpointer(database, every=every)


def _no_checkpoint_at_commit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer:
    """A thread checkpointing a SQLite database's WAL every `every` seconds.

    A failure is logged once, and once the recovery: meanwhile the WAL grows
    (SQLite stays correct; the file is larger and reads slow down), and the
    thread keeps trying on a new connection."""

    def __init__(self, database: str, *, every: float = _CHECKPOINT_EVERY) -> None:
        self._database = database
        self._every = every
        self._stop = threading.Event()
        self._failing = False
        self.checkpoints = 0  # done so far (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="yujing-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.wait(self._every)
                connection = self._checkpoint(connection)
                if stopping:
                    return
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection | None) -> sqlite3.Connection | None:
        try:
            if connection is None:
                connection = sqlite3.connect(self._database, timeout=30, isolation_level=None)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning(
                    "SQLite checkpoint of %s failed (%s); retrying every %g s, the WAL "
                    "file grows meanwhile",
                    self._database,
                    exc,
                    self._every,
                )
                self._failing = True
            if connection is not None:
                connection.close()
            return None
        if self._failing:
            log.info("SQLite checkpoints of %s work again", self._database)
            self._failing = False
        self.checkpoints += 1
        return connection
