"""One poll: fetch the forecast, evaluate the rules, reconcile, commit, wake delivery.

The pipeline owns no I/O of its own beyond the feed and the database it is
given; the clock is passed in, so drills and tests run it at any instant.

A batch is usable when it carries some future data (`unusable`): one whose
hours all lie before now, or with no value from now on for any variable the
rules read, is recorded as a failed poll (`ForecastRun.ok` false, with the
reason), like a feed that does not answer — so it raises the feed-down alert.

Partial data degrades per rule: a usable batch lacking some variables (the
feed's `problems`, or no value ahead) is evaluated all the same. The rules that
read what is missing are undecided at the zones concerned, which neither opens
nor closes a warning (`alerts/reconcile.py`); the others warn as usual. The
forecast run records the missing variables in `error` (its notes), the audit
event `forecast.partial` says them with the undecided (zone, hazard) pairs
(`dispatcher.undecided`), and the blind-hazards system alert
(`alerts/blind.py`) tells people which hazards are blind and why.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.alerts.blind import find_blindness, watch_blind
from dispatcher.alerts.hazards import (
    Wording,
    apply_transitions,
    open_hazard_alerts,
    recently_resolved,
)
from dispatcher.alerts.reconcile import Timing, TransitionKind, reconcile
from dispatcher.alerts.system import record_source_attempts, record_watch_start, watch_feed
from dispatcher.county import County
from dispatcher.escalation import Escalation, escalate_due
from dispatcher.feeds.base import Feed, FeedError, ForecastPoint, batch_checksum
from dispatcher.feeds.chain import SourceAttempt, attempts_of, members_of
from dispatcher.logs import Episode
from dispatcher.messages import OFFICIAL_DATA
from dispatcher.metrics import Metrics
from dispatcher.official.record import warnings_in_force
from dispatcher.storage.models import ForecastRun
from dispatcher.undecided import PARTIAL, explain
from rules.collector import collector_paused
from rules.evaluate import evaluate
from rules.loader import RuleSet
from rules.types import ForecastBatch, ZoneSpec
from rules.zonetable import ZoneTable

log = logging.getLogger("yujing.pipeline")

SHOWN_PROBLEMS = 20  # feed problems kept in a poll's audit event (all are logged)


@dataclass(frozen=True)
class PollResult:
    ok: bool
    forecast_run_id: int
    transitions: dict[str, int] = field(default_factory=dict)  # kind → count
    notifications: int = 0
    error: str | None = None


@dataclass
class Pipeline:
    sessions: sessionmaker[Session]
    county: County
    rules: Callable[[], RuleSet]  # the rule set in force (reloads swap it)
    feed: Feed
    points: list[ForecastPoint]
    zones: list[ZoneSpec]
    channel: str
    interval: timedelta
    clock: Callable[[], datetime]
    started_at: datetime
    hold: timedelta = timedelta(0)  # for hazards whose rules set no `hold`
    cooldown: timedelta = timedelta(0)  # for hazards whose rules set no `cooldown`
    on_enqueued: Callable[[], None] = lambda: None
    escalation: Escalation | None = None  # None: built-in policies, no roster
    metrics: Metrics = field(default_factory=Metrics)  # polls counted and timed
    # a failing feed is logged when it starts failing and when it recovers, not every poll
    feed_health: Episode = field(
        default_factory=lambda: Episode(log, "forecast feed"), init=False, repr=False
    )
    _checksummed: tuple[weakref.ref[ForecastBatch], str] | None = field(
        default=None, init=False, repr=False
    )

    def timing(self, ruleset: RuleSet) -> Timing:
        """Hold and cooldown per hazard: the rules' own, else the configured defaults."""
        hazards = set(ruleset.hazards) | {rule.hazard for rule in ruleset.rules}
        holds = {h: v for h in hazards if (v := ruleset.hold(h)) is not None}
        cooldowns = {h: v for h in hazards if (v := ruleset.cooldown(h)) is not None}
        return Timing(self.hold, self.cooldown, holds, cooldowns)

    @functools.cached_property
    def zone_table(self) -> ZoneTable:
        """The zones as arrays, built once: every poll evaluates the same zones."""
        return ZoneTable(self.zones)

    def swap(
        self,
        *,
        county: County,
        points: list[ForecastPoint],
        zones: list[ZoneSpec],
        escalation: Escalation | None,
    ) -> None:
        """Put a reloaded county configuration in force (`dispatcher.configwatch`).

        The zone table is built first, so a failure leaves the old one whole;
        the rest are plain assignments with no await between them. A poll under
        way finishes on what it read at its start.
        """
        table = ZoneTable(zones)
        self.county = county
        self.points = points
        self.zones = zones
        self.escalation = escalation
        self.__dict__["zone_table"] = table  # the cached_property's slot

    def wording(self, ruleset: RuleSet, county: County | None = None) -> Wording:
        county = county or self.county
        return Wording(
            sender=county.sender,
            timezone=county.timezone,
            hazard_name=ruleset.hazard_name,
            advice=ruleset.advice,
            # looked up per transition: remember the answers for this poll
            template=functools.lru_cache(maxsize=None)(ruleset.template),
        )

    async def poll(self) -> PollResult:
        """Run one whole cycle; a feed failure is recorded and watched, never raised."""
        with self.metrics.poll(self.feed.source) as outcome:
            result = await self._poll()
            outcome(result.ok)
        return result

    async def _poll(self) -> PollResult:
        ruleset = self.rules()
        # read once: a reload while the feed is fetched must not mix two configurations
        county, points, table, escalation, zones = (
            self.county,
            self.points,
            self.zone_table,
            self.escalation,
            self.zones,
        )
        started = self.clock()
        try:
            if ruleset.variables:
                batch = await self.feed.fetch(points, sorted(ruleset.variables))
                problem = unusable(batch, ruleset.variables, self.clock())
                if problem is not None:
                    raise FeedError(problem)
            else:  # rules on official warnings alone read no forecast: nothing to fetch
                batch = no_forecast(self.feed.source, started)
        except FeedError as exc:
            self.feed_health.what = f"forecast feed {self.feed.source}"  # a reload may swap it
            self.feed_health.failed(exc.reason, at=started)
            with self.sessions.begin() as session:
                record_source_attempts(session, self._attempts(ruleset), started, self.clock())
                run = ForecastRun(
                    source=self.feed.source,
                    started_at=started,
                    finished_at=self.clock(),
                    ok=False,
                    error=exc.reason,
                )
                session.add(run)
                session.flush()
                audit.record(
                    session,
                    at=run.finished_at,
                    actor="system",
                    action="feed.failed",
                    subject=f"forecast_run:{run.id}",
                    data={"source": self.feed.source, "reason": exc.reason},
                )
                run_id = run.id
            self.check_feed()
            return PollResult(False, run_id, error=exc.reason)

        self.feed_health.succeeded()
        now = self.clock()
        with self.sessions() as session:  # the official warnings in force (CAP), on the zones
            official = warnings_in_force(
                session, now, zones, county.area_code, county.township_codes
            )
        assessments = evaluate(ruleset, batch, table, now, county.timezone, official)
        blindness = find_blindness(ruleset, batch, table, now)
        undecided = explain(ruleset, batch, assessments, table, now, county.timezone)
        notes_of_run = blindness.notes()
        if blindness.variables:
            log.warning(
                "forecast from %s is partial: %s", self.feed.source, "; ".join(notes_of_run)
            )
        with self.sessions.begin() as session:
            record_source_attempts(session, self._attempts(ruleset), started, now)
            run = ForecastRun(
                source=self.feed.source,
                started_at=started,
                finished_at=now,
                ok=True,
                points=batch.shape[0],
                hours=batch.shape[1],
                variables=sorted(batch.variables),
                first_time=_utc(batch.times[0]) if len(batch.times) else None,
                last_time=_utc(batch.times[-1]) if len(batch.times) else None,
                checksum=self._checksum(batch),
                # a usable run's notes: what it lacked (the hazards it left blind)
                error=("partial: " + "; ".join(notes_of_run)) if notes_of_run else None,
            )
            session.add(run)
            session.flush()
            timing = self.timing(ruleset)
            # a province's open alerts and transitions are tens of thousands of small
            # objects, none in a cycle: the collector would walk them again and again
            with collector_paused():
                transitions = reconcile(
                    assessments,
                    open_hazard_alerts(session),
                    now,
                    hold=timing.hold_of,
                    cooldown=timing.cooldown_of,
                    recently_resolved=recently_resolved(session, now - timing.longest_cooldown),
                )
            notes = apply_transitions(
                session,
                transitions,
                now=now,
                county=county,
                wording=self.wording(ruleset, county),
                channel=self.channel,
                forecast_run_id=run.id,
                escalation=escalation,
            )
            notes += watch_blind(
                session,
                blindness,
                now=now,
                county=county,
                channel=self.channel,
                hazard_name=ruleset.hazard_name,
                escalation=escalation,
            )
            if batch.problems or blindness.variables or undecided:
                audit.record(
                    session,
                    at=now,
                    actor="system",
                    action=PARTIAL,
                    subject=f"forecast_run:{run.id}",
                    data={
                        "source": self.feed.source,
                        "missing": {v.name: v.as_json() for v in blindness.variables},
                        "blind": {h: list(n) for h, (_, n) in blindness.hazards.items()},
                        "problems": list(batch.problems[:SHOWN_PROBLEMS]),
                        "problem_count": len(batch.problems),
                        "undecided": [u.as_json() for u in undecided],
                    },
                )
            run_id = run.id
        counts: dict[str, int] = {}
        for t in transitions:
            counts[t.kind.value] = counts.get(t.kind.value, 0) + 1
        changed = {k: v for k, v in counts.items() if k != TransitionKind.CONTINUED.value}
        log.info(
            "forecast run %d from %s: %d points × %d hours, transitions %s, %d notifications",
            run_id,
            self.feed.source,
            batch.shape[0],
            batch.shape[1],
            changed or "none",
            len(notes),
        )
        self.check_feed()
        if notes:
            self.on_enqueued()
        return PollResult(True, run_id, counts, len(notes))

    def _checksum(self, batch: ForecastBatch) -> str:
        """`batch_checksum` of `batch`; of the last poll's batch again (a replay's
        unchanged recording gives the same one), not computed again."""
        last = self._checksummed
        if last is not None and last[0]() is batch:
            return last[1]
        checksum = batch_checksum(batch)
        self._checksummed = (weakref.ref(batch), checksum)  # the batch is not kept alive
        return checksum

    def record_start(self) -> bool:
        """At start-up: persist when watching the feed began (a brand-new database only),
        so that restarts do not reset the feed-down clock."""
        with self.sessions.begin() as session:
            return record_watch_start(session, self.feed.source, self.started_at)

    def _attempts(self, ruleset: RuleSet) -> tuple[SourceAttempt, ...]:
        """What a chain's sources did in this poll's fetch; () when the poll fetched
        nothing (rules on official warnings alone), not the last fetch's again."""
        return attempts_of(self.feed) if ruleset.variables else ()

    def check_feed(self) -> int:
        """Raise or resolve the feed-down alerts (the feed's, and each source's of a
        chain); returns the notifications enqueued."""
        with self.sessions.begin() as session:
            count = 0
            for source in (self.feed.source, *members_of(self.feed)):
                notes = watch_feed(
                    session,
                    now=self.clock(),
                    source=source,
                    watching_since=self.started_at,
                    interval=self.interval,
                    county=self.county,
                    channel=self.channel,
                    escalation=self.escalation,
                    member=source != self.feed.source,
                )
                count += len(notes)
        if count:
            log.warning(
                "forecast feed %s: feed alert changed, %d notifications", self.feed.source, count
            )
            self.on_enqueued()
        return count

    def check_official(self, sources: Sequence[str], interval: timedelta) -> int:
        """Raise or resolve the feed-down alerts of the official-warning sources
        (`OfficialWatch.sources`, polled every `interval`); returns the
        notifications enqueued. A source silent for two intervals is down."""
        with self.sessions.begin() as session:
            count = sum(
                len(
                    watch_feed(
                        session,
                        now=self.clock(),
                        source=source,
                        watching_since=self.started_at,
                        interval=interval,
                        county=self.county,
                        channel=self.channel,
                        escalation=self.escalation,
                        data=OFFICIAL_DATA,
                    )
                )
                for source in sources
            )
        if count:
            log.warning("official warning sources: feed alert changed, %d notifications", count)
            self.on_enqueued()
        return count

    def escalate(self) -> int:
        """Run the escalation steps and deadlines now due; returns the notifications enqueued."""
        escalation = self.escalation or Escalation.plain(self.county, self.channel)
        run = escalate_due(self.sessions, escalation, self.clock())
        if run.notifications:
            self.on_enqueued()
        return run.notifications


def no_forecast(source: str, at: datetime) -> ForecastBatch:
    """An empty batch, for rules that read no forecast variable."""
    empty = np.zeros(0)
    return ForecastBatch(source, at, (), empty, empty, np.zeros(0, "datetime64[s]"), {})


def unusable(batch: ForecastBatch, variables: Collection[str], now: datetime) -> str | None:
    """Why a batch cannot serve the rules at `now` at all, or None when it can.

    Past-only (its last hour ends before the hour containing `now`), or not one
    value from that hour on for any variable the rules read. A batch lacking only
    some variables is usable: the rules reading them are undecided, not the rest.
    """
    if len(batch.times) == 0:
        return "the forecast has no hours"
    hour = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "s").astype("datetime64[h]")
    times = batch.times.astype("datetime64[h]")
    if times[-1] < hour:
        return (
            f"the forecast ends at {_utc(batch.times[-1]).isoformat()}, before now "
            f"({now.astimezone(UTC).isoformat()}): nothing ahead"
        )
    ahead = times >= hour
    usable = [
        name
        for name in variables
        if name in batch.variables and not bool(np.isnan(batch.variables[name][:, ahead]).all())
    ]
    if variables and not usable:
        said = f"; {'; '.join(batch.problems)}" if batch.problems else ""
        return (
            "no usable value from now on for any variable the rules read "
            f"({', '.join(sorted(variables))}){said}"
        )
    return None


def _utc(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype("int64"))
    return datetime.fromtimestamp(seconds, tz=UTC)
