"""The composition root: settings in, a wired pipeline and delivery worker out.

`yujing run` and `yujing drill` both build their parts here, so a drill runs
the code the daemon runs — the same pipeline and the same delivery loop, which
a drill stops once nothing is left to send (`drain`) — only with a recorded
feed, a throw-away database, a clock standing still and the console standing
in for every channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from threading import Thread
from typing import TextIO

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from channels.base import Channel
from dispatcher import audit
from dispatcher.alerts.undelivered import watch_undelivered
from dispatcher.channelset import build_channels
from dispatcher.configwatch import (
    EVALUATE_DONE,
    ConfigWatch,
    CountyConfig,
    config_snapshot,
    load_county_config,
    pending_request,
)
from dispatcher.county import County
from dispatcher.directory import sync_directory
from dispatcher.escalation import Escalation
from dispatcher.escalation.config import warn_unconfigured
from dispatcher.failover import FailoverPlan
from dispatcher.feeds.base import Feed, ForecastPoint
from dispatcher.feeds.cap_feed import CapFeed, parse_sources
from dispatcher.feeds.chain import FeedChain
from dispatcher.feeds.openmeteo import OpenMeteoFeed
from dispatcher.feeds.qweather import QWeatherFeed
from dispatcher.feeds.qweather_alerts import QWeatherAlerts
from dispatcher.feeds.qweather_auth import JwtCredential, QWeatherAuth, load_private_key
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.httpclient import shared_client
from dispatcher.metrics import Metrics
from dispatcher.official.qweather_source import QWeatherWarnings
from dispatcher.official.watch import OfficialWatch
from dispatcher.outbox import DeliveryWorker
from dispatcher.pipeline import Pipeline, PollResult
from dispatcher.rulewatch import RulesInForce, RuleWatch, load_watched
from dispatcher.settings import Settings
from dispatcher.storage.db import (
    Checkpointer,
    checkpoint_in_background,
    make_engine,
    session_factory,
)
from dispatcher.storage.migrate import upgrade
from dispatcher.storage.models import Notification
from dispatcher.web.state import RulesStatus
from rules.ruleset import RuleSet

log = logging.getLogger("yujing")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Failover:
    """The failover plan in force; a county reload swaps `plan` (the worker holds this)."""

    plan: FailoverPlan

    def __call__(self, session: Session, row: Notification, reason: str, now: datetime) -> int:
        return self.plan(session, row, reason, now)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    county: County
    rules: RulesInForce
    points: list[ForecastPoint]
    http: httpx.AsyncClient
    feed: Feed
    channels: Mapping[str, Channel]
    worker: DeliveryWorker
    pipeline: Pipeline
    rulewatch: RuleWatch  # reloads edited rule files into `rules`
    configwatch: ConfigWatch  # reloads the edited county files (`swap`)
    escalation: Escalation | None = None  # roster, escalation policies, deadlines
    failover: Failover | None = None  # where a message goes when its channel failed
    metrics: Metrics | None = None  # polls, sends, reloads (what /metrics adds to the database's)
    official: OfficialWatch | None = None  # the CAP sources' poll, when any is configured
    checkpointer: Checkpointer | None = None  # SQLite: WAL checkpoints off the commits
    # called with each reloaded county configuration, after the swap (the console's roster)
    on_swap: list[Callable[[CountyConfig], None]] = field(default_factory=list)

    def swap(self, config: CountyConfig) -> None:
        """Put a reloaded county configuration in force everywhere it is held.

        Plain assignments, no await: the event loop runs nothing in between, so
        every part sees the old configuration or the new one, never a mix.
        """
        escalation = self.escalation
        if escalation is not None:
            escalation = replace(
                escalation, county=config.county, roster=config.roster, policies=config.policies
            )
            warn_unconfigured(
                config.policies, config.county, escalation.channels, escalation.default_channel
            )
        self.pipeline.swap(
            county=config.county,
            points=config.points,
            zones=config.zones,
            escalation=escalation,
        )
        self.rulewatch.county = config.county
        self.rulewatch.escalation = escalation
        self.county = config.county
        self.points = config.points
        self.escalation = escalation
        if self.failover is not None:
            self.failover.plan = FailoverPlan(config.county, frozenset(self.channels))
        if self.official is not None and self.official.qweather is not None:
            self.official.qweather.points = config.points
            self.official.qweather.point_of = config.point_of
        for listener in self.on_swap:
            listener(config)

    def check_delivery(self) -> int:
        """The daemon's watch_delivery job: settle given-up messages (re-send them when
        their channel recovers) and raise, update or resolve the undelivered alert.
        Returns the rows it enqueued or re-sent."""
        with self.sessions.begin() as session:
            looked = watch_undelivered(
                session,
                now=self.pipeline.clock(),
                county=self.county,
                channel=self.settings.default_channel,
                channels=frozenset(self.channels),
                probe_seconds=self.settings.delivery_probe_seconds,
                escalation=self.escalation,
            )
        if looked.changed:
            self.worker.wake()
        return len(looked.notifications) + looked.settlement.resent

    async def watch(self) -> PollResult | None:
        """The daemon's watch job: reload edited files; poll now when `evaluate-now` asked.

        Returns the poll's result when it polled.
        """
        await self.configwatch.poll()
        await self.rulewatch.poll()
        with self.sessions() as session:
            request = pending_request(session)
        if request is None:
            return None
        log.info("evaluating now, as asked (request %d)", request)
        result = await self.pipeline.poll()
        with self.sessions.begin() as session:
            audit.record(
                session,
                at=self.pipeline.clock(),
                actor="system",
                action=EVALUATE_DONE,
                subject="pipeline",
                data={
                    "request": request,
                    "ok": result.ok,
                    "forecast_run_id": result.forecast_run_id,
                    "transitions": result.transitions,
                    "notifications": result.notifications,
                    "error": result.error,
                },
            )
        return result

    async def aclose(self) -> None:
        await self.http.aclose()
        self.close_database()

    def close_database(self) -> None:
        """Stop the checkpoints' thread (SQLite) and close the engine's connections."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


def build_feed(
    settings: Settings, http: httpx.AsyncClient, clock: Callable[[], datetime] = utc_now
) -> Feed:
    """The feed the settings name, or a `FeedChain` of them (YUJING_FEEDS)."""
    feeds = [_one_feed(name, settings, http, clock) for name in settings.feed_names]
    return feeds[0] if len(feeds) == 1 else FeedChain(feeds, clock=clock)


def _one_feed(
    name: str, settings: Settings, http: httpx.AsyncClient, clock: Callable[[], datetime]
) -> Feed:
    if name == "replay":
        if settings.replay_file is None:
            raise ValueError("YUJING_FEED=replay needs YUJING_REPLAY_FILE (a recorded forecast)")
        return ReplayFeed(
            settings.replay_file,
            issued_at=settings.replay_at,
            past_days=settings.openmeteo_past_days,
            max_distance_deg=settings.point_resolution_deg,
            rebase_to=clock if settings.replay_rebase else None,
        )
    if name == "qweather":
        return qweather_feed(settings, http, clock)
    return OpenMeteoFeed(
        http,
        url=settings.openmeteo_url,
        api_key=settings.openmeteo_api_key,
        batch_size=settings.openmeteo_batch_size,
        forecast_days=settings.openmeteo_forecast_days,
        past_days=settings.openmeteo_past_days,
        retries=settings.feed_retries,
        backoff_seconds=settings.feed_backoff_seconds,
        timeout_seconds=settings.http_timeout_seconds,
    )


def qweather_feed(
    settings: Settings, http: httpx.AsyncClient, clock: Callable[[], datetime] = utc_now
) -> QWeatherFeed:
    """The QWeather feed with its credentials; ValueError naming the setting that is missing."""
    if not settings.qweather_api_host:
        raise ValueError(
            "the qweather feed needs YUJING_QWEATHER_API_HOST: your project's API host, "
            "shown in the QWeather console under settings"
        )
    jwt_parts = (settings.qweather_key_id, settings.qweather_project_id)
    jwt = None
    if settings.qweather_private_key is not None or any(jwt_parts):
        if settings.qweather_private_key is None or not all(jwt_parts):
            raise ValueError(
                "QWeather JWT needs all of YUJING_QWEATHER_KEY_ID, YUJING_QWEATHER_PROJECT_ID "
                "and YUJING_QWEATHER_PRIVATE_KEY"
            )
        jwt = JwtCredential(
            key_id=str(settings.qweather_key_id),
            project_id=str(settings.qweather_project_id),
            key=load_private_key(settings.qweather_private_key),
        )
    return QWeatherFeed(
        http,
        host=settings.qweather_api_host,
        path=settings.qweather_path,
        auth=QWeatherAuth(jwt=jwt, api_key=settings.qweather_api_key, clock=clock),
        retries=settings.feed_retries,
        backoff_seconds=settings.feed_backoff_seconds,
        timeout_seconds=settings.http_timeout_seconds,
        max_concurrency=settings.qweather_max_concurrency,
        clock=clock,
    )


def qweather_warnings(
    settings: Settings,
    http: httpx.AsyncClient,
    clock: Callable[[], datetime],
    sessions: sessionmaker[Session],
    config: CountyConfig,
) -> QWeatherWarnings | None:
    """QWeather's official warnings at the forecast points when YUJING_QWEATHER_WARNINGS is on."""
    if not settings.qweather_warnings:
        return None
    if not settings.qweather_api_host:
        raise ValueError(
            "YUJING_QWEATHER_WARNINGS needs YUJING_QWEATHER_API_HOST and the QWeather "
            "credentials: set them, or set YUJING_QWEATHER_WARNINGS=false"
        )
    api = qweather_feed(settings, http, clock).api
    return QWeatherWarnings(
        QWeatherAlerts(api),
        sessions,
        clock,
        config.points,
        config.point_of,
        max_concurrency=settings.qweather_max_concurrency,
    )


def _load_while_migrating(settings: Settings, ruleset: RuleSet) -> CountyConfig:
    """The county's configuration, its files parsed while the database is migrated.

    Parsing a province's files is the client's work (1.6 s of CPU at 30,000
    zones); creating a fresh PostgreSQL database's schema is the server's (0.4 s,
    the client idle meanwhile), so they go side by side. Invalid files are
    reported at once, as before, without waiting for the database (it may not
    answer; the migration is one transaction, applied whole or not at all, and
    its thread does not keep the process alive); the database's error comes
    once the files are known to be valid.
    """
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(settings.database_url)
        except BaseException as exc:
            failed.append(exc)

    migration = Thread(target=migrate, name="yujing-migrate", daemon=True)
    migration.start()
    config = load_county_config(settings.config_dir, ruleset, settings.point_resolution_deg)
    migration.join()
    if failed:
        raise failed[0]
    return config


def open_runtime(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    console: TextIO | None = None,
    wake: Callable[[], None] | None = None,
    channels: Mapping[str, Channel] | None = None,
    feed: Feed | None = None,
) -> Runtime:
    """Load the configuration, migrate the database and wire every part.

    `channels` replaces the channels the settings configure (a drill stands
    the console in for every one of them); `feed` the feed they configure (a
    drill on several recordings chains them).

    Raises `rules.config.ConfigError` for configuration problems and
    ValueError for inconsistent settings; both carry a message for the operator.
    """
    county_files = config_snapshot(settings.config_dir)
    ruleset, rule_files = load_watched(settings.config_dir / "rules")
    config = _load_while_migrating(settings, ruleset)
    county, roster, policies = config.county, config.roster, config.policies
    points, point_of = config.points, config.point_of
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)

    now = clock()
    with sessions.begin() as session:
        sync_directory(session, county, point_of, now)

    # every send in flight gets a kept-alive connection; the rest are the feeds'
    http = shared_client(settings.delivery_concurrency + 8, settings.http_timeout_seconds)
    if feed is None:
        feed = build_feed(settings, http, clock)
    if channels is None:
        channels = build_channels(settings, http, console)
    callback = (
        settings.public_base_url.rstrip("/") + "/webhooks/twilio/status"
        if settings.public_base_url
        else None
    )
    failover = Failover(FailoverPlan(county, frozenset(channels)))
    metrics = Metrics()
    worker = DeliveryWorker.from_settings(
        settings,
        sessions=sessions,
        channels=channels,
        clock=clock,
        status_callback_url=callback,
        on_failed=failover,
        metrics=metrics,
    )
    escalation = Escalation.from_settings(
        settings, county=county, roster=roster, policies=policies, channels=channels
    )
    rules = RulesInForce(
        ruleset,
        RulesStatus(loaded_at=now, content_hash=ruleset.content_hash, rules=len(ruleset.rules)),
    )
    pipeline = Pipeline(
        sessions=sessions,
        county=county,
        rules=rules,
        feed=feed,
        points=points,
        zones=config.zones,
        channel=settings.default_channel,
        interval=timedelta(seconds=settings.poll_interval_seconds),
        clock=clock,
        started_at=now,
        hold=timedelta(seconds=settings.alert_hold_seconds),
        cooldown=timedelta(seconds=settings.alert_cooldown_seconds),
        on_enqueued=wake or worker.wake,
        escalation=escalation,
        metrics=metrics,
    )
    rulewatch = RuleWatch(
        directory=settings.config_dir / "rules",
        rules=rules,
        sessions=sessions,
        county=county,
        channel=settings.default_channel,
        clock=clock,
        seen=rule_files,
        on_enqueued=wake or worker.wake,
        escalation=escalation,
        metrics=metrics,
    )
    rulewatch.record_start()
    pipeline.record_start()  # the feed-down clock's anchor on a brand-new database
    configwatch = ConfigWatch(
        config_dir=settings.config_dir,
        sessions=sessions,
        clock=clock,
        channel=settings.default_channel,
        resolution_deg=settings.point_resolution_deg,
        current=config,
        rules=rules,
        escalation=lambda: runtime.escalation,
        swap=lambda loaded: runtime.swap(loaded),
        seen=county_files,
        on_enqueued=wake or worker.wake,
    )
    sources = parse_sources(settings.cap_sources)
    qweather = qweather_warnings(settings, http, clock, sessions, config)
    official = (
        OfficialWatch(
            CapFeed(sources, http, max_bytes=settings.cap_max_bytes) if sources else None,
            sessions,
            clock,
            max_bytes=settings.cap_max_bytes,
            qweather=qweather,
        )
        if sources or qweather is not None
        else None
    )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        county=county,
        rules=rules,
        points=points,
        http=http,
        feed=feed,
        channels=channels,
        worker=worker,
        pipeline=pipeline,
        rulewatch=rulewatch,
        configwatch=configwatch,
        escalation=escalation,
        failover=failover,
        metrics=metrics,
        official=official,
        checkpointer=checkpoint_in_background(engine),
    )
    configwatch.record_start()
    log.info(
        "loaded %s: %d zones on %d forecast points, %d people, %d rules (%s); feed %s; channel %s",
        county.name,
        len(county.zones),
        len(points),
        len(county.people),
        len(ruleset.rules),
        ruleset.content_hash[:12],
        feed.source,
        settings.default_channel,
    )
    return runtime


async def drain(worker: DeliveryWorker) -> int:
    """Deliver everything that is due now (drills and tests); returns the messages processed.

    The daemon's delivery loop, stopping when nothing is due and nothing is in
    flight (`DeliveryWorker.run_until_idle`).
    """
    return await worker.run_until_idle()
