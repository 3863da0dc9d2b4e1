"""Safe rule reloads: the daemon picks up edited rule files without a restart.

Every few seconds the watch compares the rule directory's files (names, sizes,
modification times) with what it last read. On a change it loads and checks the
whole set exactly as start-up does (`load_rules`):

- a valid set with new content replaces the old one in a single assignment (a
  poll already under way finishes on the set it started with), `/healthz` shows
  its content hash, and the audit trail gets `rules.loaded` with the hash and
  the files that changed;
- an invalid set is refused: the last good set stays in force, every problem is
  logged, `/healthz` shows the error (status "degraded"), the audit trail gets
  `rules.refused`, and the administrators (`duty_role: administrator`; the duty
  officers when there is none) get a system alert (hazard `rules_refused`) —
  once, however often the files are saved broken, until a valid set loads,
  which resolves it and tells them. Like every alert it escalates until
  acknowledged (`ADMINISTRATOR_POLICY`: reminders, then the leader on duty
  when its acknowledgement deadline passes);
- the same content again (a file touched, an edit undone) changes nothing.

A file still being written while it is read is not judged: the files are
compared again after loading, and a change in between means "read again at
the next look".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import desc, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.county import County
from dispatcher.escalation import ADMINISTRATOR_POLICY, AlertText, Escalation, on_channel
from dispatcher.messages import render_rules_refused, render_rules_restored
from dispatcher.metrics import Metrics
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert, AlertFacts, AuditEvent
from dispatcher.web.state import RulesStatus
from rules.config import ConfigError, Problem
from rules.expr import condition_variables
from rules.loader import RuleSet, load_ruleset
from rules.variables import EXPECTED_UNITS

log = logging.getLogger("yujing.rules")

RULES_REFUSED = "rules_refused"
RULES_ALERT_ID = "rules"  # Alert.rule_id of the rules-refused system alert
SHOWN_PROBLEMS = 20  # problems kept in /healthz and the audit event (all are logged)

#: File name → (size in bytes, modification time in ns): what the watch compares.
Snapshot = Mapping[str, tuple[int, int]]
Outcome = Literal["loaded", "unchanged", "refused", "unsettled"]


@dataclass
class RulesInForce:
    """The rule set the pipeline uses now; a reload swaps `ruleset` atomically."""

    ruleset: RuleSet
    status: RulesStatus

    def __call__(self) -> RuleSet:
        return self.ruleset


@dataclass(frozen=True)
class Reload:
    """What one look at changed rule files did."""

    outcome: Outcome
    content_hash: str | None = None  # of the set in force afterwards
    files: tuple[str, ...] = ()  # changed since the set in force was loaded
    problems: tuple[str, ...] = ()  # why it was refused
    notifications: int = 0


def load_rules(directory: Path, supplied: Collection[str] = EXPECTED_UNITS.keys()) -> RuleSet:
    """Load and check a rule set as the daemon needs it; ConfigError lists every problem.

    Beyond the loader's own checks, every forecast variable a rule reads must be
    one the forecast feed supplies.
    """
    ruleset = load_ruleset(directory)
    problems = feed_problems(ruleset, supplied)
    if problems:
        raise ConfigError(problems)
    return ruleset


def feed_problems(ruleset: RuleSet, supplied: Collection[str]) -> list[Problem]:
    """One problem per rule that reads a variable the forecast feed cannot supply."""
    problems = []
    for rule in ruleset.rules:
        used = frozenset[str]().union(
            *(condition_variables(lv.when) for lv in rule.levels if lv.when is not None)
        )
        unfed = sorted(used - set(supplied))
        if unfed:
            problems.append(
                Problem(
                    rule.file or "rules",
                    rule.line or 1,
                    1,
                    f"rule {rule.id} reads {', '.join(unfed)}, which the forecast feed cannot "
                    f"supply; expected one of {', '.join(sorted(supplied))}",
                )
            )
    return problems


def snapshot(directory: Path, also: Iterable[str] = ()) -> dict[str, tuple[int, int]]:
    """The rule files under `directory`, and the files `also` (included from elsewhere).

    Files under the directory are named relative to it; hidden files (editors'
    swap files) are left out. A file that is gone is simply not in the snapshot.
    """
    paths = {
        path.relative_to(directory).as_posix(): path
        for pattern in ("*.yaml", "*.yml")
        for path in directory.rglob(pattern)
        if not any(part.startswith(".") for part in path.relative_to(directory).parts)
    }
    for name in also:
        path = Path(name)
        if not path.resolve().is_relative_to(directory.resolve()):
            paths[str(path)] = path
    found: dict[str, tuple[int, int]] = {}
    for name, path in paths.items():
        try:
            stat = path.stat()
        except OSError:  # removed while we looked: the next look sees it gone
            continue
        if path.is_file():
            found[name] = (stat.st_size, stat.st_mtime_ns)
    return found


def changed_files(before: Snapshot, after: Snapshot) -> tuple[str, ...]:
    """Files added, removed or modified between two snapshots, by name."""
    return tuple(
        sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    )


@dataclass(frozen=True)
class RefusalAlarm:
    """The system alert of configuration files refused (rules, or the county's files).

    Raised once while the files stay broken (later refusals update its evidence),
    resolved when a valid set is in force again; administrators hear of both
    (`ADMINISTRATOR_POLICY`). Shared by the rule watch and the county watch
    (`dispatcher.configwatch`).
    """

    hazard: str
    rule_id: str  # Alert.rule_id of the system alert
    title: str
    what: str  # what was refused, in the officers' words
    kept: str  # what stays in force meanwhile

    def open_alert(self, session: Session) -> Alert | None:
        return session.scalar(
            select(Alert).where(
                Alert.kind == AlertKind.SYSTEM,
                Alert.hazard == self.hazard,
                Alert.state.in_(OPEN_ALERT_STATES),
            )
        )

    def raise_alert(
        self,
        session: Session,
        *,
        now: datetime,
        found: list[Problem],
        shown: list[str],
        escalation: Escalation,
        county: County,
    ) -> int | None:
        """Open the alert (None when it was open already: its evidence is updated)."""
        evidence = {"problems": shown, "count": len(found)}
        alert = self.open_alert(session)
        if alert is not None:  # the administrators already know the files are broken
            alert.evidence = evidence
            alert.updated_at = now
            return None

        def text(opened: AlertFacts) -> AlertText:
            body = render_rules_refused(
                sender=county.sender,
                since=now,
                where=_where(found[0]) if found else "配置文件",
                count=len(found),
                code=opened.code,
                timezone=county.timezone,
                what=self.what,
                kept=self.kept,
            )
            return AlertText(body, opened.title)

        _, notes = open_alert(
            session,
            NewAlert(
                kind=AlertKind.SYSTEM,
                hazard=self.hazard,
                rule_id=self.rule_id,
                title=self.title,
                level="orange",
                onset=now,
                evidence=evidence,
            ),
            escalation=escalation,
            text=text,
            data={"hazard": self.hazard, "count": len(found)},
            now=now,
            policy=ADMINISTRATOR_POLICY,
        )
        return len(notes)

    def resolve(
        self,
        session: Session,
        *,
        now: datetime,
        escalation: Escalation,
        county: County,
        rules: int,
        summary: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> int:
        """Resolve the open alert, if any: valid files are in force again."""
        alert = self.open_alert(session)
        if alert is None:
            return 0
        body = render_rules_restored(
            sender=county.sender,
            since=now,
            rules=rules,
            timezone=county.timezone,
            what=self.what,
            summary=summary,
        )
        notes = close_alert(
            session,
            alert,
            escalation=escalation,
            body=body,
            data={"hazard": self.hazard, **(data or {})},
            now=now,
        )
        log.info("%s alert %s resolved: valid files are in force", self.rule_id, alert.code)
        return len(notes)


RULES_ALARM = RefusalAlarm(
    RULES_REFUSED, RULES_ALERT_ID, "预警规则修改未生效", what="预警规则", kept="规则"
)


def open_rules_alert(session: Session) -> Alert | None:
    return RULES_ALARM.open_alert(session)


@dataclass
class RuleWatch:
    """Watches one rule directory and keeps `rules` to the last valid set in it."""

    directory: Path
    rules: RulesInForce
    sessions: sessionmaker[Session]
    county: County
    channel: str
    clock: Callable[[], datetime]
    seen: Snapshot  # the files as last read (taken before reading them)
    on_enqueued: Callable[[], None] = lambda: None
    loaded: Snapshot = field(default_factory=dict)  # the files of the set in force
    escalation: Escalation | None = None  # None: built-in policies, no roster
    metrics: Metrics = field(default_factory=Metrics)  # reload outcomes counted

    def _escalation(self) -> Escalation:
        return on_channel(self.escalation, self.county, self.channel)

    def __post_init__(self) -> None:
        if not self.loaded:
            self.loaded = dict(self.seen)

    def look(self) -> dict[str, tuple[int, int]]:
        """The watched files now: the directory's, and those the set in force includes."""
        return snapshot(self.directory, self.rules.ruleset.files)

    def record_start(self) -> int:
        """At start-up: audit the set in force if it differs from the last one audited,
        and resolve a rules alert left open by a previous run. Returns notifications."""
        ruleset = self.rules.ruleset
        now = self.clock()
        with self.sessions.begin() as session:
            last = session.scalar(
                select(AuditEvent)
                .where(AuditEvent.action == "rules.loaded")
                .order_by(desc(AuditEvent.id))
                .limit(1)
            )
            previous = last.data.get("content_hash") if last is not None else None
            if previous != ruleset.content_hash:
                self._audit_loaded(
                    session, now, ruleset, previous, tuple(sorted(self.seen)), at_start=True
                )
            count = self._resolve(session, now, ruleset)
        if count:
            self.on_enqueued()
        return count

    async def poll(self) -> Reload | None:
        """Look at the files; reload when they changed. None when nothing changed."""
        before = self.look()
        if before == self.seen:
            return None
        ruleset: RuleSet | None = None
        problems: list[Problem] = []
        try:
            ruleset = await asyncio.to_thread(load_rules, self.directory)
        except ConfigError as exc:
            problems = list(exc.problems)
        except Exception as exc:  # a loader bug must not take the rules in force with it
            log.exception("loading the rule files failed unexpectedly")
            problems = [Problem(str(self.directory), 1, 1, f"cannot load: {exc!r}")]
        if self.look() != before:
            log.info("rule files changed while being read; reading them again shortly")
            self.metrics.reloaded("unsettled")
            return Reload("unsettled", self.rules.ruleset.content_hash)
        reload = self.apply(before, ruleset, problems)
        self.metrics.reloaded(reload.outcome)
        return reload

    def apply(self, files: Snapshot, ruleset: RuleSet | None, problems: list[Problem]) -> Reload:
        """Put a freshly read set in force, or refuse it (`ruleset` None); `files` were read."""
        now = self.clock()
        changed = changed_files(self.loaded, files)
        in_force = self.rules.ruleset
        if ruleset is None:
            count = self._refuse(now, changed, problems)
            self.seen = dict(files)
            return Reload(
                "refused", in_force.content_hash, changed, tuple(map(str, problems)), count
            )

        outcome: Outcome = "unchanged"
        with self.sessions.begin() as session:
            if ruleset.content_hash != in_force.content_hash:
                outcome = "loaded"
                self._audit_loaded(session, now, ruleset, in_force.content_hash, changed)
            count = self._resolve(session, now, ruleset)
        status = self.rules.status
        if outcome == "loaded":
            # committed: now swap, in one assignment (a poll reads it once, at its start)
            self.rules.ruleset = ruleset
            status.loaded_at = now
            log.info(
                "rules reloaded: %d rules (%s), changed: %s",
                len(ruleset.rules),
                ruleset.content_hash[:12],
                ", ".join(changed) or "nothing",
            )
        status.content_hash = ruleset.content_hash
        status.rules = len(ruleset.rules)
        status.error = None
        self.seen = dict(files)
        self.loaded = dict(files)
        if count:
            self.on_enqueued()
        return Reload(outcome, ruleset.content_hash, changed, (), count)

    def _refuse(self, now: datetime, changed: tuple[str, ...], found: list[Problem]) -> int:
        in_force = self.rules.ruleset
        problems = [str(p) for p in found]
        log.error(
            "rule files changed (%s) but were refused; the rules loaded at %s (%s) stay in "
            "force. %d problem(s):\n%s",
            ", ".join(changed) or "?",
            self.rules.status.loaded_at.isoformat() if self.rules.status.loaded_at else "start",
            in_force.content_hash[:12],
            len(problems),
            "\n".join(problems),
        )
        shown = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        self.rules.status.error = "\n".join(shown) + (f"\n… and {more} more" if more else "")
        with self.sessions.begin() as session:
            audit.record(
                session,
                at=now,
                actor="system",
                action="rules.refused",
                subject="rules",
                data={
                    "in_force": in_force.content_hash,
                    "files": list(changed),
                    "problems": shown,
                    "count": len(problems),
                },
            )
            count = RULES_ALARM.raise_alert(
                session,
                now=now,
                found=found,
                shown=shown,
                escalation=self._escalation(),
                county=self.county,
            )
        if count is None:
            return 0
        self.on_enqueued()
        return count

    def _resolve(self, session: Session, now: datetime, ruleset: RuleSet) -> int:
        """Resolve an open rules alert: a valid set is in force again."""
        return RULES_ALARM.resolve(
            session,
            now=now,
            escalation=self._escalation(),
            county=self.county,
            rules=len(ruleset.rules),
            data={"content_hash": ruleset.content_hash},
        )

    def _audit_loaded(
        self,
        session: Session,
        now: datetime,
        ruleset: RuleSet,
        previous: str | None,
        files: tuple[str, ...],
        *,
        at_start: bool = False,
    ) -> None:
        audit.record(
            session,
            at=now,
            actor="system",
            action="rules.loaded",
            subject="rules",
            data={
                "content_hash": ruleset.content_hash,
                "previous_hash": previous,
                "rules": len(ruleset.rules),
                "files": list(files),
                "at_start": at_start,
            },
        )


def _where(problem: Problem) -> str:
    """'cold_wave.yaml第12行第5列': where the first problem is, short enough for an SMS."""
    return f"{Path(problem.file).name}第{problem.line}行第{problem.column}列"


def load_watched(directory: Path) -> tuple[RuleSet, dict[str, tuple[int, int]]]:
    """Load the rules at start-up, with the snapshot of the files as they were read.

    The directory is looked at before reading, so an edit made while loading is
    seen at the first poll.
    """
    before = snapshot(directory)
    ruleset = load_rules(directory)
    return ruleset, {**snapshot(directory, ruleset.files), **before}
