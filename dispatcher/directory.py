"""Mirror the county configuration (zones, people, roles) into the database.

Alerts and notifications refer to zones and people by id; the configuration
files stay the source of truth. Removed zones and people are marked inactive,
never deleted, so old alerts keep their references.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.storage.models import Person, Zone, ZoneRole


def sync_directory(
    session: Session, county: County, point_of: Mapping[str, str], now: datetime
) -> None:
    """Upsert zones, people and zone roles from the configuration; does not commit."""
    people = {p.id: p for p in session.scalars(select(Person))}
    for person_cfg in county.people.values():
        person = people.get(person_cfg.id) or Person(id=person_cfg.id)
        person.name = person_cfg.name
        person.phone = person_cfg.phone
        person.duty_role = person_cfg.duty_role
        person.active = True
        person.updated_at = now
        session.add(person)
    gone_people = set(people) - set(county.people)
    if gone_people:
        session.execute(update(Person).where(Person.id.in_(gone_people)).values(active=False))

    zones = {z.id: z for z in session.scalars(select(Zone))}
    for cfg in county.zones:
        zone = zones.get(cfg.id) or Zone(id=cfg.id)
        zone.name = cfg.name
        zone.kind = cfg.kind
        zone.township = cfg.township
        zone.village = cfg.village
        zone.latitude = cfg.latitude
        zone.longitude = cfg.longitude
        zone.risk_level = cfg.risk
        zone.tags = sorted(cfg.tags)
        zone.point_id = point_of[cfg.id]
        zone.active = True
        zone.updated_at = now
        session.add(zone)
    gone_zones = set(zones) - {z.id for z in county.zones}
    if gone_zones:
        session.execute(update(Zone).where(Zone.id.in_(gone_zones)).values(active=False))
    session.flush()

    # roles are configuration, not history: replace them wholesale
    session.execute(delete(ZoneRole))
    for cfg in county.zones:
        for role, person_ids in cfg.people.items():
            for person_id in dict.fromkeys(person_ids):
                session.add(ZoneRole(zone_id=cfg.id, person_id=person_id, role=role))
    session.flush()
