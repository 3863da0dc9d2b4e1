"""Routing: who is told about an alert, on which channel.

First cut: the zone's people (every role) and the bureau's duty officers, each
on the configured default channel. Rosters and escalation steps refine this
later without changing the callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.county import ROLE_LABELS, County


@dataclass(frozen=True)
class Recipient:
    person_id: str
    name: str
    address: str
    role: str  # zone role key or duty role key


def zone_recipients(county: County, zone_id: str) -> list[Recipient]:
    """The zone's people (in role order) then the duty officers, each once."""
    seen: set[str] = set()
    out: list[Recipient] = []
    role_order = list(ROLE_LABELS)
    people = sorted(county.people_of(zone_id), key=lambda rp: role_order.index(rp[0]))
    for role, person in people:
        if person.id not in seen:
            seen.add(person.id)
            out.append(Recipient(person.id, person.name, person.phone, role))
    for person in county.duty_officers():
        if person.id not in seen:
            seen.add(person.id)
            out.append(Recipient(person.id, person.name, person.phone, "duty_officer"))
    return out


def duty_recipients(county: County) -> list[Recipient]:
    """The bureau's duty officers: the audience of system alerts."""
    return [Recipient(p.id, p.name, p.phone, "duty_officer") for p in county.duty_officers()]
