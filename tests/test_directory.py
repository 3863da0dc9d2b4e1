"""The directory sync mirrors the county's zones, people and roles into the database.

Set-based (bulk statements, only what changed is written); on both databases.
A first start fills the roles with their references checked once for the
whole table on PostgreSQL: the same constraints hold, before and after.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, insert, inspect, select
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.county import County
from dispatcher.directory import sync_directory
from dispatcher.storage.models import Person, Zone, ZoneRole

FIRST = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 2, tzinfo=UTC)


def roles(sessions: sessionmaker[Session]) -> set[tuple[str, str, str]]:
    with sessions() as session:
        return {(r.zone_id, r.person_id, r.role) for r in session.scalars(select(ZoneRole))}


def wanted_roles(county: County) -> set[tuple[str, str, str]]:
    return {(z.id, p, role) for z in county.zones for role, ps in z.people.items() for p in ps}


def test_a_sync_writes_every_zone_person_and_role_then_only_what_changed(
    sessions: sessionmaker[Session], county: County
) -> None:
    points = {z.id: f"pt-{z.id}" for z in county.zones}
    # given the example county synced into an empty database
    with sessions.begin() as session:
        sync_directory(session, county, points, FIRST)
    with sessions() as session:
        zones = {z.id: z for z in session.scalars(select(Zone))}
        people = {p.id: p for p in session.scalars(select(Person))}
    first = county.zones[0]
    assert set(zones) == {z.id for z in county.zones} and set(people) == set(county.people)
    assert zones[first.id].tags == sorted(first.tags)
    assert zones[first.id].point_id == f"pt-{first.id}"
    assert (zones[first.id].latitude, zones[first.id].longitude) == (
        first.latitude,
        first.longitude,
    )
    assert roles(sessions) == wanted_roles(county)

    # when one person is renamed and the first zone (and its roles) removed
    renamed = next(iter(county.people))
    people_now = dict(county.people)
    people_now[renamed] = people_now[renamed].model_copy(update={"name": "新名字"})
    smaller = dataclasses.replace(county, people=people_now, zones=county.zones[1:])
    with sessions.begin() as session:
        sync_directory(session, smaller, points, LATER)

    # then the person is renamed (and dated), the zone kept but inactive, its
    # roles gone, and rows that did not change keep their date
    with sessions() as session:
        person = session.get_one(Person, renamed)
        assert (person.name, person.updated_at) == ("新名字", LATER)
        assert session.get_one(Zone, first.id).active is False
        assert session.get_one(Zone, county.zones[1].id).updated_at == FIRST
    assert roles(sessions) == wanted_roles(smaller)

    # and when the zone comes back, it is active again with its roles
    with sessions.begin() as session:
        sync_directory(session, county, points, LATER)
    with sessions() as session:
        assert session.get_one(Zone, first.id).active is True
    assert roles(sessions) == wanted_roles(county)


def foreign_keys(engine: Engine) -> list[ReflectedForeignKeyConstraint]:
    keys = inspect(engine).get_foreign_keys(ZoneRole.__tablename__)
    return sorted(keys, key=lambda key: str(key["name"]))


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Zone)) or 0,
            session.scalar(select(func.count()).select_from(Person)) or 0,
            session.scalar(select(func.count()).select_from(ZoneRole)) or 0,
        )


def test_a_first_sync_naming_nobody_writes_nothing_and_the_references_stay_checked(
    engine: Engine, sessions: sessionmaker[Session], county: County
) -> None:
    points = {z.id: f"pt-{z.id}" for z in county.zones}
    keys = foreign_keys(engine)
    assert {key["referred_table"] for key in keys} == {"zones", "people"}
    # given a county whose last zone names, among its people, someone the county does not have
    last = county.zones[-1]
    role = next(iter(last.people))
    stray = last.model_copy(update={"people": {**last.people, role: ["p-nobody"]}})
    broken = dataclasses.replace(county, zones=[*county.zones[:-1], stray])

    # when it is synced into an empty database, the sync fails as a whole
    with pytest.raises(IntegrityError), sessions.begin() as session:
        sync_directory(session, broken, points, FIRST)
    assert counts(sessions) == (0, 0, 0)
    assert foreign_keys(engine) == keys

    # and a valid first sync keeps the same constraints, which refuse a role of
    # nobody, or at no zone, afterwards
    with sessions.begin() as session:
        sync_directory(session, county, points, FIRST)
    assert roles(sessions) == wanted_roles(county)
    assert foreign_keys(engine) == keys
    person = next(iter(county.people))
    for zone_id, person_id in ((last.id, "p-nobody"), ("LL-nowhere", person)):
        with pytest.raises(IntegrityError), sessions.begin() as session:
            session.execute(
                insert(ZoneRole).values(zone_id=zone_id, person_id=person_id, role=role)
            )
    assert roles(sessions) == wanted_roles(county)


def test_a_sync_that_fails_half_way_through_preparing_its_rows_writes_nothing(
    sessions: sessionmaker[Session], county: County
) -> None:
    # given forecast points known for every zone but the last (the people are
    # written, and the zones being prepared, when that is found out)
    points = {z.id: f"pt-{z.id}" for z in county.zones[:-1]}
    with pytest.raises(KeyError), sessions.begin() as session:
        sync_directory(session, county, points, FIRST)
    assert counts(sessions) == (0, 0, 0)
