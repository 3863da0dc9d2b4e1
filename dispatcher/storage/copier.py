"""A batch's inserts sent by a second thread while the poll goes on preparing rows.

A province's cold front writes half a million rows. The database's own work
on them (PostgreSQL's server; SQLite's library, in this process) could run on
the machine's other core, but an insert made in line keeps the poll waiting
until it is done, and the database idle while the poll prepares the next
rows: a third of the poll was that wait. Inside a held-rows batch
(`dispatcher.storage.held`), each table part's rows are put in the form the
database takes in bulk, here, in this thread, and handed to a `Copier`: a
thread that sends them one after the other, in the order given, on the
session's own connection and so in its transaction.

- PostgreSQL: `COPY … FROM STDIN` with the data in COPY's text format.
- SQLite: INSERT statements of up to `ROWS_PER_INSERT` rows each. The driver
  lets go of the interpreter lock while SQLite runs a statement, so a
  statement of hundreds of rows runs beside the poll's Python; row by row (an
  `executemany`) the thread would wait for the lock at every row, behind a
  poll that holds it (measured: 0.9 s of inserts took 467 s).

Nothing else may be said on the connection meanwhile: before any statement
SQLAlchemy executes on it, the copier is drained, so that statement sees every
row handed over before it (and the connection is free). A part that fails
stops the ones after it; its error is raised at the next drain (the next
statement, or the batch's end), and the caller's transaction rolls back as if
the insert had failed in line. `close` drops what was not sent yet and waits
for the part under way, so no insert outlives its batch.
"""

from __future__ import annotations

import io
import queue
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
from psycopg import Connection as DriverConnection
from psycopg.copy import Copy, FileWriter
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

__all__ = ["ROWS_PER_INSERT", "Copier", "Inserts", "copy_data"]

# parts handed over and not sent yet: a slow database holds the poll back at
# this many (a poll writes four tables every 2,000 alerts) instead of memory
# growing without bound
_QUEUED: Final = 16

# rows per SQLite INSERT: long enough that the thread seldom needs the lock
# (binding a statement's values takes it); fewer where the library takes fewer
# parameters per statement (`Copier.parameters`: 32,766 since SQLite 3.32, 999 before)
ROWS_PER_INSERT: Final = 500

# a SQLite part: its INSERT statements, each with its rows' values in one flat list
Inserts = list[tuple[str, list[Any]]]


def copy_data(driver: DriverConnection[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """`rows` in COPY's text format, each value adapted as the driver adapts it
    in `cursor.copy(...).write_row` (the way psycopg documents for writing
    COPY data elsewhere than to the server: `Copy` with a `FileWriter`)."""
    buffer = io.BytesIO()
    with driver.cursor() as cursor, Copy(cursor, writer=FileWriter(buffer)) as copy:
        for row in rows:
            copy.write_row(row)
    return buffer.getvalue()


class Copier:
    """A thread sending a batch's parts, in order, on one connection that nothing
    else uses until `drain` (every statement on the connection drains it first)."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, DriverConnection | sqlite3.Connection)
        self._connection = connection
        self._driver = driver
        self._jobs: queue.Queue[tuple[str, bytes | Inserts] | None] = queue.Queue(maxsize=_QUEUED)
        self._error: BaseException | None = None
        self._reported = False  # the error raised in the poll's thread already
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="yujing-copy", daemon=True)
        self._thread.start()
        event.listen(connection, "before_cursor_execute", self._before_statement)

    def send(self, sql: str, data: bytes) -> None:
        """Hand over one COPY (`sql` … FROM STDIN, with `data` in its text format)."""
        assert isinstance(self._driver, DriverConnection)
        self._raise()
        self._jobs.put((sql, data))

    @property
    def parameters(self) -> int:
        """The most parameters a statement may have on this SQLite connection."""
        assert isinstance(self._driver, sqlite3.Connection)
        return self._driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def send_inserts(self, sql: str, inserts: Inserts) -> None:
        """Hand over one SQLite part: `inserts`, of the rows of the one-row `sql`
        (named when the part fails)."""
        assert isinstance(self._driver, sqlite3.Connection)
        self._raise()
        self._jobs.put((sql, inserts))

    def drain(self) -> None:
        """Wait until every part handed over was sent and answered; raise the first
        that failed (again at each drain: a batch never ends well after it)."""
        self._jobs.join()
        self._raise()

    def close(self) -> None:
        """Stop: parts not begun are dropped (a failed batch rolls back), the one
        under way is waited for, and the connection is the caller's again."""
        self._stopping = True
        self._jobs.put(None)
        self._thread.join()
        event.remove(self._connection, "before_cursor_execute", self._before_statement)

    def _raise(self) -> None:
        if self._error is not None:
            self._reported = True
            raise self._error

    def _before_statement(self, *_: Any) -> None:
        self._jobs.join()
        if not self._reported:
            # once: the statements that roll the failure back (to a savepoint) must run
            self._raise()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None and not self._stopping:
                    self._write(*job)
            except BaseException as exc:  # raised in the poll's thread at the next drain
                self._error = _as_sqlalchemy(exc, job)
            finally:
                self._jobs.task_done()

    def _write(self, sql: str, data: bytes | Inserts) -> None:
        if isinstance(data, bytes):
            assert isinstance(self._driver, DriverConnection)
            with self._driver.cursor() as cursor, cursor.copy(sql) as copy:
                copy.write(data)
            return
        assert isinstance(self._driver, sqlite3.Connection)
        inserter = self._driver.cursor()
        try:
            for statement, values in data:
                inserter.execute(statement, values)
        finally:
            inserter.close()


def _as_sqlalchemy(exc: BaseException, job: tuple[str, Any] | None) -> BaseException:
    """A driver's error as SQLAlchemy raises it for a statement (IntegrityError for a
    duplicate key …), whichever thread met it: callers catch those."""
    if job is not None:
        for driver_error in (psycopg.Error, sqlite3.Error):
            if isinstance(exc, driver_error):
                return DBAPIError.instance(job[0], None, exc, driver_error)
    return exc
