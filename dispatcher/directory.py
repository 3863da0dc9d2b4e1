"""Mirror the county configuration (zones, people, roles) into the database.

Alerts and notifications refer to zones and people by id; the configuration
files stay the source of truth. Removed zones and people are marked inactive,
never deleted, so old alerts keep their references.

Set-based: a province's directory is tens of thousands of zones and people and
over a hundred thousand roles, so rows are written as bulk INSERTs and UPDATEs
by primary key (one statement each, many parameter sets), not as ORM objects
one by one (30,000 zones took 50 s that way, most of it the unit of work).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.storage.held import batch, insert_tuples
from dispatcher.storage.models import Person, Zone, ZoneRole
from rules.collector import collector_paused


def sync_directory(
    session: Session, county: County, point_of: Mapping[str, str], now: datetime
) -> None:
    """Upsert zones, people and zone roles from the configuration; does not commit."""
    with collector_paused():  # rows of a province: a quarter of a million dicts
        _sync(session, county, point_of, now)


PEOPLE = ("id", "name", "phone", "duty_role")
ZONES = (
    *("id", "name", "kind", "township", "village", "latitude", "longitude"),
    *("risk_level", "tags", "point_id"),
)
ROLES = ("zone_id", "person_id", "role")


def _sync(session: Session, county: County, point_of: Mapping[str, str], now: datetime) -> None:
    # everything read first, so that no statement stands between the writes
    people_known = _known(session, Person, PEOPLE)
    zones_known = _known(session, Zone, ZONES)
    table = _table(ZoneRole)
    # plain strings: the driver's own rows, fetched at once (not row by row)
    held = set(
        map(
            tuple,
            session.connection()
            .exec_driver_sql(f"SELECT {', '.join(ROLES)} FROM {table.name}")
            .fetchall(),
        )
    )
    # in a batch, PostgreSQL's COPYs are sent by a second thread while the next
    # table's rows are prepared (storage.copier): the client no longer waits at
    # each table's end for the server (0.8 s for a province's three COPYs)
    with batch(session), _references_checked_once(session, table, whole=not held):
        people = [(p.id, p.name, p.phone, p.duty_role) for p in county.people.values()]
        _upsert(session, Person, PEOPLE, people, people_known, now)
        zones = [
            (
                z.id,
                z.name,
                z.kind,
                z.township,
                z.village,
                z.location.lat,  # not the properties: a call each, 60,000 of them
                z.location.lon,
                z.risk,
                sorted(z.tags),
                point_of[z.id],
            )
            for z in county.zones
        ]
        _upsert(session, Zone, ZONES, zones, zones_known, now)

        # roles are configuration, not history: the table is made to hold exactly these
        wanted = {
            (z.id, person_id, role)
            for z in county.zones
            for role, person_ids in z.people.items()
            for person_id in person_ids
        }
        gone = held - wanted
        if gone:
            session.execute(
                delete(table).where(
                    table.c.zone_id == bindparam("z"),
                    table.c.person_id == bindparam("p"),
                    table.c.role == bindparam("r"),
                ),
                [{"z": z, "p": p, "r": r} for z, p, r in gone],
            )
        new = sorted(wanted - held)
        if new:
            insert_tuples(session, table, ROLES, new)
    session.flush()


def _known(
    session: Session, model: type[Person] | type[Zone], names: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """The rows of `model` held now: id → the other columns of `names` and `active`."""
    table = _table(model)
    return {
        row[0]: tuple(row[1:])
        for row in session.execute(select(*(table.c[name] for name in names), table.c.active)).all()
    }


@contextmanager
def _references_checked_once(session: Session, table: Table, *, whole: bool) -> Iterator[None]:
    """Within, rows inserted into `table` have their foreign keys checked once for
    the whole table as the block ends, not row by row — on PostgreSQL, when the
    table is filled `whole` (it was empty: a first start).

    PostgreSQL checks a foreign key by a trigger per inserted row, a query and a
    row lock each: a province's 131,250 roles took 1.4 s of the server's time,
    0.3 s without. Here the table's foreign keys are dropped and added again —
    the definitions the database holds, by the same names — in a savepoint of
    the sync's transaction: adding one checks every row in one join, and a row
    without its zone or person fails the sync as the row-by-row check would. If
    anything in the block fails, the savepoint's rollback puts the constraints
    back; no other transaction sees the table without them (ALTER TABLE holds
    the table's exclusive lock until commit, on an empty table). DEFERRABLE
    keys would not help: the deferred checks are the same per-row queries.
    """
    if not whole or session.get_bind().dialect.name != "postgresql":
        yield
        return
    with session.begin_nested():
        connection = session.connection()
        keys = connection.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f' ORDER BY conname"
            ),
            {"table": table.name},
        ).all()
        quote = connection.dialect.identifier_preparer.quote
        altered = f"ALTER TABLE {quote(table.name)}"
        for name, _ in keys:
            connection.exec_driver_sql(f"{altered} DROP CONSTRAINT {quote(name)}")
        yield
        for name, definition in keys:
            connection.exec_driver_sql(f"{altered} ADD CONSTRAINT {quote(name)} {definition}")


def _upsert(
    session: Session,
    model: type[Person] | type[Zone],
    names: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    known: Mapping[str, tuple[Any, ...]],
    now: datetime,
) -> None:
    """Insert the new `rows` (tuples of the columns `names`, the id first) of the
    rows `known` (`_known`), update those that changed or were inactive (their
    `updated_at` set to `now`), mark the ones no longer listed inactive; rows
    as they are already are not written.

    Core statements on the table, not the ORM's bulk paths: those still build
    an ORM state per row, half the time of a province's sync. `active` and
    `updated_at`, the same on every row, are written as one value each.
    """
    if not rows:
        return
    table = _table(model)
    new = [row for row in rows if row[0] not in known]
    changed = [
        {**dict(zip(names[1:], row[1:], strict=True)), "row_id": row[0]}
        for row in rows
        if row[0] in known and known[row[0]] != (*row[1:], True)
    ]
    if new:
        insert_tuples(
            session,
            table,
            (*names, "active", "updated_at"),
            [(*row, True, now) for row in new],
        )
    if changed:
        # SET the columns each parameter set names, for the row it names
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(active=True, updated_at=now),
            changed,
        )
    gone = sorted(set(known) - {row[0] for row in rows})
    for chunk in _chunks(gone, 10_000):  # bound a statement's parameters
        session.execute(
            update(table).where(table.c.id.in_(chunk), table.c.active).values(active=False)
        )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table(model: type[Person] | type[Zone] | type[ZoneRole]) -> Table:
    """The Core table of a model (declarative models are mapped to one `Table`)."""
    return cast(Table, model.__table__)
