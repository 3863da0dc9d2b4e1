"""Routing: who a target such as `mass_monitor` or `duty_officer` means, now.

Escalation steps name targets: zone roles (disaster_prevention, monitoring,
technical, mass_monitor), the duty officer and the leader on duty *on duty at
that instant* (per the roster), and named people. `recipients()` turns them into
people with addresses, each once, in target order. One more target is built in,
not for escalation.yaml: `administrator`, the audience of refused rule files.

Steps also name audiences that are not people (`audiences()`): the
loudspeakers of the zone's village (`broadcast: [village]`, addressed as
`channels.broadcast.village_address`), the zone's township's group and named
groups (`im: [township, duty-room]`, addressed by the robot's key, mentioning
the zone's responsible people who have an id on that platform). A person is
only ever addressed by phone, an audience never is.

When the roster has nobody for a duty role at that instant (no roster.yaml, or
a day beyond its horizon), everyone with that duty role is told instead and the
fallback is reported: better one message too many than a missed report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from channels.base import Addressing
from channels.broadcast import village_address
from channels.registry import DECLARATIONS, declaration
from dispatcher.county import ROLE_LABELS, County, PersonConfig
from dispatcher.roster import ROSTER_ROLES, Roster

log = logging.getLogger("yujing.routing")

#: Every target a step of escalation.yaml may name besides people ids, in notification order.
TARGETS: tuple[str, ...] = (*ROLE_LABELS, *ROSTER_ROLES)

#: The administrators (the duty officers when there are none): only built-in
#: policies name them (`dispatcher.escalation.policy.ADMINISTRATOR_POLICY`).
ADMINISTRATOR: Final = "administrator"


@dataclass(frozen=True)
class Recipient:
    person_id: str
    name: str
    address: str
    role: str  # zone role key, duty role key, or "person" for a named person


#: `broadcast:` of a step: the loudspeakers of the zone's village (broadcast.yaml).
VILLAGE: Final = "village"

#: `im:` of a step: the zone's township's group (county.yaml `townships:`);
#: any other `im:` entry is a group key of county.yaml `groups:`.
TOWNSHIP: Final = "township"

#: The zone roles an IM group post @-mentions (who must act on a warning).
MENTIONED_ROLES: tuple[str, ...] = ("disaster_prevention", "monitoring")

#: The channel that plays a village's loudspeakers: the one that addresses villages.
BROADCAST_CHANNEL: Final = next(
    name for name, d in DECLARATIONS.items() if d.addressing is Addressing.VILLAGE
)


def addressing(channel: str) -> Addressing:
    """What `channel` addresses (its declaration); a channel nobody declares, a phone."""
    declared = declaration(channel)
    return declared.addressing if declared is not None else Addressing.PHONE


def reaches_people(channel: str) -> bool:
    """Whether `channel` addresses a person (by phone), not an audience."""
    return addressing(channel) is Addressing.PHONE


@dataclass(frozen=True)
class Audience:
    """An addressee that is not a person: a village's loudspeakers or a messaging-app group.

    `key` is the recipient part of its idempotency key (`village:柳林镇/锄沟村`,
    `group:duty-room`); `address` what its channel addresses (the village
    address, the robot's key); `name` what people read; `mentions` whom a
    group post @-mentions, in the platform's ids.
    """

    key: str
    name: str
    address: str
    channel: str
    mentions: tuple[str, ...] = ()

    @property
    def person_id(self) -> None:
        return None


@dataclass(frozen=True)
class Routed:
    """The people a set of targets means, and the duty roles nobody was rostered for."""

    recipients: list[Recipient]
    unrostered: list[str] = field(default_factory=list)


def recipients(
    county: County,
    roster: Roster,
    *,
    zone_id: str | None,
    targets: Sequence[str],
    people: Sequence[str] = (),
    at: datetime,
) -> Routed:
    """The people `targets` (then `people` by id) mean for this zone at `at`, each once.

    A zone role of a zone-less (system) alert means nobody. Unknown targets
    raise ValueError (the configuration loader refuses them first).
    """
    out: list[Recipient] = []
    seen: set[str] = set()
    unrostered: list[str] = []

    def add(person: PersonConfig, role: str) -> None:
        if person.id not in seen:
            seen.add(person.id)
            out.append(Recipient(person.id, person.name, person.phone, role))

    for target in targets:
        if target in ROLE_LABELS:
            if zone_id is None:
                continue
            for role, person in county.people_of(zone_id):
                if role == target:
                    add(person, role)
        elif target in ROSTER_ROLES:
            holder = roster.on_duty(at)[ROSTER_ROLES.index(target)]
            if holder is not None:
                add(holder, target)
                continue
            if roster.configured:
                log.warning("roster has no %s at %s: telling everyone with that role", target, at)
                unrostered.append(target)
            for person in county.people.values():
                if person.duty_role == target:
                    add(person, target)
        elif target == ADMINISTRATOR:
            admins, role = _administrators(county)
            for person in admins:
                add(person, role)
        else:
            raise ValueError(f"unknown routing target {target!r}; expected one of {TARGETS}")
    for person_id in people:
        named = county.people.get(person_id)
        if named is None:
            log.warning("escalation names person %r, who is not in people.yaml", person_id)
            continue
        add(named, "person")
    return Routed(out, unrostered)


def audiences(
    county: County,
    *,
    zone_id: str | None,
    broadcast: Sequence[str] = (),
    im: Sequence[str] = (),
) -> list[Audience]:
    """The audiences a step's `broadcast:` and `im:` mean for this zone, each once.

    `village` and `township` of a zone-less (system) alert, a zone without a
    village or a township without a group mean nobody (the loader reports
    those it can foresee). Unknown names raise ValueError.
    """
    zone = county.zone(zone_id) if zone_id is not None else None
    out: dict[str, Audience] = {}
    for name in broadcast:
        if name != VILLAGE:
            raise ValueError(f"unknown broadcast audience {name!r}; expected {VILLAGE!r}")
        if zone is None or not zone.village:
            continue
        address = village_address(zone.township, zone.village)
        village = Audience(
            f"village:{address}", f"{zone.township}{zone.village}", address, BROADCAST_CHANNEL
        )
        out.setdefault(village.key, village)
    for name in im:
        key: str | None = name
        if name == TOWNSHIP:
            key = county.township_group(zone.township) if zone is not None else None
            if key is None:
                if zone is not None:
                    log.warning("township %s has no group (county.yaml townships:)", zone.township)
                continue
        assert key is not None
        group = county.groups.get(key)
        if group is None:
            raise ValueError(f"unknown group {key!r}; expected one of {sorted(county.groups)}")
        mentions = _mentions(county, zone_id, group.channel)
        audience = Audience(f"group:{key}", group.name, key, group.channel, mentions)
        out.setdefault(audience.key, audience)
    return list(out.values())


def _mentions(county: County, zone_id: str | None, platform: str) -> tuple[str, ...]:
    """The ids on `platform` of the zone's responsible people who have one, each once."""
    if zone_id is None:
        return ()
    ids = (
        person.im.on(platform)
        for role, person in county.people_of(zone_id)
        if role in MENTIONED_ROLES
    )
    return tuple(dict.fromkeys(i for i in ids if i))


def administrators(county: County) -> list[Recipient]:
    """Who hears about refused rules: the administrators, else the duty officers."""
    people, role = _administrators(county)
    return [Recipient(p.id, p.name, p.phone, role) for p in people]


def _administrators(county: County) -> tuple[list[PersonConfig], str]:
    people = county.administrators()
    if people:
        return people, ADMINISTRATOR
    return county.duty_officers(), "duty_officer"
