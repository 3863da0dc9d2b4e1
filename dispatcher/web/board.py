# Long module: the board's one query (filters, order, pages) and the rows it gives, read together
"""The alert board's data: events with their zones, and system alerts, filtered and paged.

A board *item* is an open alert the bureau handles as one: an event (kind
event; its zone alerts have `event_id` = its id), a system alert (kind
system), or a hazard alert that belongs to no event (alerts from before
events existed). Items are ordered unacknowledged first, then by level (red
first), then newest, and paged (`PAGE_SIZE` a page) in SQL, so a county with
thousands of open alerts costs one page of rows. An event lists its open zone
alerts — the first `ZONES_SHOWN` of them, or up to `ZONES_ALL` when the
officer asks for all — in the same order.

Filters: township and search (a code, a zone's name or id, a person's name)
narrow an event to its matching zones; hazard, level and state apply to the
item itself. A search for an item's own code finds that item whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from dispatcher.labels import LEVEL_LABELS, PERSON_ROLE_LABELS, alert_state_label, level_label
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState, TimerKind, TimerStatus
from dispatcher.storage.models import Alert, EscalationTimer, Person, User, Zone, ZoneRole
from dispatcher.web.words import actor_words, evidence_words, phone_href

__all__ = [
    "PAGE_SIZE",
    "ZONES_ALL",
    "ZONES_SHOWN",
    "BoardFilter",
    "BoardItem",
    "BoardPage",
    "ZoneRow",
    "board_page",
]

PAGE_SIZE: Final = 50  # items a page
ZONES_SHOWN: Final = 20  # zones listed under an event until "show all"
ZONES_ALL: Final = 1000  # the most zones "show all" lists (filter to see the rest)
SEARCH_MAX: Final = 64  # characters of a search that count
PAGE_MAX: Final = 100_000  # a page past this is asked for by no one (and overflows OFFSET)
STATE_FILTERS: Final[Mapping[str, str]] = {
    AlertState.FIRING: "待确认",
    AlertState.ACKNOWLEDGED: "已确认",
}


@dataclass(frozen=True)
class BoardFilter:
    """What the officer asked the board for (the page's query string)."""

    township: str = ""
    hazard: str = ""
    level: str = ""
    state: str = ""
    q: str = ""
    page: int = 1
    show: str = ""  # the event code whose zones are all listed

    @classmethod
    def of(cls, params: Mapping[str, str]) -> BoardFilter:
        def text(name: str) -> str:
            return (params.get(name) or "").strip()[:SEARCH_MAX]

        try:
            page = min(max(1, int(params.get("page") or 1)), PAGE_MAX)
        except ValueError:
            page = 1
        level = text("level")
        state = text("state")
        return cls(
            township=text("township"),
            hazard=text("hazard"),
            level=level if level in LEVEL_LABELS else "",
            state=state if state in STATE_FILTERS else "",
            q=text("q"),
            page=page,
            show=text("show").upper(),
        )

    @property
    def narrows_zones(self) -> bool:
        return bool(self.township or self.q)

    @property
    def active(self) -> bool:
        return bool(self.township or self.hazard or self.level or self.state or self.q)

    def query(self, **changes: Any) -> str:
        """This filter's query string with `changes` (e.g. page=2), empty values left out."""
        values = replace(self, **changes)
        pairs = [
            ("township", values.township),
            ("hazard", values.hazard),
            ("level", values.level),
            ("state", values.state),
            ("q", values.q),
            ("page", str(values.page) if values.page > 1 else ""),
            ("show", values.show),
        ]
        return urlencode([(k, v) for k, v in pairs if v])


@dataclass(frozen=True)
class Contact:
    name: str
    role: str
    phone: str
    tel: str | None


@dataclass(frozen=True)
class ZoneRow:
    """One open zone alert of an event (or an alert of no event)."""

    code: str
    zone_id: str
    place: str
    township: str
    level: str
    level_zh: str
    state: str
    state_zh: str
    evidence: list[str]
    people: list[Contact]
    overdue: bool
    deadline: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


@dataclass(frozen=True)
class BoardItem:
    """One row of the board: an event (with its zones), a system alert, or a lone hazard alert."""

    key: str  # the code: unique among alerts
    kind: str  # event | system | hazard
    code: str
    title: str
    rule: str
    level: str
    level_zh: str
    state: str
    state_zh: str
    opened_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    overdue: int  # zones past their deadline unacknowledged (1/0 for a single alert)
    deadline: datetime | None
    zones_open: int = 0
    zones_unacked: int = 0
    zones_matching: int = 0
    townships: list[str] = field(default_factory=list)
    zones: list[ZoneRow] = field(default_factory=list)
    all_shown: bool = False
    evidence: list[str] = field(default_factory=list)

    @property
    def more(self) -> int:
        return self.zones_matching - len(self.zones)

    @property
    def alarming(self) -> bool:
        """Unacknowledged orange or red: the console sounds and flashes for a new one."""
        return self.state == AlertState.FIRING and self.level in ("red", "orange")


@dataclass(frozen=True)
class BoardPage:
    items: list[BoardItem]
    total: int  # items matching the filter
    page: int
    pages: int
    counts: dict[str, int]  # open events (and other items) by level, whole county
    unacked: int  # unacknowledged items, whole county
    zones_open: int  # open zone alerts, whole county
    zones_unacked: int
    zones_overdue: int
    townships: list[str]
    hazards: list[tuple[str, str]]  # (key, name) of open items


def _severity_sql(level: Any) -> ColumnElement[int]:
    ranks = {key: rank for rank, key in enumerate(reversed(list(LEVEL_LABELS)), start=1)}
    return case(ranks, value=level, else_=0)


def _unacked_first(state: Any) -> ColumnElement[int]:
    return case((state == AlertState.FIRING, 0), else_=1)


def _zone_conditions(
    za: Any, f: BoardFilter, *, with_search: bool = True
) -> list[ColumnElement[bool]]:
    """Conditions on a zone alert `za` joined to `Zone` for the filter's township and search."""
    conds: list[ColumnElement[bool]] = []
    if f.township:
        conds.append(Zone.township == f.township)
    if f.q and with_search:
        q = f.q
        people = (
            select(ZoneRole.zone_id)
            .join(Person, Person.id == ZoneRole.person_id)
            .where(Person.name.contains(q, autoescape=True))
        )
        conds.append(
            or_(
                za.code == q.upper(),
                Zone.name.contains(q, autoescape=True),
                func.lower(Zone.id).contains(q.lower(), autoescape=True),
                Zone.id.in_(people),
            )
        )
    return conds


def _items_query(f: BoardFilter) -> Select[Alert]:
    za = aliased(Alert)
    stmt = select(Alert).where(
        Alert.state.in_(OPEN_ALERT_STATES),
        or_(
            Alert.kind.in_((AlertKind.EVENT, AlertKind.SYSTEM)),
            and_(Alert.kind == AlertKind.HAZARD, Alert.event_id.is_(None)),
        ),
    )
    if f.hazard:
        stmt = stmt.where(Alert.hazard == f.hazard)
    if f.level:
        stmt = stmt.where(Alert.level == f.level)
    if f.state:
        stmt = stmt.where(Alert.state == f.state)
    if f.narrows_zones:
        matching = (
            select(za.id, za.event_id)
            .join(Zone, Zone.id == za.zone_id)
            .where(za.state.in_(OPEN_ALERT_STATES), *_zone_conditions(za, f))
        )
        in_events = matching.with_only_columns(za.event_id).where(za.event_id.is_not(None))
        lone = matching.with_only_columns(za.id).where(za.event_id.is_(None))
        found = or_(Alert.id.in_(in_events), Alert.id.in_(lone))
        if f.q:
            own = Alert.code == f.q.upper()
            if f.township:  # an event found by its code still has to be in the township
                own = and_(own, Alert.id.in_(_in_township(f.township)))
            found = or_(found, own)
        stmt = stmt.where(found)
    return stmt


def _in_township(township: str) -> Select[int | None]:
    za = aliased(Alert)
    return (
        select(za.event_id)
        .join(Zone, Zone.id == za.zone_id)
        .where(za.state.in_(OPEN_ALERT_STATES), Zone.township == township)
    )


def board_page(
    db: Session,
    f: BoardFilter,
    now: datetime,
    *,
    rule_title: Mapping[str, str],
    names: Mapping[str, str] | None = None,
) -> BoardPage:
    """The board for filter `f` at `now`: one page of items, their zones, and county totals.

    `rule_title` maps rule ids to titles; `names` maps acknowledger ids (person
    ids, console actors) to people's names (looked up here when not given).
    """
    items_q = _items_query(f)
    total = db.scalar(select(func.count()).select_from(items_q.subquery())) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(f.page, pages)
    rows = db.scalars(
        items_q.order_by(
            _unacked_first(Alert.state),
            _severity_sql(Alert.level).desc(),
            Alert.opened_at.desc(),
            Alert.id.desc(),
        )
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()

    events = [a for a in rows if a.kind == AlertKind.EVENT]
    event_ids = [a.id for a in events]
    stats = _event_stats(db, event_ids, f, now)
    zones_of: dict[int, list[tuple[Alert, Zone]]] = {}
    for event in events:
        own_code = bool(f.q) and f.q.upper() == event.code
        limit = ZONES_ALL if f.show == event.code else ZONES_SHOWN
        zones_of[event.id] = _zones(db, event.id, f, own_code=own_code, limit=limit)
    lone = [a for a in rows if a.kind == AlertKind.HAZARD and a.zone_id]
    lone_zones = {
        z.id: z for z in db.scalars(select(Zone).where(Zone.id.in_({a.zone_id for a in lone})))
    }

    shown: list[tuple[Alert, Zone]] = [pair for pairs in zones_of.values() for pair in pairs]
    shown += [(a, lone_zones[a.zone_id]) for a in lone if a.zone_id in lone_zones]
    deadlines = _deadlines(db, [a.id for a in rows] + [a.id for a, _ in shown])
    people = _people(db, {z.id for _, z in shown})
    acked = [a.acknowledged_by for a in rows] + [a.acknowledged_by for a, _ in shown]
    names = dict(names) if names is not None else acknowledger_names(db, acked)

    def zone_row(a: Alert, z: Zone) -> ZoneRow:
        deadline = deadlines.get(a.id)
        return ZoneRow(
            code=a.code,
            zone_id=z.id,
            place=place(z),
            township=z.township,
            level=a.level,
            level_zh=level_label(a.level),
            state=a.state,
            state_zh=alert_state_label(a.state),
            evidence=evidence_words(a.evidence or {}),
            people=people.get(z.id, []),
            overdue=_overdue(a, deadline, now),
            deadline=deadline,
            acknowledged_by=names_of(a.acknowledged_by, names),
            acknowledged_at=a.acknowledged_at,
        )

    items = []
    for a in rows:
        deadline = deadlines.get(a.id)
        common: dict[str, Any] = {
            "key": a.code,
            "kind": a.kind,
            "code": a.code,
            "title": a.title or a.hazard,
            "rule": rule_title.get(a.rule_id, a.rule_id),
            "level": a.level,
            "level_zh": level_label(a.level),
            "state": a.state,
            "state_zh": alert_state_label(a.state),
            "opened_at": a.opened_at,
            "acknowledged_by": names_of(a.acknowledged_by, names),
            "acknowledged_at": a.acknowledged_at,
            "deadline": deadline,
        }
        if a.kind == AlertKind.EVENT:
            s = stats.get(a.id, _Stats())
            zone_rows = [zone_row(za, z) for za, z in zones_of[a.id]]
            items.append(
                BoardItem(
                    **common,
                    overdue=s.overdue + int(_overdue(a, deadline, now)),
                    zones_open=s.open,
                    zones_unacked=s.unacked,
                    zones_matching=s.matching,
                    townships=s.townships,
                    zones=zone_rows,
                    all_shown=f.show == a.code,
                )
            )
        elif a.kind == AlertKind.HAZARD and a.zone_id in lone_zones:
            row = zone_row(a, lone_zones[a.zone_id])
            items.append(
                BoardItem(
                    **common,
                    overdue=int(row.overdue),
                    townships=[row.township],
                    zones=[row],
                    zones_open=1,
                    zones_unacked=int(a.state == AlertState.FIRING),
                    zones_matching=1,
                    all_shown=True,
                    evidence=row.evidence,
                )
            )
        else:
            items.append(
                BoardItem(
                    **common,
                    overdue=int(_overdue(a, deadline, now)),
                    evidence=evidence_words(_numbers(a.evidence or {})),
                )
            )
    return BoardPage(
        items=items,
        total=total,
        page=page,
        pages=pages,
        **_county_totals(db, now),
        townships=list(db.scalars(select(Zone.township).distinct().order_by(Zone.township))),
        hazards=[
            (key, title or key)
            for key, title in db.execute(
                select(Alert.hazard, func.max(Alert.title))
                .where(
                    Alert.state.in_(OPEN_ALERT_STATES),
                    Alert.kind.in_((AlertKind.EVENT, AlertKind.HAZARD)),
                )
                .group_by(Alert.hazard)
                .order_by(Alert.hazard)
            )
        ],
    )


@dataclass
class _Stats:
    open: int = 0
    unacked: int = 0
    matching: int = 0
    overdue: int = 0
    townships: list[str] = field(default_factory=list)


def _event_stats(
    db: Session, event_ids: Sequence[int], f: BoardFilter, now: datetime
) -> dict[int, _Stats]:
    if not event_ids:
        return {}
    stats = {i: _Stats() for i in event_ids}
    za = aliased(Alert)
    open_zones = (za.event_id.in_(event_ids), za.state.in_(OPEN_ALERT_STATES))
    for event_id, count, unacked in db.execute(
        select(
            za.event_id,
            func.count(),
            func.sum(case((za.state == AlertState.FIRING, 1), else_=0)),
        )
        .where(*open_zones)
        .group_by(za.event_id)
    ):
        stats[_id(event_id)].open = count
        stats[_id(event_id)].unacked = int(unacked or 0)
        stats[_id(event_id)].matching = count
    if f.narrows_zones:
        for s in stats.values():
            s.matching = 0
        for event_id, count in db.execute(
            select(za.event_id, func.count())
            .join(Zone, Zone.id == za.zone_id)
            .where(*open_zones, *_zone_conditions(za, f))
            .group_by(za.event_id)
        ):
            stats[_id(event_id)].matching = count
        if f.q:  # an event found by its own code lists its zones whole (in the township)
            for event_id, count in db.execute(
                select(za.event_id, func.count())
                .join(Zone, Zone.id == za.zone_id)
                .join(Alert, Alert.id == za.event_id)
                .where(
                    *open_zones, Alert.code == f.q.upper(), *_zone_conditions(za, replace(f, q=""))
                )
                .group_by(za.event_id)
            ):
                stats[_id(event_id)].matching = count
    for event_id, township in db.execute(
        select(za.event_id, Zone.township)
        .join(Zone, Zone.id == za.zone_id)
        .where(*open_zones)
        .group_by(za.event_id, Zone.township)
        .order_by(za.event_id, func.count().desc(), Zone.township)
    ):
        stats[_id(event_id)].townships.append(township)
    for event_id, count in db.execute(
        select(za.event_id, func.count(func.distinct(za.id)))
        .join(EscalationTimer, EscalationTimer.alert_id == za.id)
        .where(
            za.event_id.in_(event_ids),
            za.state == AlertState.FIRING,
            EscalationTimer.kind == TimerKind.DEADLINE,
            EscalationTimer.status != TimerStatus.CANCELLED,
            EscalationTimer.due_at <= now,
        )
        .group_by(za.event_id)
    ):
        stats[_id(event_id)].overdue = count
    return stats


def _zones(
    db: Session, event_id: int, f: BoardFilter, *, own_code: bool, limit: int
) -> list[tuple[Alert, Zone]]:
    za = aliased(Alert)
    stmt = (
        select(za, Zone)
        .join(Zone, Zone.id == za.zone_id)
        .where(
            za.event_id == event_id,
            za.state.in_(OPEN_ALERT_STATES),
            *_zone_conditions(za, f, with_search=not own_code),
        )
        .order_by(
            _unacked_first(za.state),
            _severity_sql(za.level).desc(),
            Zone.township,
            Zone.id,
        )
        .limit(limit)
    )
    return [(a, z) for a, z in db.execute(stmt)]


def _county_totals(db: Session, now: datetime) -> dict[str, Any]:
    counts: dict[str, int] = {}
    unacked = 0
    for level, state, n in db.execute(
        select(Alert.level, Alert.state, func.count())
        .where(
            Alert.state.in_(OPEN_ALERT_STATES),
            or_(
                Alert.kind.in_((AlertKind.EVENT, AlertKind.SYSTEM)),
                and_(Alert.kind == AlertKind.HAZARD, Alert.event_id.is_(None)),
            ),
        )
        .group_by(Alert.level, Alert.state)
    ):
        counts[level] = counts.get(level, 0) + n
        unacked += n if state == AlertState.FIRING else 0
    zones_open, zones_unacked = db.execute(
        select(func.count(), func.sum(case((Alert.state == AlertState.FIRING, 1), else_=0))).where(
            Alert.kind == AlertKind.HAZARD, Alert.state.in_(OPEN_ALERT_STATES)
        )
    ).one()
    overdue = db.scalar(
        select(func.count(func.distinct(Alert.id)))
        .join(EscalationTimer, EscalationTimer.alert_id == Alert.id)
        .where(
            Alert.kind == AlertKind.HAZARD,
            Alert.state == AlertState.FIRING,
            EscalationTimer.kind == TimerKind.DEADLINE,
            EscalationTimer.status != TimerStatus.CANCELLED,
            EscalationTimer.due_at <= now,
        )
    )
    return {
        "counts": counts,
        "unacked": unacked,
        "zones_open": zones_open or 0,
        "zones_unacked": int(zones_unacked or 0),
        "zones_overdue": overdue or 0,
    }


def _deadlines(db: Session, ids: Sequence[int]) -> dict[int, datetime]:
    deadlines: dict[int, datetime] = {}
    if not ids:
        return deadlines
    for alert_id, due in db.execute(
        select(EscalationTimer.alert_id, func.min(EscalationTimer.due_at))
        .where(
            EscalationTimer.alert_id.in_(ids),
            EscalationTimer.kind == TimerKind.DEADLINE,
            EscalationTimer.status != TimerStatus.CANCELLED,
        )
        .group_by(EscalationTimer.alert_id)
    ):
        deadlines[alert_id] = due
    return deadlines


def _overdue(alert: Alert, deadline: datetime | None, now: datetime) -> bool:
    if alert.state != AlertState.FIRING or deadline is None:
        return False
    if deadline.tzinfo is None:  # SQLite's aggregate gives the stored text back naive (UTC)
        deadline = deadline.replace(tzinfo=now.tzinfo)
    return deadline <= now


def _people(db: Session, zone_ids: set[str]) -> dict[str, list[Contact]]:
    """The people responsible for each zone, 防灾责任人 first."""
    found: dict[str, list[Contact]] = {}
    if not zone_ids:
        return found
    rows = db.execute(
        select(ZoneRole.zone_id, ZoneRole.role, Person.name, Person.phone)
        .join(Person, Person.id == ZoneRole.person_id)
        .where(ZoneRole.zone_id.in_(zone_ids), Person.active.is_(True))
        .order_by(
            ZoneRole.zone_id,
            case((ZoneRole.role == "disaster_prevention", 0), else_=1),
            ZoneRole.role,
            Person.name,
        )
    )
    for zone_id, role, name, phone in rows:
        found.setdefault(zone_id, []).append(
            Contact(name, PERSON_ROLE_LABELS.get(role, role), phone, phone_href(phone))
        )
    return found


def acknowledger_names(db: Session, entries: Sequence[str | None]) -> dict[str, str]:
    """Names for the ids in `acknowledged_by` values: person ids and console:<login>."""
    ids = {i.strip() for e in entries if e for i in e.split(",") if i.strip()}
    logins = {i.removeprefix("console:") for i in ids if i.startswith("console:")}
    linked: dict[str, str] = {}
    if logins:
        for name, person_id in db.execute(
            select(User.name, User.person_id).where(User.name.in_(logins))
        ):
            if person_id:
                linked[f"console:{name}"] = person_id
    wanted = (ids - set(linked)) | set(linked.values())
    people = (
        {p.id: p.name for p in db.scalars(select(Person).where(Person.id.in_(wanted)))}
        if wanted
        else {}
    )
    names = {i: people[i] for i in ids if i in people}
    names.update({actor: people[pid] for actor, pid in linked.items() if pid in people})
    return names


def names_of(ids: str | None, names: Mapping[str, str]) -> str | None:
    """`acknowledged_by` (person ids or actors, comma-separated) in people's names."""
    if not ids:
        return None
    return "、".join(actor_words(i.strip(), names.get) for i in ids.split(",") if i.strip())


def place(zone: Zone | None) -> str:
    if zone is None:
        return "（系统）"
    # zone names usually begin with their township (柳林镇锄沟村黄土崩塌)
    return zone.name if zone.name.startswith(zone.township) else f"{zone.township} {zone.name}"


def _numbers(evidence: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in evidence.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _id(event_id: int | None) -> int:
    assert event_id is not None  # the queries above select zone alerts of listed events
    return event_id
