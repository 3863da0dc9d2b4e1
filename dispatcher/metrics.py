"""Prometheus metrics: what `/metrics` exports (every family is listed in docs/monitoring.md).

Two kinds of families:

- `Metrics`: counters and histograms observed in this process where things
  happen — a forecast poll (`Pipeline.poll`), a send (`DeliveryWorker`), a
  rules reload (`RuleWatch`). One instance per runtime, on its own
  `CollectorRegistry` (never the global one: tests build several runtimes and
  apps in one process);
- `DatabaseCollector`: the state in the database, read at scrape time in one
  short read-only transaction of a few aggregate queries — open alerts and
  events, the outbox by channel and status, escalation timers, forecast data
  age, acknowledgement latency. Every instance sees the same numbers, and they
  survive a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, and_, case, func, literal, select, text
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from channels.base import Outcome, SendResult
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, NotificationStatus, TimerStatus
from dispatcher.storage.models import Alert, EscalationTimer, ForecastRun, Notification

__all__ = ["ACK_BUCKETS", "DatabaseCollector", "Metrics"]

log = logging.getLogger("yujing.metrics")

#: SQLite subtracts times as Julian days: five minutes come back as 300.00000002 s
_EPSILON: Final = 0.001

#: Seconds from an alert's opening to its acknowledgement; the deadlines are 10, 15, 90, 120 min.
ACK_BUCKETS: Final = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 5400.0, 7200.0, 14400.0, 43200.0)
POLL_BUCKETS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
SEND_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The in-process instruments of one runtime, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter(
            "yujing_feed_polls",
            "Forecast polls by feed source and outcome (ok, failed: the feed, error: ours)",
            ["source", "outcome"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "yujing_feed_poll_duration_seconds",
            "Wall time of one whole poll: fetch, evaluate, reconcile, commit",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.send_seconds = Histogram(
            "yujing_send_duration_seconds",
            "Time a channel took to answer one send, whatever the outcome",
            ["channel"],
            buckets=SEND_BUCKETS,
            registry=r,
        )
        self.send_errors = Counter(
            "yujing_send_errors",
            "Sends a channel or its provider did not accept (retryable or permanent)",
            ["channel", "outcome"],
            registry=r,
        )
        self.rules_reloads = Counter(
            "yujing_rules_reloads",
            "Looks at edited rule files: loaded, unchanged, refused, unsettled",
            ["outcome"],
            registry=r,
        )

    @contextmanager
    def poll(self, source: str) -> Iterator[Callable[[bool], None]]:
        """Time a poll; call the yielded function with its outcome (unset: it raised)."""
        started = time.perf_counter()
        outcome = ["error"]

        def done(ok: bool) -> None:
            outcome[0] = "ok" if ok else "failed"

        try:
            yield done
        finally:
            self.polls.labels(source, outcome[0]).inc()
            self.poll_seconds.labels(source).observe(time.perf_counter() - started)

    def sent(self, channel: str, result: SendResult, seconds: float) -> None:
        """One send answered (or timed out) after `seconds`."""
        self.send_seconds.labels(channel).observe(seconds)
        if result.outcome is not Outcome.OK:
            self.send_errors.labels(channel, result.outcome.value).inc()

    def reloaded(self, outcome: str) -> None:
        self.rules_reloads.labels(outcome).inc()


@dataclass(eq=False)  # registries key collectors by identity
class DatabaseCollector(Collector):
    """The database's state as gauges and a histogram, read at each scrape.

    `rules_error` returns the error of the last rules reload (None: the set in
    force loaded cleanly); `clock` gives "now" for ages and what is due.
    """

    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    rules_error: Callable[[], str | None] = lambda: None
    _failing: bool = field(default=False, init=False, repr=False)

    def describe(self) -> list[Metric]:
        return []  # read the database at scrape time only, not when registered

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "yujing_database_up", "1 when this scrape could read the database, else 0"
        )
        families: list[Metric] = []
        try:
            families = self._read(self.clock())
        except Exception as exc:  # a scrape reports a database it cannot read; it does not fail
            if not self._failing:  # once on failure, once on recovery: not every scrape
                log.warning("metrics: cannot read the database (%s)", type(exc).__name__)
            log.debug("metrics: database read failed", exc_info=True)
            self._failing = True
            up.add_metric([], 0.0)
        else:
            if self._failing:
                log.info("metrics: the database can be read again")
            self._failing = False
            up.add_metric([], 1.0)
        yield up
        yield from families
        rules = GaugeMetricFamily(
            "yujing_rules_error",
            "1 while the last edit of the rule files was refused (the last good set in force)",
        )
        rules.add_metric([], 1.0 if self.rules_error() else 0.0)
        yield rules

    def _read(self, now: datetime) -> list[Metric]:
        with self.sessions() as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres:  # one consistent snapshot; nothing written
                session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            families = [
                *_alerts(session),
                *_outbox(session, now),
                *_timers(session, now),
                _feed_age(session, now),
                _ack_latency(session, postgres),
            ]
            session.rollback()
        return families


def _alerts(session: Session) -> list[Metric]:
    alerts = GaugeMetricFamily(
        "yujing_alerts_open",
        "Open alerts (firing or acknowledged) by kind (hazard: a zone's, system), hazard, level",
        labels=["kind", "hazard", "level"],
    )
    events = GaugeMetricFamily(
        "yujing_events_open",
        "Open events (the zone alerts of one hazard handled as one incident) by hazard, level",
        labels=["hazard", "level"],
    )
    unacked = GaugeMetricFamily(
        "yujing_alerts_unacknowledged",
        "Firing alerts and events not yet acknowledged, by kind and level",
        labels=["kind", "level"],
    )
    rows = session.execute(
        select(Alert.kind, Alert.hazard, Alert.level, Alert.state, func.count())
        .where(Alert.state.in_(OPEN_ALERT_STATES))
        .group_by(Alert.kind, Alert.hazard, Alert.level, Alert.state)
    ).all()
    open_: dict[tuple[str, str, str], int] = {}
    firing: dict[tuple[str, str], int] = {}
    for kind, hazard, level, state, count in rows:  # one row per group, not per alert
        open_[(kind, hazard, level)] = open_.get((kind, hazard, level), 0) + count
        if state == "firing":
            firing[(kind, level)] = firing.get((kind, level), 0) + count
    for (kind, hazard, level), count in sorted(open_.items()):
        if kind == AlertKind.EVENT:
            events.add_metric([hazard, level], count)
        else:
            alerts.add_metric([kind, hazard, level], count)
    for (kind, level), count in sorted(firing.items()):
        unacked.add_metric([kind, level], count)
    return [alerts, events, unacked]


def _outbox(session: Session, now: datetime) -> list[Metric]:
    rows = GaugeMetricFamily(
        "yujing_outbox_rows",
        "Outbox rows (messages) by channel and status",
        labels=["channel", "status"],
    )
    oldest = GaugeMetricFamily(
        "yujing_outbox_oldest_due_seconds",
        "Age of the oldest pending message already due, per channel (0: nothing due)",
        labels=["channel"],
    )
    channels: set[str] = set()
    for channel, status, count in session.execute(
        select(Notification.channel, Notification.status, func.count())
        .group_by(Notification.channel, Notification.status)
        .order_by(Notification.channel, Notification.status)
    ):
        rows.add_metric([channel, status], count)
        channels.add(channel)
    due = {
        channel: at
        for channel, at in session.execute(
            select(Notification.channel, func.min(Notification.next_attempt_at))
            .where(
                Notification.status == NotificationStatus.PENDING,
                Notification.next_attempt_at <= now,
            )
            .group_by(Notification.channel)
        )
    }
    for channel in sorted(channels | set(due)):
        since = _aware(due.get(channel))
        oldest.add_metric([channel], max(0.0, (now - since).total_seconds()) if since else 0.0)
    given_up = GaugeMetricFamily(
        "yujing_outbox_given_up",
        "Messages that failed every way they could go and are not settled yet (re-sent "
        "when their channel recovers), per channel",
        labels=["channel"],
    )
    gave_up: dict[str, int] = {
        channel: count
        for channel, count in session.execute(
            select(Notification.channel, func.count())
            .where(Notification.gave_up_at.is_not(None))
            .group_by(Notification.channel)
        )
    }
    for channel in sorted(channels):
        given_up.add_metric([channel], gave_up.get(channel, 0))
    return [rows, oldest, given_up]


def _timers(session: Session, now: datetime) -> list[Metric]:
    pending = GaugeMetricFamily(
        "yujing_escalation_timers_pending",
        "Escalation steps and acknowledgement deadlines planned and not yet run, by kind",
        labels=["kind"],
    )
    due = GaugeMetricFamily(
        "yujing_escalation_timers_due",
        "Pending escalation timers whose time has come (due_at <= now), by kind",
        labels=["kind"],
    )
    oldest = GaugeMetricFamily(
        "yujing_escalation_timers_oldest_due_seconds",
        "How long the oldest due escalation timer has waited to be run (0: none due)",
    )
    is_due = EscalationTimer.due_at <= now
    rows = session.execute(
        select(
            EscalationTimer.kind,
            func.count(),
            func.sum(case((is_due, 1), else_=0)),
            func.min(case((is_due, EscalationTimer.due_at), else_=None)),
        )
        .where(EscalationTimer.status == TimerStatus.PENDING)
        .group_by(EscalationTimer.kind)
        .order_by(EscalationTimer.kind)
    ).all()
    first: datetime | None = None
    for kind, count, due_count, earliest in rows:
        pending.add_metric([kind], count)
        due.add_metric([kind], due_count or 0)
        at = _aware(earliest)
        if at is not None and (first is None or at < first):
            first = at
    oldest.add_metric([], max(0.0, (now - first).total_seconds()) if first else 0.0)
    return [pending, due, oldest]


def _feed_age(session: Session, now: datetime) -> Metric:
    age = GaugeMetricFamily(
        "yujing_feed_data_age_seconds",
        "Seconds since the last successful forecast poll, per feed source",
        labels=["source"],
    )
    for source, last in session.execute(
        select(ForecastRun.source, func.max(ForecastRun.finished_at))
        .where(ForecastRun.ok.is_(True))
        .group_by(ForecastRun.source)
        .order_by(ForecastRun.source)
    ):
        at = _aware(last)
        age.add_metric([source], max(0.0, (now - at).total_seconds()) if at else 0.0)
    return age


def _ack_latency(session: Session, postgres: bool) -> Metric:
    """Opening to acknowledgement, per kind and level, bucketed in SQL."""
    seconds = _seconds_between(Alert.acknowledged_at, Alert.opened_at, postgres)
    acked = Alert.acknowledged_at.is_not(None)
    buckets: Sequence[ColumnElement[int]] = [
        func.sum(case((seconds <= bound + _EPSILON, 1), else_=0)) for bound in ACK_BUCKETS
    ]
    hist = HistogramMetricFamily(
        "yujing_acknowledgement_latency_seconds",
        "From an alert's opening to its acknowledgement, by kind and level",
        labels=["kind", "level"],
    )
    for kind, level, count, total, *cumulative in session.execute(
        select(Alert.kind, Alert.level, func.count(), func.sum(seconds), *buckets)
        .where(and_(acked, Alert.acknowledged_at >= Alert.opened_at))
        .group_by(Alert.kind, Alert.level)
        .order_by(Alert.kind, Alert.level)
    ):
        pairs = zip(ACK_BUCKETS, cumulative, strict=True)
        points = [(str(b), float(c or 0)) for b, c in pairs]
        points.append(("+Inf", float(count)))
        hist.add_metric([kind, level], points, sum_value=float(total or 0.0))
    return hist


def _seconds_between(
    later: QueryableAttribute[Any], earlier: QueryableAttribute[Any], postgres: bool
) -> ColumnElement[Any]:
    """`later - earlier` in seconds, as SQL (float; the dialects differ)."""
    if postgres:
        return func.extract("epoch", later - earlier)
    # SQLite stores naive UTC text (storage.models.UtcDateTime)
    return (func.julianday(later) - func.julianday(earlier)) * literal(86400.0)


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates bypass the column type on SQLite: naive UTC comes back."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite min()/max() of a text column
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
