"""Routing: who a target such as `mass_monitor` or `duty_officer` means, now.

Escalation steps name targets: zone roles (disaster_prevention, monitoring,
technical, mass_monitor), the duty officer and the leader on duty *on duty at
that instant* (per the roster), and named people. `recipients()` turns them into
people with addresses, each once, in target order. One more target is built in,
not for escalation.yaml: `administrator`, the audience of refused rule files.

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


def administrators(county: County) -> list[Recipient]:
    """Who hears about refused rules: the administrators, else the duty officers."""
    people, role = _administrators(county)
    return [Recipient(p.id, p.name, p.phone, role) for p in people]


def _administrators(county: County) -> tuple[list[PersonConfig], str]:
    people = county.administrators()
    if people:
        return people, ADMINISTRATOR
    return county.duty_officers(), "duty_officer"
