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

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.storage.models import Person, Zone, ZoneRole


def sync_directory(
    session: Session, county: County, point_of: Mapping[str, str], now: datetime
) -> None:
    """Upsert zones, people and zone roles from the configuration; does not commit."""
    people = [
        {
            "id": p.id,
            "name": p.name,
            "phone": p.phone,
            "duty_role": p.duty_role,
            "active": True,
            "updated_at": now,
        }
        for p in county.people.values()
    ]
    _upsert(session, Person, people)
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
            "active": True,
            "updated_at": now,
        }
        for z in county.zones
    ]
    _upsert(session, Zone, zones)

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
        session.execute(
            insert(table), [{"zone_id": z, "person_id": p, "role": r} for z, p, r in sorted(new)]
        )
    session.flush()


def _upsert(
    session: Session, model: type[Person] | type[Zone], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert the new `rows`, update those that changed (their `updated_at` too), mark
    the ones no longer listed inactive; rows as they are already are not written.

    Core statements on the table, not the ORM's bulk paths: those still build
    an ORM state per row, half the time of a province's sync.
    """
    if not rows:
        return
    table = _table(model)
    compared = [name for name in rows[0] if name not in ("id", "updated_at")]
    known = {
        row[0]: tuple(row[1:])
        for row in session.execute(select(table.c.id, *(table.c[name] for name in compared)))
    }
    new = [row for row in rows if row["id"] not in known]
    changed = [
        {**{name: value for name, value in row.items() if name != "id"}, "row_id": row["id"]}
        for row in rows
        if row["id"] in known and known[row["id"]] != tuple(row[name] for name in compared)
    ]
    if new:
        session.execute(insert(table), new)
    if changed:
        # SET the columns each parameter set names, for the row it names
        session.execute(update(table).where(table.c.id == bindparam("row_id")), changed)
    gone = sorted(set(known) - {row["id"] for row in rows})
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
