"""One event as a superior reads it: what, where, how bad, who was told, who answered.

`summarise` turns an event's episodes (the event's own alert and its zone
alerts, `reporting.detail`) into an `EventSection`: townships and zones with
the households and people threatened (zones.yaml `threatened:`), the event's
level changes (audit `alert:{event}`), who was told on which channel and when
— grouped, bureau staff by name —, the acknowledgements and overdue zones,
and the measures noted. Counts, not rows: a 124-zone cold wave fits a page.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dispatcher.labels import (
    ACK_METHOD_LABELS,
    PERSON_ROLE_LABELS,
    alert_state_label,
    channel_label,
    level_label,
    severity,
)
from dispatcher.reporting.detail import AckLine, Delivery, Episode
from dispatcher.states import NotificationStatus

__all__ = [
    "Change",
    "EventSection",
    "NoteLine",
    "ToldLine",
    "TownshipLine",
    "summarise",
]

#: What each audit action on an event says in the report's table of changes.
CHANGE_LABELS: Mapping[str, str] = {
    "alert.new": "发布",
    "alert.upgraded": "升级",
    "alert.downgraded": "降级",
    "alert.zones_added": "新增隐患点",
    "alert.resolved": "解除",
}
_DELIVERED = frozenset({NotificationStatus.DELIVERED})
_FAILED = frozenset({NotificationStatus.FAILED, NotificationStatus.UNDELIVERED})
_GROUP = "群组与广播"  # messages to a group, village loudspeaker or robot: no person


@dataclass(frozen=True)
class TownshipLine:
    township: str
    zones: int
    by_level: tuple[tuple[str, int], ...]  # (level key, zones), most severe first
    households: int
    people: int


@dataclass(frozen=True)
class Change:
    at: datetime
    label: str
    level: str  # level key after the change ("" when not recorded)
    zones: int | None  # zones the change added or the event then had, when recorded


@dataclass(frozen=True)
class ToldLine:
    """Messages to one bureau person, one zone role or the groups, on every channel."""

    who: str  # a bureau person's name and duty role, a zone role, or the groups
    bureau: bool
    channels: tuple[tuple[str, int], ...]  # (channel label, messages), most used first
    messages: int
    recipients: int
    delivered: int
    failed: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class NoteLine:
    at: datetime
    who: str
    where: str  # a zone's name, or 县局 for the event itself
    method: str  # Chinese label
    text: str


@dataclass(frozen=True)
class EventSection:
    """An event, summarised for its one or two printed pages."""

    code: str
    hazard: str
    hazard_name: str
    level: str  # the highest level it reached
    state: str
    opened_at: datetime
    closed_at: datetime | None
    acknowledged_at: datetime | None
    townships: tuple[TownshipLine, ...]
    changes: tuple[Change, ...]
    told: tuple[ToldLine, ...]
    bureau_acks: tuple[AckLine, ...]
    zones_acknowledged: int
    zone_ack_methods: tuple[tuple[str, int], ...]  # (method label, acknowledgements)
    overdue_zones: tuple[str, ...]  # zone names
    overdue_by_township: tuple[tuple[str, int], ...]  # (township, overdue zones), most first
    overdue_notices: int  # grouped overdue notices about the event (esc.overdue)
    notes: tuple[NoteLine, ...]
    event: Episode
    zone_episodes: tuple[Episode, ...]

    @property
    def level_zh(self) -> str:
        return level_label(self.level)

    @property
    def state_zh(self) -> str:
        return alert_state_label(self.state)

    @property
    def level_changes(self) -> list[Change]:
        """The changes of level (issued, raised, lowered, ended), without zones joining."""
        return [c for c in self.changes if c.label != CHANGE_LABELS["alert.zones_added"]]

    @property
    def zones_added(self) -> list[Change]:
        return [c for c in self.changes if c.label == CHANGE_LABELS["alert.zones_added"]]

    @property
    def zones(self) -> int:
        return sum(t.zones for t in self.townships)

    @property
    def households(self) -> int:
        return sum(t.households for t in self.townships)

    @property
    def people(self) -> int:
        return sum(t.people for t in self.townships)

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.told)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every message about the event: the bureau's, then each zone's."""
        return [*self.event.deliveries, *(d for e in self.zone_episodes for d in e.deliveries)]

    @property
    def overdue(self) -> bool:
        return bool(self.overdue_zones or self.overdue_notices or self.event.overdue)


def summarise(
    event: Episode,
    zone_episodes: Sequence[Episode],
    threatened: Mapping[str, tuple[int, int]],
) -> EventSection:
    """The section of `event` (an episode of kind event) with its zones' episodes;
    `threatened` maps zone id → (households, people)."""
    part = event.parts[-1]
    levels = [part.level, *(lv for e in zone_episodes for lv in e.levels)]
    deliveries = [*event.deliveries, *(d for e in zone_episodes for d in e.deliveries)]
    return EventSection(
        code=event.code,
        hazard=event.hazard,
        hazard_name=event.hazard_name,
        level=max(levels, key=severity),
        state=part.state,
        opened_at=event.opened_at,
        closed_at=part.closed_at,
        acknowledged_at=part.acknowledged_at,
        townships=_townships(zone_episodes, threatened),
        changes=_changes(event),
        told=_told(deliveries),
        bureau_acks=tuple(event.acks),
        zones_acknowledged=sum(1 for e in zone_episodes if e.acknowledged),
        zone_ack_methods=tuple(
            Counter(
                ACK_METHOD_LABELS.get(a.method, a.method) for e in zone_episodes for a in e.acks
            ).most_common()
        ),
        overdue_zones=tuple(e.zone_name for e in zone_episodes if e.overdue),
        overdue_by_township=tuple(
            Counter(e.township for e in zone_episodes if e.overdue).most_common()
        ),
        overdue_notices=sum(1 for d in event.deliveries if d.transition.startswith("esc.overdue")),
        notes=_notes(event, zone_episodes),
        event=event,
        zone_episodes=tuple(zone_episodes),
    )


def _townships(
    episodes: Iterable[Episode], threatened: Mapping[str, tuple[int, int]]
) -> tuple[TownshipLine, ...]:
    zones: dict[str, dict[str, str]] = defaultdict(dict)  # township → zone id → highest level
    for e in episodes:
        if e.zone_id is None:
            continue
        top = max(e.levels, key=severity)
        known = zones[e.township].get(e.zone_id)
        zones[e.township][e.zone_id] = top if known is None else max(known, top, key=severity)
    lines = []
    for township, levels in zones.items():
        counts = Counter(levels.values())
        lines.append(
            TownshipLine(
                township=township or "（未注明乡镇）",
                zones=len(levels),
                by_level=tuple(sorted(counts.items(), key=lambda kv: -severity(kv[0]))),
                households=sum(threatened.get(z, (0, 0))[0] for z in levels),
                people=sum(threatened.get(z, (0, 0))[1] for z in levels),
            )
        )
    # the worst-hit first: highest level, then most zones
    lines.sort(key=lambda t: (-severity(t.by_level[0][0]), -t.zones, t.township))
    return tuple(lines)


def _changes(event: Episode) -> tuple[Change, ...]:
    changes = []
    for part in event.parts:
        for line in part.audit:
            if line.action not in CHANGE_LABELS:
                continue
            zones = line.data.get("zones")
            added = line.data.get("added")
            count = (
                len(added)
                if isinstance(added, list)
                else (added if isinstance(added, int) else None)
            )
            if count is None:
                count = (
                    len(zones)
                    if isinstance(zones, list)
                    else (zones if isinstance(zones, int) else None)
                )
            changes.append(
                Change(
                    line.at, CHANGE_LABELS[line.action], str(line.data.get("level") or ""), count
                )
            )
    if not any(c.label == CHANGE_LABELS["alert.new"] for c in changes):
        first = event.parts[0]
        changes.insert(0, Change(first.opened_at, CHANGE_LABELS["alert.new"], first.level, None))
    return tuple(sorted(changes, key=lambda c: c.at))


def _who(d: Delivery) -> tuple[str, bool]:
    """The line a message is counted on, and whether it is bureau staff's."""
    if d.person_id is None:
        return _GROUP, False
    if d.duty_role:
        return f"{d.name}（{PERSON_ROLE_LABELS.get(d.duty_role, d.duty_role)}）", True
    return (d.role.split("、")[0] if d.role else "其他人员"), False


def _told(deliveries: Iterable[Delivery]) -> tuple[ToldLine, ...]:
    groups: dict[tuple[str, bool], list[Delivery]] = defaultdict(list)
    for d in deliveries:
        groups[_who(d)].append(d)
    lines = [
        ToldLine(
            who=who,
            bureau=bureau,
            channels=tuple(Counter(channel_label(d.channel) for d in ds).most_common()),
            messages=len(ds),
            recipients=len({d.person_id or d.address for d in ds}),
            delivered=sum(1 for d in ds if d.status in _DELIVERED),
            failed=sum(1 for d in ds if d.status in _FAILED),
            first=min(d.at for d in ds),
            last=max(d.at for d in ds),
        )
        for (who, bureau), ds in groups.items()
    ]
    order = {label: i for i, label in enumerate(PERSON_ROLE_LABELS.values())}
    lines.sort(key=lambda t: (not t.bureau, t.who == _GROUP, order.get(t.who, 99), t.who, t.first))
    return tuple(lines)


def _notes(event: Episode, zone_episodes: Iterable[Episode]) -> tuple[NoteLine, ...]:
    lines = [
        NoteLine(a.at, _ack_who(a), "县局", ACK_METHOD_LABELS.get(a.method, a.method), a.note)
        for a in event.acks
        if a.note
    ]
    lines += [
        NoteLine(a.at, _ack_who(a), e.zone_name, ACK_METHOD_LABELS.get(a.method, a.method), a.note)
        for e in zone_episodes
        for a in e.acks
        if a.note
    ]
    return tuple(sorted(lines, key=lambda n: n.at))


def _ack_who(a: AckLine) -> str:
    return f"{a.name}（{a.role}）" if a.role else a.name
