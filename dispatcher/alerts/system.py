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

from dispatcher import audit
from dispatcher.alerts.lifecycle import OPEN_STATES, new_code
from dispatcher.county import County
from dispatcher.escalation import AlertText, Escalation
from dispatcher.messages import render_feed
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
            Alert.kind == "system",
            Alert.hazard == FEED_DOWN,
            Alert.rule_id == f"feed:{source}",
            Alert.state.in_(OPEN_STATES),
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
    if down and alert is None:
        alert = Alert(
            code=new_code(session),
            kind="system",
            zone_id=None,
            hazard=FEED_DOWN,
            rule_id=f"feed:{source}",
            title="预报数据中断",
            level="orange",
            state="firing",
            onset=stale_since,
            until=None,
            evidence={"last_success": last_ok.isoformat() if last_ok else None},
            opened_at=now,
            updated_at=now,
        )
        session.add(alert)
        session.flush()
        kind = "feed_down"
        audit.record(
            session,
            at=now,
            actor="system",
            action="alert.new",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "hazard": FEED_DOWN,
                "source": source,
                "last_success": alert.evidence["last_success"],
            },
        )
    elif not down and alert is not None and last_ok is not None and last_ok > alert.opened_at:
        alert.state = "resolved"
        alert.closed_at = now
        alert.updated_at = now
        kind = "feed_restored"
        stale_since = last_ok
        audit.record(
            session,
            at=now,
            actor="system",
            action="alert.resolved",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "hazard": FEED_DOWN,
                "source": source,
                "last_success": last_ok.isoformat(),
            },
        )
    else:
        return []
    body = render_feed(
        kind,
        sender=county.sender,
        source=source,
        since=stale_since,
        code=alert.code,
        timezone=county.timezone,
    )
    esc = escalation.with_channel(channel) if escalation else Escalation.plain(county, channel)
    if kind == "feed_down":
        return esc.start(
            session, alert, transition="new", text=AlertText(body, alert.title), now=now
        )
    return esc.close(session, alert, transition="resolved", body=body, now=now)
