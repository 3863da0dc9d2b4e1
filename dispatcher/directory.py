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
from dispatcher.storage.models import Person, Zone, ZoneRole
from rules.collector import collector_paused


def sync_directory(
    session: Session, county: County, point_of: Mapping[str, str], now: datetime
) -> None:
    """Upsert zones, people and zone roles from the configuration; does not commit."""
    with collector_paused():  # rows of a province: a quarter of a million dicts
        _sync(session, county, point_of, now)


def _sync(session: Session, county: County, point_of: Mapping[str, str], now: datetime) -> None:
    people = [
        {
            "id": p.id,
            "name": p.name,
            "phone": p.phone,
            "duty_role": p.duty_role,
        }
        for p in county.people.values()
    ]
    _upsert(session, Person, people, now)
    zones = [
        {
            "id": z.id,
            "name": z.name,
            "kind": z.kind,
            "township": z.township,
            "village": z.village,
            "latitude": z.latitude,
            "longitude": z.longitude,
            "risk_level": z.risk,
            "tags": sorted(z.tags),
            "point_id": point_of[z.id],
        }
        for z in county.zones
    ]
    _upsert(session, Zone, zones, now)

    # roles are configuration, not history: the table is made to hold exactly these
    wanted = {
        (z.id, person_id, role)
        for z in county.zones
        for role, person_ids in z.people.items()
        for person_id in person_ids
    }
    table = _table(ZoneRole)
    held = {
        (zone_id, person_id, role)
        for zone_id, person_id, role in session.execute(
            select(table.c.zone_id, table.c.person_id, table.c.role)
        )
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
    new = wanted - held
    if new:
        _insert(
            session, table, [{"zone_id": z, "person_id": p, "role": r} for z, p, r in sorted(new)]
        )
    session.flush()


def _upsert(
    session: Session,
    model: type[Person] | type[Zone],
    rows: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """Insert the new `rows`, update those that changed or were inactive (their
    `updated_at` set to `now`), mark the ones no longer listed inactive; rows as
    they are already are not written.

    Core statements on the table, not the ORM's bulk paths: those still build
    an ORM state per row, half the time of a province's sync. `active` and
    `updated_at`, the same on every row, are written as one value each.
    """
    if not rows:
        return
    table = _table(model)
    compared = [name for name in rows[0] if name != "id"]
    known = {
        row[0]: tuple(row[1:])
        for row in session.execute(
            select(table.c.id, *(table.c[name] for name in compared), table.c.active)
        )
    }
    new = [row for row in rows if row["id"] not in known]
    changed = [
        {**{name: value for name, value in row.items() if name != "id"}, "row_id": row["id"]}
        for row in rows
        if row["id"] in known and known[row["id"]] != (*(row[name] for name in compared), True)
    ]
    if new:
        _insert(session, table, [{**row, "active": True, "updated_at": now} for row in new])
    if changed:
        # SET the columns each parameter set names, for the row it names
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(active=True, updated_at=now),
            changed,
        )
    gone = sorted(set(known) - {row["id"] for row in rows})
    for chunk in _chunks(gone, 10_000):  # bound a statement's parameters
        session.execute(
            update(table).where(table.c.id.in_(chunk), table.c.active).values(active=False)
        )


def _insert(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (each with the same keys) through the driver's own executemany.

    Each value goes through its column type's bind processor, as SQLAlchemy
    would put it, but a whole row at a time: SQLAlchemy's executemany builds
    and processes a parameter set per row, a second of a province's sync.
    """
    bind = session.get_bind()
    dialect = bind.dialect
    names = list(rows[0])
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"
    )
    if all(processor is None for processor in processors):
        values = [tuple(row.values()) for row in rows]
    else:
        values = [
            tuple(
                value if processor is None else processor(value)
                for processor, value in zip(processors, row.values(), strict=True)
            )
            for row in rows
        ]
    session.connection().exec_driver_sql(statement, values)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table(model: type[Person] | type[Zone] | type[ZoneRole]) -> Table:
    """The Core table of a model (declarative models are mapped to one `Table`)."""
    return cast(Table, model.__table__)
