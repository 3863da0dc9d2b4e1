# Long module: one report, read in one pass, drawn as a timeline, rendered as HTML and CSV
"""The information report (信息报送) for a shift or a holiday: who knew what, and when.

For every warning open at any time in the period — the whole episode, with the
alerts it superseded and those that superseded it — the report lists:

- the alert's transitions (issued, raised, lowered, resolved) and its levels;
- every message: to whom (name, role), on which channel, when it left, how it
  ended (status, attempts, provider receipts);
- every acknowledgement: who, when, how (SMS, voice, link, console, CLI), note;
- overdue items: acknowledgement deadlines missed (`alert.overdue` in the audit
  log, 迟报);
- and the audit chain's state with its latest hash, so a later copy of the log
  can be checked against this report.

`build_report` reads the database (one read-only pass; nothing is written);
`render_html` makes a self-contained Chinese page (inline CSS and SVG
timelines, no script, no CDN); `render_csv` makes one row per message with its
alert's columns, plus a row for each acknowledgement by someone who got no
message about that alert, and one for an alert nobody was told about — so
nothing goes missing from a spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.audit import verify
from dispatcher.county import ROLE_LABELS
from dispatcher.labels import (
    ACK_METHOD_LABELS,
    AUDIT_ACTION_LABELS,
    LEVEL_LABELS,
    NOTIFICATION_STATUS_LABELS,
    PERSON_ROLE_LABELS,
    TRANSITION_LABELS,
    alert_state_label,
    channel_label,
    level_label,
    severity,
)
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    Notification,
    Person,
    Receipt,
    Zone,
    ZoneRole,
)

__all__ = [
    "CSV_COLUMNS",
    "AckLine",
    "AlertPart",
    "Delivery",
    "Episode",
    "Report",
    "Timeline",
    "build_report",
    "render_csv",
    "render_html",
]

LEVEL_COLOUR: Final = {
    "blue": "#1f6fd1",
    "yellow": "#d9a400",
    "orange": "#e8710a",
    "red": "#c9252c",
}
_TRANSITIONS: Final = ("alert.new", "alert.upgraded", "alert.downgraded", "alert.resolved")
_AUDITED: Final = (*_TRANSITIONS, "alert.acknowledged", "alert.overdue")
# provider receipts (Twilio's words, lower-cased), not our statuses: "read", "canceled"
_GOOD_RECEIPTS: Final = frozenset({"delivered", "read"})
_BAD_RECEIPTS: Final = frozenset({"undelivered", "failed", "canceled"})
_CHUNK: Final = 500  # ids per IN (…) list

CSV_COLUMNS: Final = (
    "episode",
    "alert_code",
    "alert_id",
    "kind",
    "zone_id",
    "zone_name",
    "township",
    "hazard",
    "hazard_name",
    "level",
    "level_zh",
    "alert_state",
    "supersedes",
    "opened_at",
    "closed_at",
    "acknowledged_at",
    "acknowledged_by",
    "overdue_at",
    "notification_id",
    "transition",
    "person_id",
    "recipient_name",
    "role",
    "channel",
    "address",
    "status",
    "attempts",
    "created_at",
    "sent_at",
    "finished_at",
    "provider_id",
    "error_code",
    "receipts",
    "recipient_ack_at",
    "recipient_ack_method",
    "recipient_ack_note",
)


# --- the report's data ------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptLine:
    at: datetime
    status: str
    error_code: str | None


@dataclass(frozen=True)
class Delivery:
    """One message to one person on one channel, and how it ended."""

    id: int
    transition: str
    person_id: str | None
    name: str
    role: str
    channel: str
    address: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    provider_id: str | None
    error_code: str | None
    last_error: str | None
    receipts: tuple[ReceiptLine, ...]


@dataclass(frozen=True)
class AckLine:
    """One acknowledgement: who, when, how, and the note."""

    at: datetime
    person_id: str | None
    name: str
    actor: str
    method: str
    role: str
    note: str | None


@dataclass(frozen=True)
class Mark:
    """Something that happened to an alert, as placed on its timeline."""

    at: datetime
    lane: str  # alert | send | receipt | ack
    tone: str  # a level key, or good | bad | neutral | overdue
    label: str


@dataclass(frozen=True)
class AlertPart:
    """One alert row of an episode (a level change starts a new part)."""

    id: int
    code: str
    level: str
    state: str
    opened_at: datetime
    closed_at: datetime | None
    onset: datetime | None
    until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    supersedes_code: str | None
    overdue_at: tuple[datetime, ...]
    deliveries: tuple[Delivery, ...]
    acks: tuple[AckLine, ...]
    marks: tuple[Mark, ...]

    @property
    def level_zh(self) -> str:
        return level_label(self.level)

    @property
    def state_zh(self) -> str:
        return alert_state_label(self.state)


@dataclass(frozen=True)
class Episode:
    """One warning at one zone, from first issue to resolution, across level changes."""

    kind: str
    zone_id: str | None
    zone_name: str
    township: str
    hazard: str
    hazard_name: str
    parts: tuple[AlertPart, ...]

    @property
    def code(self) -> str:
        """The episode's first code (CSV `episode` column)."""
        return self.parts[0].code

    @property
    def opened_at(self) -> datetime:
        return self.parts[0].opened_at

    @property
    def levels(self) -> list[str]:
        return [p.level for p in self.parts]

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for p in self.parts for d in p.deliveries]

    @property
    def acks(self) -> list[AckLine]:
        return [a for p in self.parts for a in p.acks]

    @property
    def overdue(self) -> bool:
        return any(p.overdue_at for p in self.parts)

    @property
    def unacknowledged(self) -> bool:
        """Some part of it was never acknowledged (a missed report unless resolved quickly)."""
        return any(p.acknowledged_at is None and not p.acks for p in self.parts)


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    timezone: str
    generated_at: datetime
    title: str
    episodes: tuple[Episode, ...]
    audit_events: int
    audit_problems: tuple[str, ...]
    audit_last: tuple[int, str] | None  # (event id, hash)

    @property
    def summary(self) -> dict[str, Any]:
        """Counts for the report's first table: warnings, messages, acks, overdue."""
        return _summary(self)

    def local(self, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(ZoneInfo(self.timezone)).strftime(fmt) if moment else ""


# --- reading the database ------------------------------------------------------------


def build_report(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    timezone: str,
    now: datetime,
    title: str = "",
) -> Report:
    """Everything the report shows for the warnings open at any time in [start, end)."""
    if end <= start:
        raise ValueError("the report period must end after it starts (--to after --from)")
    alerts = _episode_alerts(session, start, end)
    ids = list(alerts)
    notes = _in(session, Notification, Notification.alert_id, ids, Notification.id)
    receipts = _in(
        session, Receipt, Receipt.notification_id, [n.id for n in notes], Receipt.received_at
    )
    acks = _in(session, Acknowledgement, Acknowledgement.alert_id, ids, Acknowledgement.at)
    events = [
        e
        for chunk in _chunks([f"alert:{i}" for i in ids])
        for e in session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(_AUDITED), AuditEvent.subject.in_(chunk))
            .order_by(AuditEvent.id)
        )
    ]
    zone_ids = sorted({a.zone_id for a in alerts.values() if a.zone_id})
    zones = {z.id: z for z in _in(session, Zone, Zone.id, zone_ids, Zone.id)}
    roles: dict[tuple[str, str], list[str]] = defaultdict(list)
    for zr in _in(session, ZoneRole, ZoneRole.zone_id, zone_ids, ZoneRole.person_id):
        roles[(zr.zone_id, zr.person_id)].append(zr.role)
    person_ids = sorted(
        {n.person_id for n in notes if n.person_id}
        | {a.person_id for a in acks if a.person_id}
        | {p for a in alerts.values() for p in _split(a.acknowledged_by)}
    )
    people = {p.id: p for p in _in(session, Person, Person.id, person_ids, Person.id)}

    def role_of(alert: Alert, person_id: str | None) -> str:
        if person_id is None:
            return ""
        held = [
            PERSON_ROLE_LABELS[r]
            for r in ROLE_LABELS
            if r in roles.get((alert.zone_id or "", person_id), [])
        ]
        person = people.get(person_id)
        if person is not None and person.duty_role:
            held.append(PERSON_ROLE_LABELS.get(person.duty_role, person.duty_role))
        return "、".join(held)

    receipts_of: dict[int, list[Receipt]] = defaultdict(list)
    for r in receipts:
        if r.notification_id is not None:
            receipts_of[r.notification_id].append(r)
    notes_of: dict[int, list[Notification]] = defaultdict(list)
    for n in notes:
        if n.alert_id is not None:
            notes_of[n.alert_id].append(n)
    acks_of: dict[int, list[Acknowledgement]] = defaultdict(list)
    for a in acks:
        acks_of[a.alert_id].append(a)
    events_of: dict[int, list[AuditEvent]] = defaultdict(list)
    for e in events:
        events_of[int(e.subject.removeprefix("alert:"))].append(e)

    parts: dict[int, AlertPart] = {}
    for alert in alerts.values():
        deliveries = tuple(
            _delivery(n, receipts_of[n.id], people, role_of(alert, n.person_id))
            for n in notes_of[alert.id]
        )
        ack_lines = tuple(
            AckLine(
                at=a.at,
                person_id=a.person_id,
                name=_name(people, a.person_id, a.actor),
                actor=a.actor,
                method=a.method,
                role=PERSON_ROLE_LABELS.get(a.role or "", a.role or "")
                or role_of(alert, a.person_id),
                note=a.note,
            )
            for a in acks_of[alert.id]
        )
        audited = events_of[alert.id]
        overdue = tuple(e.at for e in audited if e.action == "alert.overdue")
        previous = alerts.get(alert.supersedes_id) if alert.supersedes_id else None
        parts[alert.id] = AlertPart(
            id=alert.id,
            code=alert.code,
            level=alert.level,
            state=alert.state,
            opened_at=alert.opened_at,
            closed_at=alert.closed_at,
            onset=alert.onset,
            until=alert.until,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by="、".join(_name(people, p, p) for p in _split(alert.acknowledged_by))
            or None,
            supersedes_code=previous.code if previous is not None else None,
            overdue_at=overdue,
            deliveries=deliveries,
            acks=ack_lines,
            marks=_marks(alert, audited, deliveries, ack_lines),
        )

    episodes = []
    for chain in _chains(alerts):
        first = alerts[chain[0]]
        zone = zones.get(first.zone_id or "")
        episodes.append(
            Episode(
                kind=first.kind,
                zone_id=first.zone_id,
                zone_name=zone.name
                if zone is not None
                else ("系统" if first.zone_id is None else first.zone_id),
                township=zone.township if zone is not None else "",
                hazard=first.hazard,
                hazard_name=first.title or first.hazard,
                parts=tuple(parts[i] for i in chain),
            )
        )
    episodes.sort(key=lambda e: (e.opened_at, e.zone_id or "", e.hazard))

    problems = verify(session)
    last = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return Report(
        start=start,
        end=end,
        timezone=timezone,
        generated_at=now,
        title=title,
        episodes=tuple(episodes),
        audit_events=total,
        audit_problems=tuple(problems),
        audit_last=(last.id, last.hash) if last is not None else None,
    )


def _episode_alerts(session: Session, start: datetime, end: datetime) -> dict[int, Alert]:
    """Alerts open at any time in [start, end), with every alert of their episodes."""
    found = {
        a.id: a
        for a in session.scalars(
            select(Alert).where(
                Alert.opened_at < end, or_(Alert.closed_at.is_(None), Alert.closed_at >= start)
            )
        )
    }
    frontier = set(found)
    while frontier:
        back = {a.supersedes_id for a in (found[i] for i in frontier) if a.supersedes_id}
        back -= set(found)
        new = _in(session, Alert, Alert.id, sorted(back), Alert.id)
        new += [
            a
            for a in _in(session, Alert, Alert.supersedes_id, sorted(frontier), Alert.id)
            if a.id not in found
        ]
        frontier = {a.id for a in new}
        found.update({a.id: a for a in new})
    return found


def _chains(alerts: dict[int, Alert]) -> list[list[int]]:
    """Alert ids grouped by episode, each oldest first (follows `supersedes_id`)."""
    successors: dict[int, list[int]] = defaultdict(list)
    for a in alerts.values():
        if a.supersedes_id in alerts:
            successors[a.supersedes_id].append(a.id)
    chains = []
    for a in sorted(alerts.values(), key=lambda a: a.id):
        if a.supersedes_id in alerts:
            continue  # not a root
        chain, todo = [], [a.id]
        while todo:
            current = todo.pop(0)
            chain.append(current)
            todo.extend(sorted(successors[current]))
        chains.append(chain)
    return chains


def _delivery(
    n: Notification, receipts: Sequence[Receipt], people: dict[str, Person], role: str
) -> Delivery:
    return Delivery(
        id=n.id,
        transition=n.transition,
        person_id=n.person_id,
        name=n.recipient_name or _name(people, n.person_id, n.address),
        role=role,
        channel=n.channel,
        address=n.address,
        status=n.status,
        attempts=n.attempts,
        created_at=n.created_at,
        sent_at=n.sent_at,
        finished_at=n.finished_at,
        provider_id=n.provider_id,
        error_code=n.error_code,
        last_error=n.last_error,
        receipts=tuple(ReceiptLine(r.received_at, r.status, r.error_code) for r in receipts),
    )


def _split(acknowledged_by: str | None) -> list[str]:
    """`Alert.acknowledged_by` is a comma-separated list of person ids (or actors)."""
    return [p.strip() for p in (acknowledged_by or "").split(",") if p.strip()]


def _name(people: dict[str, Person], person_id: str | None, fallback: str) -> str:
    person = people.get(person_id or "")
    return person.name if person is not None else fallback


def _marks(
    alert: Alert,
    audited: Sequence[AuditEvent],
    deliveries: Sequence[Delivery],
    acks: Sequence[AckLine],
) -> tuple[Mark, ...]:
    marks = []
    for e in audited:
        if e.action in _TRANSITIONS:
            level = str(e.data.get("level") or alert.level)
            transition = TRANSITION_LABELS[e.action.removeprefix("alert.")]
            label = f"{transition} {level_label(level)} {alert.code}"
            marks.append(Mark(e.at, "alert", level, label))
        elif e.action == "alert.overdue":
            marks.append(
                Mark(e.at, "alert", "overdue", f"{AUDIT_ACTION_LABELS[e.action]}{alert.code}")
            )
        elif e.action == "alert.acknowledged":
            marks.append(
                Mark(e.at, "alert", "good", f"{AUDIT_ACTION_LABELS[e.action]} {alert.code}")
            )
    if not any(e.action == "alert.new" or e.action in _TRANSITIONS for e in audited):
        issued = TRANSITION_LABELS[TransitionKind.NEW.value]
        marks.append(Mark(alert.opened_at, "alert", alert.level, f"{issued} {alert.code}"))
    for d in deliveries:
        who = f"{d.name}（{channel_label(d.channel)}）"
        if d.sent_at is not None:
            marks.append(Mark(d.sent_at, "send", "neutral", f"发送 {who}"))
        elif d.status == NotificationStatus.FAILED and d.finished_at is not None:
            failed = NOTIFICATION_STATUS_LABELS[NotificationStatus.FAILED]
            marks.append(Mark(d.finished_at, "send", "bad", f"{failed} {who}"))
        for r in d.receipts:
            status = r.status.lower()
            tone = (
                "good"
                if status in _GOOD_RECEIPTS
                else "bad"
                if status in _BAD_RECEIPTS
                else "neutral"
            )
            code = f" {r.error_code}" if r.error_code else ""
            marks.append(Mark(r.at, "receipt", tone, f"回执 {r.status}{code} {who}"))
    for a in acks:
        how = ACK_METHOD_LABELS.get(a.method, a.method)
        note = f"：{a.note}" if a.note else ""
        marks.append(Mark(a.at, "ack", "good", f"{a.name} {how}确认{note}"))
    return tuple(sorted(marks, key=lambda m: m.at))


def _summary(report: Report) -> dict[str, Any]:
    episodes = report.episodes
    deliveries = [d for e in episodes for d in e.deliveries]
    by_kind = Counter((e.hazard_name, level_label(max(e.levels, key=severity))) for e in episodes)
    return {
        "warnings": len(episodes),
        "alerts": sum(len(e.parts) for e in episodes),
        "by_hazard_level": sorted(by_kind.items()),
        "messages": len(deliveries),
        "people": len({d.person_id or d.address for d in deliveries}),
        "by_status": sorted(
            Counter(NOTIFICATION_STATUS_LABELS.get(d.status, d.status) for d in deliveries).items()
        ),
        "by_channel": sorted(Counter(channel_label(d.channel) for d in deliveries).items()),
        "acknowledgements": sum(len(e.acks) for e in episodes),
        "acknowledged": sum(1 for e in episodes if not e.unacknowledged),
        "unacknowledged": [e for e in episodes if e.unacknowledged],
        "overdue": [e for e in episodes if e.overdue],
    }


_T = TypeVar("_T")


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _in(
    session: Session, model: type[_T], column: Any, values: Sequence[Any], order: Any
) -> list[_T]:
    rows: list[_T] = []
    for chunk in _chunks(values):
        rows.extend(session.scalars(select(model).where(column.in_(chunk)).order_by(order)))
    return rows


# --- the timeline chart -------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """An SVG timeline's geometry, ready for the template (pixels)."""

    width: int
    height: int
    lanes: list[tuple[int, str]]  # (y of the lane's middle, label)
    bars: list[dict[str, Any]]  # x, width, y, height, colour, title
    marks: list[dict[str, Any]]  # x, y, colour, shape, title, count
    ticks: list[tuple[float, str]]  # (x, label)
    left: int
    right: int


_LANES: Final = (("alert", "预警"), ("send", "发送"), ("receipt", "回执"), ("ack", "确认"))
_TONE_COLOUR: Final = {
    "good": "#1a7f37",
    "bad": "#c9252c",
    "neutral": "#5b6670",
    "overdue": "#c9252c",
}
_TICK_STEPS: Final = tuple(
    timedelta(minutes=m)
    for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 4320, 10080)
)


def timeline(episode: Episode, report: Report, width: int = 960) -> Timeline:
    """Place the episode's transitions, sends, receipts and acks on one time axis."""
    tz = ZoneInfo(report.timezone)
    marks = sorted((m for p in episode.parts for m in p.marks), key=lambda m: m.at)
    ends = [p.closed_at or min(report.end, report.generated_at) for p in episode.parts]
    times = [m.at for m in marks] + [p.opened_at for p in episode.parts] + ends
    t0, t1 = min(times), max(times)
    if t1 - t0 < timedelta(minutes=10):
        t1 = t0 + timedelta(minutes=10)
    left, right, top, lane_h = 56, width - 16, 26, 30
    span = (t1 - t0).total_seconds()

    def x(moment: datetime) -> float:
        return round(left + (right - left) * (moment - t0).total_seconds() / span, 1)

    lane_y = {key: top + lane_h * i + lane_h // 2 for i, (key, _) in enumerate(_LANES)}
    bars = []
    for part, end in zip(episode.parts, ends, strict=True):
        x0, x1 = x(part.opened_at), x(max(end, part.opened_at))
        bars.append(
            {
                "x": x0,
                "width": max(round(x1 - x0, 1), 2),
                "y": lane_y["alert"] - 7,
                "height": 14,
                "colour": LEVEL_COLOUR.get(part.level, "#888"),
                "title": f"{part.code} {part.level_zh} {report.local(part.opened_at)}"
                f" — {report.local(part.closed_at) or '至今'}",
            }
        )
    # marks that fall on the same pixel are drawn once, with a count and every label
    grouped: dict[tuple[str, float, str], list[Mark]] = defaultdict(list)
    for m in marks:
        grouped[(m.lane, round(x(m.at) / 3) * 3, m.tone)].append(m)
    placed = []
    for (lane, px, tone), group in grouped.items():
        colour = LEVEL_COLOUR.get(tone) or _TONE_COLOUR[tone]
        shape = "triangle" if tone == "overdue" else ("diamond" if lane == "alert" else "circle")
        labels = [f"{m.at.astimezone(tz):%m-%d %H:%M} {m.label}" for m in group]
        placed.append(
            {
                "x": px,
                "y": lane_y[lane],
                "colour": colour,
                "shape": shape,
                "title": "\n".join(
                    labels[:12] + ([f"…共{len(labels)}项"] if len(labels) > 12 else [])
                ),
                "count": len(group),
            }
        )
    step = next((s for s in _TICK_STEPS if span / s.total_seconds() <= 8), _TICK_STEPS[-1])
    local0 = t0.astimezone(tz)
    first = local0.replace(second=0, microsecond=0, minute=0)
    if step >= timedelta(days=1):
        first = first.replace(hour=0)
    tick = first
    ticks = []
    previous_day = None
    while tick <= t1.astimezone(tz):
        if tick >= local0:
            day = (tick.month, tick.day)
            label = (
                f"{tick:%H:%M}" if day == previous_day else f"{tick.month}/{tick.day} {tick:%H:%M}"
            )
            ticks.append((x(tick), label))
            previous_day = day
        tick += step
    height = top + lane_h * len(_LANES) + 22
    return Timeline(
        width=width,
        height=height,
        lanes=[(lane_y[key], label) for key, label in _LANES],
        bars=bars,
        marks=placed,
        ticks=ticks,
        left=left,
        right=right,
    )


# --- rendering ---------------------------------------------------------------------------------


def render_html(report: Report) -> str:
    """The report as one self-contained Chinese HTML page."""
    env = Environment(
        loader=PackageLoader("dispatcher.web", "templates"),
        autoescape=select_autoescape(default=True),
    )
    return env.get_template("report.html").render(
        report=report,
        timeline=lambda e: timeline(e, report),
        level_zh=LEVEL_LABELS,
        status_zh=NOTIFICATION_STATUS_LABELS,
        method_zh=ACK_METHOD_LABELS,
    )


def render_csv(report: Report) -> str:
    """One row per message with its alert's columns (see CSV_COLUMNS); times local ISO 8601.

    Acknowledgements by people who were sent nothing about the alert, and
    alerts nobody was told about, get a row of their own with the message
    columns empty.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in csv_rows(report):
        writer.writerow([row[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def csv_rows(report: Report) -> Iterable[dict[str, Any]]:
    """The CSV's rows as dicts keyed by CSV_COLUMNS."""
    tz = ZoneInfo(report.timezone)

    def iso(moment: datetime | None) -> str:
        return moment.astimezone(tz).isoformat(timespec="seconds") if moment else ""

    for episode in report.episodes:
        for part in episode.parts:
            alert_columns = {
                "episode": episode.code,
                "alert_code": part.code,
                "alert_id": part.id,
                "kind": episode.kind,
                "zone_id": episode.zone_id or "",
                "zone_name": episode.zone_name,
                "township": episode.township,
                "hazard": episode.hazard,
                "hazard_name": episode.hazard_name,
                "level": part.level,
                "level_zh": part.level_zh,
                "alert_state": part.state,
                "supersedes": part.supersedes_code or "",
                "opened_at": iso(part.opened_at),
                "closed_at": iso(part.closed_at),
                "acknowledged_at": iso(part.acknowledged_at),
                "acknowledged_by": part.acknowledged_by or "",
                "overdue_at": ";".join(iso(t) for t in part.overdue_at),
            }
            acks = {a.person_id: a for a in reversed(part.acks) if a.person_id}
            blank = {c: "" for c in CSV_COLUMNS if c not in alert_columns}
            if not part.deliveries and not part.acks:
                yield {**alert_columns, **blank}
            told = {d.person_id for d in part.deliveries}
            for ack in part.acks:
                if ack.person_id is None or ack.person_id not in told:
                    # acknowledged without a message of their own (a duty officer on the console)
                    yield {
                        **alert_columns,
                        **blank,
                        "person_id": ack.person_id or "",
                        "recipient_name": ack.name,
                        "role": ack.role,
                        "recipient_ack_at": iso(ack.at),
                        "recipient_ack_method": ack.method,
                        "recipient_ack_note": ack.note or "",
                    }
            for d in part.deliveries:
                mine = acks.get(d.person_id) if d.person_id else None
                yield {
                    **alert_columns,
                    "notification_id": d.id,
                    "transition": d.transition,
                    "person_id": d.person_id or "",
                    "recipient_name": d.name,
                    "role": d.role,
                    "channel": d.channel,
                    "address": d.address,
                    "status": d.status,
                    "attempts": d.attempts,
                    "created_at": iso(d.created_at),
                    "sent_at": iso(d.sent_at),
                    "finished_at": iso(d.finished_at),
                    "provider_id": d.provider_id or "",
                    "error_code": d.error_code or "",
                    "receipts": ";".join(
                        f"{r.status}{'(' + r.error_code + ')' if r.error_code else ''}@{iso(r.at)}"
                        for r in d.receipts
                    ),
                    "recipient_ack_at": iso(mine.at) if mine else "",
                    "recipient_ack_method": mine.method if mine else "",
                    "recipient_ack_note": (mine.note or "") if mine else "",
                }
