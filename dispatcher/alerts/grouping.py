"""Grouping: which zone alerts form one event, and how an event changes in a poll.

Pure: plain data in, plain data out, no clock and no I/O — like reconcile, whose
transitions it reads. The lifecycle (`dispatcher.alerts.events`) persists what
it decides.

An *event* is what the bureau handles: the open hazard alerts of one hazard
(one rule family). The alerts of a hazard that open in one poll start an event
when none of that hazard is open; those that open while it is open join it.
Its level is the highest level among its open zone alerts; it ends when the
last of them closes. Per hazard and poll, at most one change:

| before           | after (open zones)            | change                        |
| ---------------- | ----------------------------- | ----------------------------- |
| no open event    | some zones                    | NEW                           |
| open event       | none                          | ENDED                         |
| open event at L  | highest level above L         | UPGRADED (zones added listed) |
| open event at L  | highest level below L         | DOWNGRADED                    |
| open event at L  | at L, zones that were not in it | ZONES_ADDED                 |
| open event at L  | at L, the same zones or fewer | — (nothing to tell)           |

This is how Alertmanager groups alerts by labels and PagerDuty folds alerts
into incidents: the bureau hears one message per event change, not per zone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dispatcher.alerts.reconcile import Transition, TransitionKind
from rules.types import Level

__all__ = ["EventChange", "EventChangeKind", "EventState", "group", "zones_after"]


class EventChangeKind(enum.Enum):
    NEW = "new"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    ZONES_ADDED = "zones_added"
    ENDED = "ended"


@dataclass(frozen=True)
class EventState:
    """An open event as grouping sees it: its id, hazard, level and open zones."""

    event_id: int
    hazard: str
    level: Level
    zones: Mapping[str, Level]  # zone → level of its open alert


@dataclass(frozen=True)
class EventChange:
    """What happened to one hazard's event in this poll.

    `event_id` is None for a NEW event (it has no row yet). `zones` are the
    event's open zones after the poll (empty when it ENDED); `added` those that
    were not in it before, in zone order.
    """

    kind: EventChangeKind
    hazard: str
    event_id: int | None
    level: Level | None  # None when ENDED
    previous_level: Level | None
    zones: Mapping[str, Level]
    added: tuple[str, ...] = ()


def zones_after(
    before: Mapping[str, Mapping[str, Level]], transitions: Iterable[Transition]
) -> dict[str, dict[str, Level]]:
    """Hazard → zone → level of the open hazard alerts once `transitions` are applied.

    `before` is the same map for the alerts open before them (event or not).
    """
    after = {hazard: dict(zones) for hazard, zones in before.items()}
    for t in transitions:
        if t.kind is TransitionKind.RESOLVED:
            after.get(t.hazard, {}).pop(t.zone_id, None)
        elif t.kind in (TransitionKind.NEW, TransitionKind.UPGRADED, TransitionKind.DOWNGRADED):
            after.setdefault(t.hazard, {})[t.zone_id] = t.level
    return {hazard: zones for hazard, zones in after.items() if zones}


def group(
    events: Mapping[str, EventState], after: Mapping[str, Mapping[str, Level]]
) -> list[EventChange]:
    """The change of each hazard's event, given the open events (hazard → state)
    and the open zones after this poll (hazard → zone → level); hazards in order."""
    changes: list[EventChange] = []
    for hazard in sorted(set(events) | set(after)):
        event = events.get(hazard)
        zones = dict(after.get(hazard, {}))
        if event is None:
            if zones:
                changes.append(
                    EventChange(
                        EventChangeKind.NEW,
                        hazard,
                        None,
                        max(zones.values()),
                        None,
                        zones,
                        tuple(sorted(zones)),
                    )
                )
            continue
        if not zones:
            changes.append(
                EventChange(EventChangeKind.ENDED, hazard, event.event_id, None, event.level, {})
            )
            continue
        level = max(zones.values())
        added = tuple(sorted(set(zones) - set(event.zones)))
        if level > event.level:
            kind = EventChangeKind.UPGRADED
        elif level < event.level:
            kind = EventChangeKind.DOWNGRADED
        elif added:
            kind = EventChangeKind.ZONES_ADDED
        else:
            continue
        changes.append(EventChange(kind, hazard, event.event_id, level, event.level, zones, added))
    return changes
