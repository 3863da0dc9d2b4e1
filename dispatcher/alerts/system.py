"""System alerts: conditions of Yujing itself that people must hear about.

A forecast feed that stops answering is a missed warning in the making, so it
is raised like any other alert — to the duty officer and the leader on duty
(per the roster), escalating by the `system` policy of escalation.yaml until
acknowledged — and resolved when the feed answers again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.county import County
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.messages import render_feed
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert, ForecastRun, Notification

FEED_DOWN = "feed_down"


def last_feed_success(session: Session, source: str) -> datetime | None:
    """When the feed last delivered a usable forecast."""
    return session.scalar(
        select(func.max(ForecastRun.finished_at)).where(
            ForecastRun.source == source, ForecastRun.ok.is_(True)
        )
    )


def open_feed_alert(session: Session, source: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(
            Alert.kind == AlertKind.SYSTEM,
            Alert.hazard == FEED_DOWN,
            Alert.rule_id == f"feed:{source}",
            Alert.state.in_(OPEN_ALERT_STATES),
        )
    )


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
) -> list[Notification]:
    """Raise the feed-down alert after two silent poll intervals; resolve it on recovery.

    `watching_since` (the daemon's start) stands in for the last success when
    the feed has never answered. Does not commit.
    """
    last_ok = last_feed_success(session, source)
    stale_since = max(last_ok, watching_since) if last_ok else watching_since
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
        )

    if down and alert is None:
        last_success = last_ok.isoformat() if last_ok else None
        _, notes = open_alert(
            session,
            NewAlert(
                kind=AlertKind.SYSTEM,
                hazard=FEED_DOWN,
                rule_id=f"feed:{source}",
                title="预报数据中断",
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
