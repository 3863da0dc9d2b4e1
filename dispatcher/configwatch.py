"""Safe county reloads: zones, people, roster and escalation edits without a restart.

The rule watch (`dispatcher.rulewatch`) keeps the rules; this watch keeps the
county's own files — the YAML files at the top of the configuration directory
(county.yaml, zones.yaml, people.yaml, roster.yaml, escalation.yaml,
broadcast.yaml). Every few seconds it compares them (names, sizes,
modification times) with what it last read; on a change it loads and checks
them whole, exactly as start-up does (`load_county_config`: the county, the
roster, the escalation policies against the rules in force), and then:

- a valid set with new content is put in force in one step: the directory rows
  (zones, people, roles) are synced and `config.reloaded` audited in one
  transaction, and once that committed the new county, roster, policies and
  forecast points replace the old ones in the pipeline, the escalation, the
  failover and the rule watch (`Runtime.swap`), with no await in between; the
  next poll warns the new zones and reaches the new phones;
- an invalid set is refused: the last good set stays in force, every problem is
  logged, `config.refused` is audited with the files and the problems, and the
  administrators get a system alert (hazard `config_refused`) — the same alarm
  as refused rules (`rulewatch.RefusalAlarm`): once until valid files load,
  which resolves it and tells them;
- the same content again changes nothing.

`yujing evaluate-now` asks the daemon to look and poll at once: the CLI and
the daemon share only the database, so the request is an audit event
(`evaluate.requested`, with who asked), and the daemon's watch job answers the
newest unanswered one with `evaluate.done` (`EvaluateRequests`).

Not reloaded: the channels' own settings, including the loudspeaker terminal
directory the broadcast channel reads from broadcast.yaml at start (a restart
takes those); broadcast.yaml is still checked with the rest.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import desc, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.county import County, load_county
from dispatcher.directory import sync_directory
from dispatcher.escalation import Escalation, Policies, load_policies, on_channel
from dispatcher.feeds.base import ForecastPoint
from dispatcher.feeds.points import assign_points
from dispatcher.roster import Roster, load_roster
from dispatcher.rulewatch import SHOWN_PROBLEMS, RefusalAlarm, changed_files
from dispatcher.storage.models import AuditEvent
from rules.collector import collector_paused
from rules.config import ConfigError, Problem
from rules.loader import RuleSet
from rules.types import ZoneSpec

log = logging.getLogger("yujing.config")

CONFIG_REFUSED = "config_refused"
CONFIG_ALARM = RefusalAlarm(
    CONFIG_REFUSED,
    "config",
    "县级配置修改未生效",
    what="县级配置（区域、人员、值班表）",
    kept="配置",
)
EVALUATE_REQUESTED = "evaluate.requested"
EVALUATE_DONE = "evaluate.done"

Snapshot = Mapping[str, tuple[int, int]]
Outcome = Literal["loaded", "unchanged", "refused", "unsettled"]


@dataclass(frozen=True)
class CountyConfig:
    """The county's configuration as the daemon uses it, loaded and checked whole."""

    county: County
    roster: Roster
    policies: Policies
    points: list[ForecastPoint]
    point_of: Mapping[str, str]  # zone id → forecast point id
    zones: list[ZoneSpec]
    content_hash: str

    def summary(self) -> str:
        return f"共{len(self.county.zones)}个区域、{len(self.county.people)}人"


@dataclass(frozen=True)
class ConfigReload:
    """What one look at changed county files did."""

    outcome: Outcome
    files: tuple[str, ...] = ()  # changed since the set in force was loaded
    problems: tuple[str, ...] = ()  # why it was refused
    notifications: int = 0


def config_snapshot(config_dir: Path) -> dict[str, tuple[int, int]]:
    """The county's YAML files at the top of `config_dir` (the rules/ are the rule watch's)."""
    found: dict[str, tuple[int, int]] = {}
    for pattern in ("*.yaml", "*.yml"):
        for path in config_dir.glob(pattern):
            if path.name.startswith("."):  # editors' swap files
                continue
            try:
                stat = path.stat()
            except OSError:  # removed while we looked: the next look sees it gone
                continue
            if path.is_file():
                found[path.name] = (stat.st_size, stat.st_mtime_ns)
    return found


def content_hash(config_dir: Path, names: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        try:
            digest.update((config_dir / name).read_bytes())
        except OSError:
            digest.update(b"\0gone")
        digest.update(b"\0")
    return digest.hexdigest()


def load_county_config(
    config_dir: Path, ruleset: RuleSet | None, resolution_deg: float
) -> CountyConfig:
    """Load the county, its roster and its escalation policies; ConfigError lists every problem."""
    with collector_paused():  # a province is a million small objects (rules.collector)
        config = _load_county_config(config_dir, ruleset, resolution_deg)
        # What was loaded is young: walked once now, it is moved to the oldest
        # generation, where the collector ages it as usual; else the first two
        # young collections after the pause would each walk all of it.
        gc.collect(1)
    return config


def _load_county_config(
    config_dir: Path, ruleset: RuleSet | None, resolution_deg: float
) -> CountyConfig:
    files = config_snapshot(config_dir)
    county = load_county(config_dir)  # the roster and the policies need a valid county
    problems: list[Problem] = []
    roster: Roster | None = None
    policies: Policies | None = None
    try:
        roster = load_roster(config_dir, county)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        policies = load_policies(config_dir, county, ruleset)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or roster is None or policies is None:
        raise ConfigError(problems)
    points, point_of = assign_points(
        [(z.id, z.latitude, z.longitude) for z in county.zones], resolution_deg
    )
    return CountyConfig(
        county=county,
        roster=roster,
        policies=policies,
        points=points,
        point_of=point_of,
        zones=county.zone_specs(point_of),
        content_hash=content_hash(config_dir, files),
    )


@dataclass
class ConfigWatch:
    """Watches the county's files and keeps the runtime on the last valid set of them."""

    config_dir: Path
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    channel: str
    resolution_deg: float
    current: CountyConfig
    rules: Callable[[], RuleSet]  # the rule set in force (escalation overrides name rules)
    escalation: Callable[[], Escalation | None]  # the escalation in force
    swap: Callable[[CountyConfig], None]  # puts a reloaded set in force (Runtime.swap)
    seen: Snapshot  # the files as last read (taken before reading them)
    on_enqueued: Callable[[], None] = lambda: None
    loaded: Snapshot = field(default_factory=dict)  # the files of the set in force

    def __post_init__(self) -> None:
        if not self.loaded:
            self.loaded = dict(self.seen)

    def look(self) -> dict[str, tuple[int, int]]:
        return config_snapshot(self.config_dir)

    def _alerting(self, county: County) -> Escalation:
        return on_channel(self.escalation(), county, self.channel)

    def record_start(self) -> int:
        """At start-up: valid files are in force, so resolve an alarm left open."""
        with self.sessions.begin() as session:
            count = CONFIG_ALARM.resolve(
                session,
                now=self.clock(),
                escalation=self._alerting(self.current.county),
                county=self.current.county,
                rules=0,
                summary=self.current.summary(),
            )
        if count:
            self.on_enqueued()
        return count

    async def poll(self, *, force: bool = False) -> ConfigReload | None:
        """Look at the files; reload when they changed (or `force`). None when unchanged."""
        before = self.look()
        if before == self.seen and not force:
            return None
        loaded: CountyConfig | None = None
        problems: list[Problem] = []
        try:
            loaded = await asyncio.to_thread(
                load_county_config, self.config_dir, self.rules(), self.resolution_deg
            )
        except ConfigError as exc:
            problems = list(exc.problems)
        except Exception as exc:  # a loader bug must not take the configuration in force
            log.exception("loading the county files failed unexpectedly")
            problems = [Problem(str(self.config_dir), 1, 1, f"cannot load: {exc!r}")]
        if self.look() != before:
            log.info("county files changed while being read; reading them again shortly")
            return ConfigReload("unsettled")
        return self.apply(before, loaded, problems)

    def apply(
        self, files: Snapshot, loaded: CountyConfig | None, problems: list[Problem]
    ) -> ConfigReload:
        """Put a freshly read set in force, or refuse it (`loaded` None)."""
        now = self.clock()
        changed = changed_files(self.loaded, files)
        if loaded is None:
            count = self._refuse(now, changed, problems)
            self.seen = dict(files)
            return ConfigReload("refused", changed, tuple(map(str, problems)), count)
        old = self.current
        outcome: Outcome = "unchanged"
        if loaded.content_hash != old.content_hash:
            outcome = "loaded"
        with self.sessions.begin() as session:
            if outcome == "loaded":
                sync_directory(session, loaded.county, loaded.point_of, now)
                audit.record(
                    session,
                    at=now,
                    actor="system",
                    action="config.reloaded",
                    subject="config",
                    data={
                        "content_hash": loaded.content_hash,
                        "previous_hash": old.content_hash,
                        "files": list(changed),
                        "zones": len(loaded.county.zones),
                        "people": len(loaded.county.people),
                        "roster": loaded.roster.configured,
                    },
                )
            count = CONFIG_ALARM.resolve(
                session,
                now=now,
                escalation=self._alerting(loaded.county),
                county=loaded.county,
                rules=0,
                summary=loaded.summary(),
                data={"content_hash": loaded.content_hash},
            )
        if outcome == "loaded":
            # committed: now swap, with no await in between
            self.swap(loaded)
            self.current = loaded
            log.info(
                "county configuration reloaded: %d zones, %d people (changed: %s)",
                len(loaded.county.zones),
                len(loaded.county.people),
                ", ".join(changed) or "nothing",
            )
        self.seen = dict(files)
        self.loaded = dict(files)
        if count:
            self.on_enqueued()
        return ConfigReload(outcome, changed, (), count)

    def _refuse(self, now: datetime, changed: tuple[str, ...], found: list[Problem]) -> int:
        problems = [str(p) for p in found]
        log.error(
            "county files changed (%s) but were refused; the configuration in force stays. "
            "%d problem(s):\n%s",
            ", ".join(changed) or "?",
            len(problems),
            "\n".join(problems),
        )
        shown = problems[:SHOWN_PROBLEMS]
        county = self.current.county
        with self.sessions.begin() as session:
            audit.record(
                session,
                at=now,
                actor="system",
                action="config.refused",
                subject="config",
                data={
                    "in_force": self.current.content_hash,
                    "files": list(changed),
                    "first": shown[0] if shown else None,
                    "problems": shown,
                    "count": len(problems),
                },
            )
            count = CONFIG_ALARM.raise_alert(
                session,
                now=now,
                found=found,
                shown=shown,
                escalation=self._alerting(county),
                county=county,
            )
        if count is None:
            return 0
        self.on_enqueued()
        return count


# --- evaluate now


def request_evaluation(session: Session, *, actor: str, now: datetime) -> int:
    """Ask the daemon to look at the files and poll at once; returns the request's id."""
    return audit.record(
        session, at=now, actor=actor, action=EVALUATE_REQUESTED, subject="pipeline"
    ).id


def pending_request(session: Session) -> int | None:
    """The newest request not yet answered (older ones are answered with it)."""
    newest = session.scalar(
        select(AuditEvent.id)
        .where(AuditEvent.action == EVALUATE_REQUESTED)
        .order_by(desc(AuditEvent.id))
        .limit(1)
    )
    if newest is None:
        return None
    answered = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == EVALUATE_DONE)
        .order_by(desc(AuditEvent.id))
        .limit(1)
    )
    if answered is not None and int(answered.data.get("request", 0)) >= newest:
        return None
    return newest


def answer(session: Session) -> dict[str, object] | None:
    """The answer to the newest request, as `evaluate.done` recorded it (None: unanswered)."""
    done = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == EVALUATE_DONE)
        .order_by(desc(AuditEvent.id))
        .limit(1)
    )
    return dict(done.data) if done is not None else None
