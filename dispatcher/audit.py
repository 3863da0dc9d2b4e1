"""The audit log: append-only and hash-chained, so tampering shows.

Every event carries `prev_hash` (the `hash` of the event before it, or 64 zeros
for the first) and its own `hash`:

    hash = sha256_hex(prev_hash + canonical_json({at, actor, action, subject, data}))

where canonical JSON has sorted keys, no spaces, non-ASCII kept as is (UTF-8),
and `at` is ISO 8601 in UTC with microseconds (`2025-01-15T00:00:00.000000+00:00`).
The row id is deliberately not hashed: it is assigned by the database.

Editing a row breaks its own hash; deleting or inserting a row breaks the
`prev_hash` link of the row after it. What a chain alone cannot show is a
forger who rewrites the tail and recomputes every hash after it (or truncates
the tail): to catch that, copy the latest hash somewhere else now and then
(the daily report) and compare.

`record` never commits: the event is written in the caller's transaction, with
the state change it describes, so both happen or neither does.

A writer of many events in one transaction (a poll's commit) opens `batch`:
`append` then keeps each event in memory, and the batch writes them all at
its end — the chain's tail read once, every hash computed in one pass, the
rows inserted together — in the same transaction and the same order as one
`record` each would have. Outside a batch `append` is `record`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from dispatcher.storage.held import insert_rows
from dispatcher.storage.models import AuditEvent

GENESIS_HASH = "0" * 64

# Key of the PostgreSQL advisory lock that serialises appends to the chain.
# Fixed and distinct from any other advisory lock in the project (the ASCII
# of "YJAUDIT\0", which fits a signed 64-bit integer).
AUDIT_CHAIN_LOCK_KEY = int.from_bytes(b"YJAUDIT\x00", "big")

# session.info key of the events an open `batch` holds, in order
_PENDING = "yujing.audit.pending"
# session.info key of the chain's last hash as this session's open batch left it
_TAIL = "yujing.audit.tail"


@dataclass(frozen=True)
class Entry:
    """One event to append (see `record` for the fields)."""

    at: datetime
    actor: str
    action: str
    subject: str = ""
    data: Mapping[str, Any] | None = None


class Appended(NamedTuple):
    """What `record` wrote: the new event's id and its place in the chain."""

    id: int
    prev_hash: str
    hash: str


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str = "",
    data: Mapping[str, Any] | None = None,
) -> Appended:
    """Append one event to the audit chain in the session's transaction, without committing.

    `at` must be timezone-aware. `data` must be JSON-serialisable with string
    keys; it is stored as its JSON round-trip, so what is hashed is exactly
    what is read back. The new row is inserted at once, so that a second
    `record` in the same transaction chains onto it.

    Concurrent appenders queue instead of forking the chain: on PostgreSQL this
    takes a transaction-scoped advisory lock, held until the caller commits or
    rolls back; on SQLite the engine's BEGIN IMMEDIATE already admits one
    writer at a time. Either way the lock lasts until the caller's commit, so
    record the event last, just before committing. On PostgreSQL the
    transaction must run at READ COMMITTED (the default), so the tail is read
    after the lock is granted, not from an older snapshot.
    """
    write_pending(session)  # a batch's events come first: they happened first
    (row,) = _chained(session, [Entry(at, actor, action, subject, data)])
    row["data"] = json.loads(row["data"])  # the ORM's JSON column serialises it again
    id_ = session.scalar(insert(AuditEvent).returning(AuditEvent.id), row)
    assert id_ is not None
    return Appended(id_, row["prev_hash"], row["hash"])


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str = "",
    data: Mapping[str, Any] | None = None,
) -> None:
    """Append one event as `record` does; inside a `batch`, in memory until the batch ends.

    The event's data is checked (timezone, plain JSON) at once either way, so
    a mistake is raised where it was made.
    """
    pending: list[_Prepared] | None = session.info.get(_PENDING)
    if pending is None:
        record(session, at=at, actor=actor, action=action, subject=subject, data=data)
        return
    pending.append(_prepared(at, actor, action, subject, data))


@contextmanager
def batch(session: Session) -> Iterator[None]:
    """Within, `append` holds events in memory; they are written, chained, at the end.

    Nothing is written when the block raises (the caller's transaction rolls
    back anyway). A reader of the audit log inside the block calls
    `write_pending` first; `record` does so itself. Batches do not nest: an
    inner one joins the outer.
    """
    if _PENDING in session.info:
        yield
        return
    session.info[_PENDING] = []
    # the chain locked and its tail read now, before the block's rows are on their
    # way to PostgreSQL (`held.batch`): chaining them later waits for nothing
    session.info[_TAIL] = _tail(session)
    try:
        yield
        write_pending(session)
    finally:
        session.info.pop(_PENDING, None)
        session.info.pop(_TAIL, None)


def write_pending(session: Session) -> None:
    """Write the events an open `batch` holds now (for a reader of the log); else nothing."""
    pending: list[_Prepared] | None = session.info.get(_PENDING)
    if pending:
        rows = _chain(session, list(pending))
        pending.clear()
        _insert(session, rows)


def record_many(session: Session, entries: Sequence[Entry]) -> None:
    """Append several events, in order, as `record` appends one.

    The chain's tail is read once and the rows are inserted together, in chain
    order (so ids ascend with the chain), without reading their ids back: a
    worker recording a batch of outcomes writes one event per message without
    a round trip or an ORM object each.
    """
    write_pending(session)
    rows = _chained(session, entries)
    if rows:
        _insert(session, rows)


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    # the table, not the model: many rows a statement, ids in chain order; the data
    # column is given as its canonical JSON, stored as hashed without a second dumps
    insert_rows(session, AuditEvent, rows, json_text=("data",))


def _chained(session: Session, entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The rows that append `entries` to the chain: locked, hashed, ready to insert."""
    return _chain(session, [_prepared(e.at, e.actor, e.action, e.subject, e.data) for e in entries])


class _Prepared(NamedTuple):
    """An event's stored columns before its place in the chain, and its data's canonical JSON."""

    row: dict[str, Any]
    data_json: str


def _chain(session: Session, prepared: list[_Prepared]) -> list[dict[str, Any]]:
    """The rows of `prepared` events given their place at the chain's end: locked, hashed."""
    rows = [p.row for p in prepared]
    if not rows:
        return rows
    prev_hash: str | None = session.info.get(_TAIL)
    if prev_hash is None:
        prev_hash = _tail(session)
    else:
        session.flush()  # whatever the caller changed goes first, as with session.add
    for row, data_json in prepared:
        digest = _hash(prev_hash, row["at"], row["actor"], row["action"], row["subject"], data_json)
        row["prev_hash"], row["hash"] = prev_hash, digest
        prev_hash = digest
    if _PENDING in session.info:
        # inside a batch the chain lock is held and every event goes through here:
        # the tail is known, and its next part is chained without asking (its
        # rows may still be on their way to PostgreSQL, `held.batch`)
        session.info[_TAIL] = prev_hash
    return rows


def _tail(session: Session) -> str:
    """The chain's last hash, read under the chain's lock (taken here if not yet)."""
    serialise_with_audit(session)
    session.flush()  # whatever the caller changed goes first, as with session.add
    return (
        session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
        or GENESIS_HASH
    )


def _prepared(
    at: datetime, actor: str, action: str, subject: str, data: Mapping[str, Any] | None
) -> _Prepared:
    """The stored columns of an event (an `Entry`'s fields; a batch's `append` builds
    no `Entry`), before its place in the chain, checked."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit event time must be timezone-aware (pass UTC)")
    data_json = _data_json(data or {})
    row = {
        "at": at.astimezone(UTC),
        "actor": actor,
        "action": action,
        "subject": subject,
        # stored as its canonical JSON: tuples become lists, int keys strings …
        # exactly as they come back from the column, so what is hashed is what is stored
        "data": data_json,
    }
    return _Prepared(row, data_json)


def serialise_with_audit(session: Session) -> None:
    """Queue behind other audit writers now, before taking any row lock.

    Every writer appends to the audit chain, which on PostgreSQL takes one
    advisory lock; taking it first keeps the lock order the same everywhere
    (chain, then alert, then timers) so concurrent acknowledgements and timers
    cannot deadlock: acknowledgements, timers and the lifecycle all take it
    before touching alert or timer rows. SQLite's BEGIN IMMEDIATE already
    admits one writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK_KEY})


def verify(session: Session) -> list[str]:
    """Walk the whole chain in id order; return the problems found (empty: intact).

    Each problem names the event and what is wrong with it. An edited row is
    reported once, at that row: the walk continues from the row's stored hash,
    so one edit does not drown everything after it in noise.
    """
    problems: list[str] = []
    previous: AuditEvent | None = None
    events = session.scalars(
        select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)
    )
    for event in events:
        expected_prev = previous.hash if previous is not None else GENESIS_HASH
        if event.prev_hash != expected_prev:
            after = f"event {previous.id}" if previous is not None else "the start of the log"
            problems.append(
                f"event {event.id}: prev_hash does not match {after} (deleted or inserted row?)"
            )
        if event.hash != event_hash(event):
            problems.append(f"event {event.id}: hash does not match its content (edited?)")
        previous = event
    return problems


def event_hash(event: AuditEvent) -> str:
    """The hash `event` should carry, from its prev_hash and its content."""
    return chain_hash(
        event.prev_hash,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        data=event.data,
    )


def chain_hash(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    data: Any,
) -> str:
    """sha256_hex(prev_hash + canonical_json({at, actor, action, subject, data}))."""
    return _hash(prev_hash, at, actor, action, subject, _canonical_json(data))


def _hash(
    prev_hash: str, at: datetime, actor: str, action: str, subject: str, data_json: str
) -> str:
    """`chain_hash` with the data already in canonical JSON: the content's canonical
    JSON is spelled here key by key, in sorted order, around it (the same text)."""

    content = f'{_head(action, actor, at)}"data":{data_json},"subject":{_quoted(subject)}}}'
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


@lru_cache(maxsize=256)
def _head(action: str, actor: str, at: datetime) -> str:
    """The content's canonical JSON up to its data: `{"action":…,"actor":…,"at":…,`.
    A poll's thousands of events have a few actions and actors and one `at`: each
    head is spelled once. (Equal instants in other time zones spell the same: UTC.)"""
    when = at.astimezone(UTC).isoformat(timespec="microseconds")
    return f'{{"action":{_quoted(action)},"actor":{_quoted(actor)},"at":{_quoted(when)},'


def _quoted(value: str) -> str:
    """`value` as a JSON string, non-ASCII kept (as `_canonical_json` spells strings)."""
    if _ESCAPED.search(value) is None:
        return f'"{value}"'  # nothing to escape: most actions, actors, subjects, times
    return json.dumps(value, ensure_ascii=False)


# what JSON escapes in a string when non-ASCII is kept: quote, backslash, controls
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


# NaN and infinities are not JSON and PostgreSQL refuses them: fail here, clearly.
# One encoder for every event (json.dumps with options builds one per call); it
# keeps no state between calls.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
)


def _canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def _data_json(data: Mapping[str, Any]) -> str:
    """The canonical JSON of an event's data; ValueError when it is no plain JSON."""
    try:
        # a mapping that is no dict (a MappingProxy, say) is no JSON object to the encoder
        return _canonical_json(data if type(data) is dict else dict(data))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit data must be plain JSON (strings as keys): {exc}") from exc


__all__ = [
    "AUDIT_CHAIN_LOCK_KEY",
    "GENESIS_HASH",
    "Appended",
    "Entry",
    "append",
    "batch",
    "chain_hash",
    "event_hash",
    "record",
    "record_many",
    "serialise_with_audit",
    "verify",
    "write_pending",
]
