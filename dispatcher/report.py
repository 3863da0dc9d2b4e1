"""The information report (信息报送) a superior reads: one event on one or two A4 pages.

For every event (an alert of kind event) open at any time in the period, the
printable report gives 报送单位, 签发人 and 联系电话 (county.yaml `report:`),
the period in county time, the townships and zones affected with the
households and people threatened, the event's level changes, who was told on
which channel and when (counted per role and channel, bureau staff by name),
the acknowledgements and overdue zones, the measures noted, and a timeline
scaled to the event. Phone numbers of people are masked (138****5678).

The full per-message detail stays available: `render_csv` (one row per
message, full numbers: for the office's own records, not for passing on) or
the masked appendix of `render_html(…, appendix=True)`. Alerts that belong to
no event (system conditions, warnings from before events existed) are listed
briefly after the events.

`build_report` reads the database once (`reporting.detail`; nothing is
written); `render_html` makes a self-contained page (inline CSS and SVG, no
script, nothing fetched) with print CSS: A4, a page break before each event.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.audit import verify
from dispatcher.county import County, ReportConfig
from dispatcher.labels import (
    ACK_METHOD_LABELS,
    NOTIFICATION_STATUS_LABELS,
    TRANSITION_LABELS,
    channel_label,
    level_label,
    severity,
)
from dispatcher.reporting.detail import Episode, load_detail
from dispatcher.reporting.events import EventSection, summarise
from dispatcher.reporting.privacy import mask_phone, scrub
from dispatcher.reporting.timeline import LEVEL_COLOUR, event_timeline
from dispatcher.states import AlertKind
from dispatcher.storage.models import AuditEvent

__all__ = [
    "CSV_COLUMNS",
    "Report",
    "build_report",
    "csv_rows",
    "render_csv",
    "render_html",
]

CSV_COLUMNS: Final = (
    "event",
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


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    timezone: str
    generated_at: datetime
    title: str  # the county's name
    office: ReportConfig | None  # 报送单位, 签发人, 联系电话
    drill: bool  # a drill's report: marked 演练 on every page
    events: tuple[EventSection, ...]
    others: tuple[Episode, ...]  # episodes of no event (system conditions, older warnings)
    episodes: tuple[Episode, ...]  # every episode, events' own included (CSV, appendix)
    phones: frozenset[str]
    audit_events: int
    audit_problems: tuple[str, ...]
    audit_last: tuple[int, str] | None  # (event id, hash)

    def local(self, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(ZoneInfo(self.timezone)).strftime(fmt) if moment else ""

    def only(self, code: str) -> Report:
        """The report of one event (the others left out)."""
        return replace(self, events=tuple(e for e in self.events if e.code == code), others=())


def build_report(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    timezone: str,
    now: datetime,
    county: County | None = None,
    title: str = "",
    drill: bool = False,
) -> Report:
    """Everything the report shows for the events and warnings open at any time in [start, end)."""
    if end <= start:
        raise ValueError("the report period must end after it starts (--to after --from)")
    detail = load_detail(session, start, end)
    threatened = {
        z.id: (z.threatened.households or 0, z.threatened.people or 0)
        for z in (county.zones if county is not None else [])
        if z.threatened is not None
    }
    events = {
        e.parts[0].id: e
        for e in detail.episodes
        if e.kind == AlertKind.EVENT
        and e.opened_at < end
        and (e.closed_at is None or e.closed_at >= start)
    }
    zone_episodes: dict[int, list[Episode]] = defaultdict(list)
    others = []
    for e in detail.episodes:
        if e.kind == AlertKind.EVENT:
            continue
        if e.event_id in events:
            zone_episodes[e.event_id].append(e)
        elif e.opened_at < end and (e.closed_at is None or e.closed_at >= start):
            others.append(e)
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
        title=title or (county.name if county is not None else ""),
        office=county.report if county is not None else None,
        drill=drill,
        events=tuple(
            summarise(event, zone_episodes[event_id], threatened)
            for event_id, event in events.items()
        ),
        others=tuple(others),
        episodes=detail.episodes,
        phones=detail.phones,
        audit_events=total,
        audit_problems=tuple(problems),
        audit_last=(last.id, last.hash) if last is not None else None,
    )


# --- rendering ---------------------------------------------------------------------------------


def render_html(report: Report, *, appendix: bool = False) -> str:
    """The report as one self-contained Chinese HTML page, phone numbers masked;
    with `appendix`, every message of each event follows it (masked too)."""
    env = Environment(
        loader=PackageLoader("dispatcher.web", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["mask"] = mask_phone
    page = env.get_template("report.html").render(
        report=report,
        appendix=appendix,
        timeline=lambda e: event_timeline(
            e, until=min(report.end, report.generated_at), timezone=report.timezone
        ),
        others=_others(report.others),
        duration=_duration,
        level_zh=level_label,
        level_colour=LEVEL_COLOUR,
        status_zh=NOTIFICATION_STATUS_LABELS,
        method_zh=ACK_METHOD_LABELS,
        transition_zh=_transition,
        channel_zh=channel_label,
    )
    return scrub(page, report.phones)


def _others(episodes: Iterable[Episode]) -> list[tuple[str, str, int, int]]:
    """(hazard name, level word, warnings, of them acknowledged), most severe first."""
    count: Counter[tuple[str, str]] = Counter()
    acked: Counter[tuple[str, str]] = Counter()
    for e in episodes:
        key = (e.hazard_name or e.hazard, max(e.levels, key=severity))
        count[key] += 1
        acked[key] += 0 if e.unacknowledged else 1
    return [
        (hazard, level_label(level), n, acked[(hazard, level)])
        for (hazard, level), n in sorted(count.items(), key=lambda kv: -severity(kv[0][1]))
    ]


def _duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return ""
    minutes = max(int((end - start).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    words = [f"{days}天"] if days else []
    words += [f"{hours}小时"] if hours else []
    words += [f"{minutes}分钟"] if minutes and not days else []
    return "".join(words) or "不到1分钟"


def _transition(transition: str) -> str:
    """A message's transition in words: 发布, 升级, 超时上报, 新增隐患点 …"""
    head = transition.split(".")[0]
    if transition in TRANSITION_LABELS:
        return TRANSITION_LABELS[transition]
    if head == "zones":
        return "新增隐患点"
    if head.startswith("esc"):
        return "逐级通知"
    return TRANSITION_LABELS.get(head, transition)


def render_csv(report: Report) -> str:
    """One row per message with its alert's columns (see CSV_COLUMNS); times local ISO 8601.

    Full phone numbers: the CSV is the office's own record. Acknowledgements by
    people who were sent nothing about the alert, and alerts nobody was told
    about, get a row of their own with the message columns empty.
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
    event_code = {e.parts[0].id: e.code for e in report.episodes if e.kind == AlertKind.EVENT}

    def iso(moment: datetime | None) -> str:
        return moment.astimezone(tz).isoformat(timespec="seconds") if moment else ""

    for episode in report.episodes:
        for part in episode.parts:
            alert_columns = {
                "event": part.code
                if episode.kind == AlertKind.EVENT
                else event_code.get(part.event_id or -1, ""),
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
