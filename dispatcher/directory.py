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

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.storage.held import insert_tuples
from dispatcher.storage.models import Person, Zone, ZoneRole
from rules.collector import collector_paused


def sync_directory(
    session: Session, county: County, point_of: Mapping[str, str], now: datetime
) -> None:
    """Upsert zones, people and zone roles from the configuration; does not commit."""
    with collector_paused():  # rows of a province: a quarter of a million dicts
        _sync(session, county, point_of, now)


def _sync(session: Session, county: County, point_of: Mapping[str, str], now: datetime) -> None:
    people = [(p.id, p.name, p.phone, p.duty_role) for p in county.people.values()]
    _upsert(session, Person, ("id", "name", "phone", "duty_role"), people, now)
    zones = [
        (
            z.id,
            z.name,
            z.kind,
            z.township,
            z.village,
            z.latitude,
            z.longitude,
            z.risk,
            sorted(z.tags),
            point_of[z.id],
        )
        for z in county.zones
    ]
    columns = ["id", "name", "kind", "township", "village", "latitude", "longitude"]
    columns += ["risk_level", "tags", "point_id"]
    _upsert(session, Zone, columns, zones, now)

    # roles are configuration, not history: the table is made to hold exactly these
    wanted = {
        (z.id, person_id, role)
        for z in county.zones
        for role, person_ids in z.people.items()
        for person_id in person_ids
    }
    table = _table(ZoneRole)
    # plain strings: the driver's own rows, fetched at once (not row by row)
    held = set(
        map(
            tuple,
            session.connection()
            .exec_driver_sql(f"SELECT zone_id, person_id, role FROM {table.name}")
            .fetchall(),
        )
    )
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
    new = wanted - held
    if new:
        insert_tuples(session, table, ("zone_id", "person_id", "role"), sorted(new))
    session.flush()


def _upsert(
    session: Session,
    model: type[Person] | type[Zone],
    names: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    now: datetime,
) -> None:
    """Insert the new `rows` (tuples of the columns `names`, the id first), update
    those that changed or were inactive (their `updated_at` set to `now`), mark
    the ones no longer listed inactive; rows as they are already are not written.

    Core statements on the table, not the ORM's bulk paths: those still build
    an ORM state per row, half the time of a province's sync. `active` and
    `updated_at`, the same on every row, are written as one value each.
    """
    if not rows:
        return
    table = _table(model)
    known = {
        row[0]: tuple(row[1:])
        for row in session.execute(select(*(table.c[name] for name in names), table.c.active)).all()
    }
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
