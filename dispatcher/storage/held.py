"""Rows held back to be inserted together: a poll's outbox rows and escalation timers.

A poll that opens thousands of alerts would otherwise build an ORM object
for each of their messages and timers and have the unit of work insert them
one by one. Inside `batch(session)`, `hold` keeps a row's column values
instead, and `write` inserts everything held with one statement per table,
in the order held (so ids come out as one insert at a time would give them).
A reader of those tables inside the batch calls `write` first. Nothing is
held outside a batch: `hold` then says so, and the caller adds an object as
usual.

`insert_rows` is the one bulk insert underneath (the audit chain's events and
the directory sync use it too): the driver's own `executemany` on SQLite,
`COPY … FROM STDIN` on PostgreSQL, each value processed by its column's type
as SQLAlchemy would, a column at a time. Inside a batch the rows are sent by
a second thread while the batch goes on (`dispatcher.storage.copier`; on
SQLite as INSERTs of hundreds of rows each); any statement on the session's
connection waits for them first, and the batch's end waits for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from dispatcher.storage.copier import (
    ROWS_PER_INSERT,
    Copier,
    Inserts,
    copy_data,
)
from dispatcher.storage.models import Base, UtcDateTime

__all__ = ["batch", "hold", "insert_rows", "insert_tuples", "next_ids", "write"]

# session.info key: model → the column values held for it, in order
_HELD = "yujing.held.rows"
# session.info key: the batch's `Copier`, once it has written something
_COPIER = "yujing.held.copier"


@contextmanager
def batch(session: Session) -> Iterator[None]:
    """Within, `hold` keeps rows in memory; they are inserted at the end (not when the
    block raises: the caller's transaction rolls back anyway). Batches do not
    nest: an inner one joins the outer."""
    if _HELD in session.info:
        yield
        return
    session.info[_HELD] = {}
    try:
        yield
        write(session)
        copier: Copier | None = session.info.get(_COPIER)
        if copier is not None:
            copier.drain()  # every part answered: an error is the batch's
    finally:
        session.info.pop(_HELD, None)
        copier = session.info.pop(_COPIER, None)
        if copier is not None:
            copier.close()


def hold(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """Hold one row of `model` for the open batch; False when none is open."""
    held: dict[type[Base], list[dict[str, Any]]] | None = session.info.get(_HELD)
    if held is None:
        return False
    held.setdefault(model, []).append(values)
    return True


def write(session: Session) -> None:
    """Insert the rows held so far (after what the session has pending: their
    alerts); nothing outside a batch."""
    held: dict[type[Base], list[dict[str, Any]]] | None = session.info.get(_HELD)
    if not held:
        return
    session.flush()
    for model, rows in list(held.items()):
        if rows:
            insert_rows(session, model, rows)
            rows.clear()


def insert_rows(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    *,
    json_text: Collection[str] = (),
) -> None:
    """Insert `rows` of `model`'s table in their order, in the session's transaction:
    one executemany on the driver's cursor on SQLite, one COPY on PostgreSQL (ids
    ascend in the rows' order on both). Nothing is read back.

    The statement is compiled once per table, columns and database, and each
    value passes its column type's own bind processing, as `session.execute`
    would do it, without SQLAlchemy's per-row bookkeeping (most of a province's
    commit was that). The JSON columns named in `json_text` are given as JSON
    text already (an audit event's canonical JSON) and stored as they are,
    not serialised again. Every row has the first row's keys.
    """
    if not rows:
        return
    names = tuple(rows[0])
    columns = {name: [row[name] for row in rows] for name in names}
    _insert(session, Base.metadata.tables[model.__tablename__], columns, len(rows), json_text)


def insert_tuples(
    session: Session, table: Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """`insert_rows` for rows given as tuples of the columns `names` (a province's
    directory: a quarter of a million of them, no dict each)."""
    if not rows:
        return
    columns = dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))
    _insert(session, table, columns, len(rows), ())


def _insert(
    session: Session,
    table: Table,
    columns: dict[str, list[Any]],
    count: int,
    json_text: Collection[str],
) -> None:
    connection = session.connection()
    plan = _plan(table, tuple(columns), frozenset(json_text), connection.dialect)
    batched = _HELD in session.info
    if connection.dialect.name == "postgresql":
        # COPY: the server takes a province's rows a third faster than as many
        # INSERTs, in the same transaction (the driver connection is the session's)
        driver = connection.connection.driver_connection
        assert driver is not None
        rows = plan.parameters(columns, count, positional=True)
        if batched:
            # inside a batch, sent by a second thread while this one goes on
            # preparing the next rows (the server works on its own core meanwhile)
            _copier(session, connection).send(plan.copy_sql, copy_data(driver, rows))
            return
        with driver.cursor() as cursor, cursor.copy(plan.copy_sql) as copy:
            for values in rows:
                copy.write_row(values)
        return
    if batched:
        # SQLite runs each statement of hundreds of rows without the interpreter
        # lock, on the other core, while this thread prepares the next rows
        copier = _copier(session, connection)
        copier.send_inserts(plan.sql, plan.inserts(columns, count, copier.parameters))
        return
    connection.exec_driver_sql(plan.sql, plan.parameters(columns, count))


def _copier(session: Session, connection: Connection) -> Copier:
    copier: Copier | None = session.info.get(_COPIER)
    if copier is None:
        copier = session.info[_COPIER] = Copier(connection)
    return copier


def next_ids(session: Session, model: type[Base], count: int) -> list[int]:
    """The ids the next `count` rows of `model`'s table get, ascending, taken now: the
    sequence's next values on PostgreSQL; on SQLite, where the caller's transaction
    is the only writer (BEGIN IMMEDIATE), those after the largest id, as SQLite
    itself gives them (rows are never deleted). Insert the rows with them."""
    if count <= 0:
        return []
    table = Base.metadata.tables[model.__tablename__]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        taken = connection.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return sorted(id_ for (id_,) in taken)
    last = connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(last + 1, last + 1 + count))


@dataclass(frozen=True)
class _Plan:
    """A compiled INSERT and how rows' values become its driver parameters."""

    sql: str
    copy_sql: str  # the same columns by COPY … FROM STDIN (PostgreSQL)
    names: tuple[str, ...]  # parameter names in the statement's order
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: dict[str, Callable[[], Any]]  # columns the rows leave to a Python-side default
    positional: bool

    def parameters(
        self, given: dict[str, list[Any]], count: int, *, positional: bool = False
    ) -> list[Any]:
        """Each row's driver parameters from the columns' values."""
        columns = self._columns(given, count)
        if self.positional or positional:
            return list(zip(*columns, strict=True))
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def inserts(self, given: dict[str, list[Any]], count: int, parameters: int) -> Inserts:
        """The rows as SQLite INSERTs of up to `ROWS_PER_INSERT` rows and `parameters`
        values each, their values in one flat list, row after row (positional)."""
        assert self.positional
        columns = self._columns(given, count)
        width = len(columns)
        per = max(1, min(ROWS_PER_INSERT, parameters // width))
        inserts: Inserts = []
        for start in range(0, count, per):
            rows = min(per, count - start)
            values: list[Any] = [None] * (rows * width)
            for position, column in enumerate(columns):
                values[position::width] = column[start : start + rows]
            inserts.append((_rows_sql(self.sql, rows), values))
        return inserts

    def _columns(self, given: dict[str, list[Any]], count: int) -> list[list[Any]]:
        """The driver's values, column by column in the statement's order: a value
        repeated down a column (a poll's one `now`, its channel) is processed once."""
        columns = []
        for name, process in zip(self.names, self.processors, strict=True):
            values = given.get(name)
            if values is None:
                make = self.defaults[name]
                values = [make() for _ in range(count)]
            columns.append(values if process is None else _processed(process, values))
        return columns


@lru_cache(maxsize=256)
def _rows_sql(sql: str, rows: int) -> str:
    """The one-row INSERT `sql` (… VALUES (?, …)) of `rows` rows."""
    head, values, one = sql.partition(" VALUES ")
    assert values and one.startswith("(") and one.endswith(")"), sql
    return f"{head} VALUES {', '.join([one] * rows)}"


def _processed(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """`values` through a column's bind processor, each distinct value once (None
    too: SQLAlchemy passes it to the processor, and JSON makes it 'null')."""
    done: dict[Any, Any] = {}
    out: list[Any] = []
    last, last_result = object(), None
    for value in values:
        if value is last:  # the object of the row before (a poll's `now`, None): no lookup
            out.append(last_result)
            continue
        last = value
        # 0.0 == -0.0: not one key; a dict (a JSON column's: a timer's plan) cannot be one
        if type(value) is float or type(value) is dict:
            last_result = process(value)
            out.append(last_result)
            continue
        # the type too: True and 1 are equal keys, and may be processed differently
        key = (type(value), tuple(value) if type(value) is list else value)
        try:
            last_result = done[key]
        except KeyError:
            done[key] = last_result = process(value)
        except TypeError:  # unhashable otherwise (a list of dicts): processed on its own
            last_result = process(value)
        out.append(last_result)
    return out


@lru_cache(maxsize=64)
def _plan(
    table: Table, keys: tuple[str, ...], json_text: frozenset[str], dialect: Dialect
) -> _Plan:
    # for_executemany: no RETURNING of the id PostgreSQL would otherwise be asked for
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.params)
    defaults: dict[str, Callable[[], Any]] = {}
    processors: list[Callable[[Any], Any] | None] = []
    for name in names:
        column = table.c[name]
        if name not in keys:
            # a column the rows leave out that has a scalar or callable default
            default = column.default
            if default is None or not (default.is_scalar or default.is_callable):
                raise ValueError(f"{table.name}.{name}: no value and no Python-side default")
            arg: Any = default.arg  # type: ignore[attr-defined]
            defaults[name] = partial(_same, arg) if default.is_scalar else partial(arg, None)
        if name in json_text:
            processors.append(None)  # JSON text already: stored as given
            continue
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if dialect.name == "postgresql" and isinstance(column.type, UtcDateTime):
            # COPY's text of a timestamp, spelled once per distinct instant (a poll's
            # rows share a few): the driver's dumper costs as much for each of ~1M
            process = partial(_iso_text, process)
        processors.append(process)
    quote = dialect.identifier_preparer.quote
    copy_sql = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    return _Plan(compiled.string, copy_sql, names, tuple(processors), defaults, compiled.positional)


def _same(value: Any) -> Any:
    return value


def _iso_text(process: Callable[[Any], Any] | None, value: Any) -> str | None:
    """A timestamp bound for PostgreSQL as its ISO text with the offset (UTC)."""
    bound = process(value) if process is not None else value
    return None if bound is None else bound.isoformat()
