"""System alerts: conditions of Yujing itself that people must hear about.

A forecast feed that stops answering is a missed warning in the making, so it
is raised like any other alert — to the duty officer and the leader on duty
(per the roster), escalating by the `system` policy of escalation.yaml until
acknowledged — and resolved when the feed answers again.

The outage is measured from the last usable forecast in the database, not
from the daemon's start, so a daemon that crashes and restarts faster than
the alert's two intervals still raises it. On a database that never had a
usable forecast, the first start recorded (`record_watch_start`, an audit
event) or the first poll attempt stands in for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.county import County
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.feeds.chain import SourceAttempt
from dispatcher.messages import FORECAST_DATA, render_feed
from dispatcher.outbox.rows import QueuedRow
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert, AuditEvent, ForecastRun

FEED_DOWN = "feed_down"
WATCH_STARTED = "feed.watching"  # audit action: the first start watching a feed


def last_feed_success(session: Session, source: str) -> datetime | None:
    """When the feed last delivered a usable forecast."""
    return session.scalar(
        select(func.max(ForecastRun.finished_at)).where(
            ForecastRun.source == source, ForecastRun.ok.is_(True)
        )
    )


def _subject(source: str) -> str:
    return f"feed:{source}"


def first_watched(session: Session, source: str) -> datetime | None:
    """When watching this feed began: the first start recorded or the first poll attempt."""
    started = session.scalar(
        select(func.min(AuditEvent.at)).where(
            AuditEvent.action == WATCH_STARTED, AuditEvent.subject == _subject(source)
        )
    )
    attempted = session.scalar(
        select(func.min(ForecastRun.started_at)).where(ForecastRun.source == source)
    )
    known = [t for t in (started, attempted) if t is not None]
    return min(known) if known else None


def record_watch_start(session: Session, source: str, at: datetime) -> bool:
    """At start-up: persist when watching began, unless the feed's clock already has an anchor
    (a usable forecast, or an earlier start). Returns whether an event was recorded."""
    if last_feed_success(session, source) is not None or first_watched(session, source):
        return False
    audit.record(
        session,
        at=at,
        actor="system",
        action=WATCH_STARTED,
        subject=_subject(source),
        data={"source": source},
    )
    return True


def first_failure_since_success(session: Session, source: str) -> datetime | None:
    """When the source's current run of failed attempts began; None when its last
    attempt succeeded or it was never asked."""
    last_ok_id = session.scalar(
        select(func.max(ForecastRun.id)).where(
            ForecastRun.source == source, ForecastRun.ok.is_(True)
        )
    )
    return session.scalar(
        select(func.min(ForecastRun.started_at)).where(
            ForecastRun.source == source,
            ForecastRun.ok.is_(False),
            ForecastRun.id > (last_ok_id or 0),
        )
    )


def record_source_attempts(
    session: Session, attempts: Sequence[SourceAttempt], started: datetime, finished: datetime
) -> None:
    """One forecast run per source a feed chain asked in a poll (what it served, or why
    not), so each source's health is watched like a single feed's. Does not commit."""
    for attempt in attempts:
        session.add(
            ForecastRun(
                source=attempt.source,
                started_at=started,
                finished_at=finished,
                ok=attempt.ok,
                points=attempt.points,
                hours=attempt.hours,
                variables=list(attempt.served),
                error=attempt.error,
            )
        )


def outage_since(session: Session, source: str, watching_since: datetime) -> datetime:
    """Since when the feed has given nothing usable: the last success, else the first
    start or attempt on record, else `watching_since` (a brand-new database)."""
    last_ok = last_feed_success(session, source)
    if last_ok is not None:
        return last_ok
    first = first_watched(session, source)
    return min(first, watching_since) if first is not None else watching_since


def open_system_alert(session: Session, hazard: str, rule_id: str) -> Alert | None:
    """The open system alert of this condition (`hazard`) and subject (`rule_id`), if any."""
    return session.scalar(
        select(Alert).where(
            Alert.kind == AlertKind.SYSTEM,
            Alert.hazard == hazard,
            Alert.rule_id == rule_id,
            Alert.state.in_(OPEN_ALERT_STATES),
        )
    )


def open_feed_alert(session: Session, source: str) -> Alert | None:
    return open_system_alert(session, FEED_DOWN, _subject(source))


def watch_feed(
    session: Session,
    *,
    now: datetime,
    source: str,
    watching_since: datetime,
    interval: timedelta,
    county: County,
    channel: str,
    escalation: Escalation | None = None,
    member: bool = False,
    data: str = FORECAST_DATA,
) -> list[QueuedRow]:
    """Raise the feed-down alert after two silent poll intervals; resolve it on recovery.

    `data` names what the feed brings, in the messages (forecasts by default;
    the official-warning sources say `OFFICIAL_DATA`).

    The outage runs from the last success on record, whatever restarts came
    since (`outage_since`); `watching_since` (the daemon's start) counts only
    on a database with no start or attempt recorded. Does not commit.

    A `member` of a feed chain is asked only when needed, so silence is no sign
    of trouble: it is down when it has failed every time it was asked for two
    intervals (from the first failure since its last success).
    """
    last_ok = last_feed_success(session, source)
    if member:
        failing_since = first_failure_since_success(session, source)
        stale_since = failing_since or now
        down = failing_since is not None and now - failing_since >= 2 * interval
    else:
        stale_since = outage_since(session, source, watching_since)
        down = now - stale_since >= 2 * interval
    alert = open_feed_alert(session, source)
    esc = on_channel(escalation, county, channel)

    def words(kind: str, since: datetime, code: str) -> str:
        return render_feed(
            kind,
            sender=county.sender,
            source=source,
            since=since,
            code=code,
            timezone=county.timezone,
            data=data,
        )

    if down and alert is None:
        last_success = last_ok.isoformat() if last_ok else None
        _, notes = open_alert(
            session,
            NewAlert(
                kind=AlertKind.SYSTEM,
                hazard=FEED_DOWN,
                rule_id=_subject(source),
                title="预报数据中断" if data == FORECAST_DATA else f"{data}中断",
                level="orange",
                onset=stale_since,
                evidence={"last_success": last_success},
            ),
            escalation=esc,
            text=lambda opened: AlertText(
                words("feed_down", stale_since, opened.code), opened.title
            ),
            data={"hazard": FEED_DOWN, "source": source, "last_success": last_success},
            now=now,
        )
        return notes
    if not down and alert is not None and last_ok is not None and last_ok > alert.opened_at:
        return close_alert(
            session,
            alert,
            escalation=esc,
            body=words("feed_restored", last_ok, alert.code),
            data={"hazard": FEED_DOWN, "source": source, "last_success": last_ok.isoformat()},
            now=now,
        )
    return []


@dataclass(frozen=True)
class FeedAttempts:
    """The feed's recent polls as /healthz shows them."""

    last_at: datetime | None  # when the last attempt finished
    last_ok: bool | None
    last_error: str | None
    consecutive_failures: int  # failed attempts since the last success


def feed_attempts(session: Session, source: str) -> FeedAttempts:
    last = session.scalar(
        select(ForecastRun)
        .where(ForecastRun.source == source)
        .order_by(ForecastRun.id.desc())
        .limit(1)
    )
    last_ok_id = session.scalar(
        select(func.max(ForecastRun.id)).where(
            ForecastRun.source == source, ForecastRun.ok.is_(True)
        )
    )
    failures = session.scalar(
        select(func.count())
        .select_from(ForecastRun)
        .where(
            ForecastRun.source == source,
            ForecastRun.ok.is_(False),
            ForecastRun.id > (last_ok_id or 0),
        )
    )
    return FeedAttempts(
        last_at=last.finished_at if last else None,
        last_ok=last.ok if last else None,
        last_error=last.error if last else None,
        consecutive_failures=failures or 0,
    )
