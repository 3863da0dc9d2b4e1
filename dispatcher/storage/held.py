"""Rows held back to be inserted together: a poll's outbox rows and escalation timers.

A poll that opens thousands of alerts would otherwise build an ORM object
for each of their messages and timers and have the unit of work insert them
one by one. Inside `batch(session)`, `hold` keeps a row's column values
instead, and `write` inserts everything held with one multi-row statement
per table, in the order held (so ids come out as one insert at a time would
give them). A reader of those tables inside the batch calls `write` first.
Nothing is held outside a batch: `hold` then says so, and the caller adds
an object as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from dispatcher.storage.models import Base

__all__ = ["batch", "hold", "insert_rows", "write"]

# session.info key: model → the column values held for it, in order
_HELD = "yujing.held.rows"


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
    finally:
        session.info.pop(_HELD, None)


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


def insert_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert `rows` of `model`'s table in their order, by the table: one executemany,
    without the ORM's bookkeeping for each row (psycopg pipelines it; ids ascend in
    the rows' order on both databases). Nothing is read back."""
    session.execute(insert(Base.metadata.tables[model.__tablename__]), rows)
