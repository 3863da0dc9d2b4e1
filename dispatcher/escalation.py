"""Escalation until acknowledged: policies, durable timers, the acknowledgement deadline.

An alert's escalation policy (escalation.yaml, per level, overridable per
hazard or per rule; built-in defaults without the file) is a list of steps:
after a delay, notify targets — zone roles, the duty officer and the leader on
duty on duty at that moment (per the roster), named people — on given channels,
optionally repeating every so often.

When an alert opens (`Escalation.start`, called by the lifecycle in the same
transaction as the transition) the first step is enqueued at once, and every
later step, every repeat and the acknowledgement deadline become rows of
`escalation_timers`, each with its plan (targets, channels, text). The
scheduler's `escalate_due` claims due rows with a lease (SKIP LOCKED on
PostgreSQL, like the outbox) and runs each in its own transaction, so a
restart or another instance picks them up and a failing one does not block
the others. An acknowledgement (`cancel_escalation`) cancels the rest; a
resolution or an upgrade/downgrade cancels the old alert's rest, and the new
alert starts its own level's policy.

A missed acknowledgement deadline (settings `YUJING_ACK_DEADLINE_*_SECONDS`)
records `alert.overdue` (迟报) in the audit trail and tells the leader on duty.

Channels a step names but this instance has not configured (say twilio_voice
without a voice provider) fall back to the default channel, with a log line
and a note in the audit event: a message on the wrong channel beats none.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

from pydantic import Field, ValidationError
from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import acklinks, audit
from dispatcher.alerts.lifecycle import enqueue
from dispatcher.county import ROLE_LABELS, County
from dispatcher.messages import append_link
from dispatcher.roster import Roster, load_roster
from dispatcher.routing import TARGETS, Recipient, recipients
from dispatcher.settings import Settings
from dispatcher.storage.models import Acknowledgement, Alert, EscalationTimer, Notification
from rules.config import (
    ConfigError,
    Document,
    Duration,
    Problem,
    Strict,
    load_yaml,
    parse_duration,
    problems_from_validation,
)
from rules.loader import RuleSet

__all__ = [
    "DEFAULT_DEADLINES",
    "DEFAULT_POLICIES",
    "ESCALATION_FILE",
    "ESCALATION_PREFIX",
    "AlertText",
    "Escalation",
    "EscalationRun",
    "Policies",
    "Policy",
    "Step",
    "cancel_escalation",
    "escalate_due",
    "load_policies",
    "parse_duration",
    "roster_and_escalation_problems",
]

log = logging.getLogger("yujing.escalation")

ESCALATION_FILE = "escalation.yaml"

#: Outbox `transition` prefix of the messages later steps and the deadline send;
#: an acknowledgement cancels those still pending (the warning itself still goes out).
ESCALATION_PREFIX: Final = "esc"
OVERDUE_TRANSITION: Final = "esc.overdue"

#: The channel name that means "this instance's default channel".
DEFAULT_CHANNEL: Final = "default"

LEVELS: Final = ("blue", "yellow", "orange", "red")

PENDING: Final = "pending"
DONE: Final = "done"
CANCELLED: Final = "cancelled"

# A claimed timer is run within milliseconds; past this, its runner died.
LEASE: Final = timedelta(seconds=60)

# The overdue notice to the leader on duty. The warning texts themselves come
# from dispatcher.messages; this one is composed of what the alert already said.
OVERDUE_TEXT: Final = (
    "【{sender}】迟报提醒：{summary}（编码{code}）已超过{minutes}分钟无人确认，"
    "请督促落实。回复1确认（编码{code}）"
)


# --- policies


@dataclass(frozen=True)
class Step:
    """After `after` (from the alert's opening), tell `targets` and `people` on `channels`.

    `repeat` more times every `every` (until acknowledged).
    """

    after: timedelta
    targets: tuple[str, ...]
    people: tuple[str, ...] = ()
    channels: tuple[str, ...] = (DEFAULT_CHANNEL,)
    repeat: int = 0
    every: timedelta | None = None

    def rounds(self) -> Iterator[tuple[int, timedelta]]:
        """(round, delay from the opening) of each time this step fires."""
        yield 0, self.after
        for n in range(1, self.repeat + 1):
            assert self.every is not None
            yield n, self.after + n * self.every


@dataclass(frozen=True)
class Policy:
    """The ordered steps for one kind of alert; `name` says where it came from."""

    name: str
    steps: tuple[Step, ...]


def _monitors_first(level: str) -> Policy:
    # blue/yellow: the people at the slope first, then the one who owns the
    # response, then the bureau (DOMAIN.md: roles and what they do)
    return Policy(
        f"default:{level}",
        (
            Step(timedelta(0), ("mass_monitor", "monitoring")),
            Step(timedelta(minutes=30), ("disaster_prevention",)),
            Step(timedelta(minutes=60), ("duty_officer",), repeat=2, every=timedelta(minutes=30)),
        ),
    )


def _everyone_at_once(level: str, remind: timedelta, times: int) -> Policy:
    # orange/red: evacuation may be needed, so the disaster-prevention person is
    # called and the leader on duty told from the first minute, with everyone else
    return Policy(
        f"default:{level}",
        (
            Step(
                timedelta(0),
                ("disaster_prevention",),
                channels=("twilio_voice", DEFAULT_CHANNEL),
            ),
            Step(
                timedelta(0),
                ("leader_on_duty", "duty_officer", "monitoring", "mass_monitor", "technical"),
            ),
            Step(
                remind,
                ("disaster_prevention", "duty_officer"),
                channels=("twilio_voice", DEFAULT_CHANNEL),
                repeat=times,
                every=remind,
            ),
        ),
    )


DEFAULT_POLICIES: Final[Mapping[str, Policy]] = {
    "blue": _monitors_first("blue"),
    "yellow": _monitors_first("yellow"),
    "orange": _everyone_at_once("orange", timedelta(minutes=10), 2),
    "red": _everyone_at_once("red", timedelta(minutes=5), 3),
    "system": Policy(
        "default:system",
        (
            Step(timedelta(0), ("duty_officer", "leader_on_duty")),
            Step(timedelta(minutes=30), ("duty_officer",), repeat=2, every=timedelta(minutes=30)),
        ),
    ),
}

#: Acknowledgement deadlines when settings give none (blue/yellow leave room for
#: the whole ladder: monitors → disaster-prevention person → duty officer).
DEFAULT_DEADLINES: Final[Mapping[str, timedelta]] = {
    "blue": timedelta(minutes=120),
    "yellow": timedelta(minutes=90),
    "orange": timedelta(minutes=15),
    "red": timedelta(minutes=10),
}


@dataclass(frozen=True)
class Policies:
    """Every policy in force: per level, per hazard and level, per rule and level."""

    levels: Mapping[str, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    hazards: Mapping[tuple[str, str], Policy] = field(default_factory=dict)
    rules: Mapping[tuple[str, str], Policy] = field(default_factory=dict)

    def all(self) -> list[Policy]:
        """Every policy, each once."""
        out: dict[str, Policy] = {}
        for policy in (*self.levels.values(), *self.hazards.values(), *self.rules.values()):
            out.setdefault(policy.name, policy)
        return list(out.values())

    def for_alert(self, alert: Alert) -> Policy:
        """The rule's policy for this level, else the hazard's, else the level's."""
        if alert.kind == "system":
            return self.levels["system"]
        return (
            self.rules.get((alert.rule_id, alert.level))
            or self.hazards.get((alert.hazard, alert.level))
            or self.levels.get(alert.level)
            or DEFAULT_POLICIES[alert.level if alert.level in LEVELS else "orange"]
        )


# --- escalation.yaml


class _StepConfig(Strict):
    after: Duration
    notify: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=lambda: [DEFAULT_CHANNEL], min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)
    every: Duration | None = None


class _PolicyConfig(Strict):
    steps: list[_StepConfig] = Field(min_length=1)


class _LevelsConfig(Strict):
    blue: _PolicyConfig | None = None
    yellow: _PolicyConfig | None = None
    orange: _PolicyConfig | None = None
    red: _PolicyConfig | None = None


class _OverrideConfig(Strict):
    hazard: str | None = None
    rule: str | None = None
    levels: _LevelsConfig


class _EscalationConfig(Strict):
    levels: _LevelsConfig = Field(default_factory=_LevelsConfig)
    system: _PolicyConfig | None = None
    overrides: list[_OverrideConfig] = Field(default_factory=list)


class _EscalationFile(Strict):
    escalation: dict[str, Any]


def load_policies(config_dir: Path, county: County, ruleset: RuleSet | None = None) -> Policies:
    """Read `escalation.yaml` of `config_dir`; without the file, the built-in defaults.

    Levels the file leaves out keep their defaults. With `ruleset`, an override
    naming a hazard or rule it does not have is refused (a typo would otherwise
    silently never apply). Raises ConfigError listing every problem
    (file:line:column).
    """
    path = config_dir / ESCALATION_FILE
    if not path.exists():
        return Policies()
    doc = load_yaml(path)
    problems: list[Problem] = []
    config = _validate(doc, problems)
    if config is None:
        raise ConfigError(problems)
    hazards = rules = None
    if ruleset is not None:
        hazards = set(ruleset.hazards) | {r.hazard for r in ruleset.rules}
        rules = {r.id for r in ruleset.rules}
    problems.extend(_check(doc, config, county, hazards, rules))
    if problems:
        raise ConfigError(problems)

    levels = dict(DEFAULT_POLICIES)
    for level in LEVELS:
        given = getattr(config.levels, level)
        if given is not None:
            levels[level] = _policy(f"escalation.yaml:{level}", given)
    if config.system is not None:
        levels["system"] = _policy("escalation.yaml:system", config.system)
    by_hazard: dict[tuple[str, str], Policy] = {}
    by_rule: dict[tuple[str, str], Policy] = {}
    for override in config.overrides:
        for level in LEVELS:
            given = getattr(override.levels, level)
            if given is None:
                continue
            if override.rule is not None:
                by_rule[(override.rule, level)] = _policy(f"rule:{override.rule}:{level}", given)
            elif override.hazard is not None:
                name = f"hazard:{override.hazard}:{level}"
                by_hazard[(override.hazard, level)] = _policy(name, given)
    return Policies(levels, by_hazard, by_rule)


def _policy(name: str, config: _PolicyConfig) -> Policy:
    return Policy(
        name,
        tuple(
            Step(
                after=s.after,
                targets=tuple(s.notify),
                people=tuple(s.people),
                channels=tuple(dict.fromkeys(s.channels)),
                repeat=s.repeat,
                every=s.every,
            )
            for s in config.steps
        ),
    )


def _validate(doc: Document, problems: list[Problem]) -> _EscalationConfig | None:
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        problems.append(
            doc.problem(
                (), f"the file is {what}; expected a mapping with the top-level key escalation:"
            )
        )
        return None
    try:
        _EscalationFile.model_validate(doc.data)
        return _EscalationConfig.model_validate(doc.data["escalation"])
    except ValidationError as exc:
        prefix = ("escalation",) if "escalation" in doc.data else ()
        problems.extend(problems_from_validation(doc, exc, prefix))
        return None


def _policies_in(
    config: _EscalationConfig,
) -> Iterator[tuple[tuple[str | int, ...], _PolicyConfig]]:
    for level in LEVELS:
        given = getattr(config.levels, level)
        if given is not None:
            yield ("escalation", "levels", level), given
    if config.system is not None:
        yield ("escalation", "system"), config.system
    for index, override in enumerate(config.overrides):
        for level in LEVELS:
            given = getattr(override.levels, level)
            if given is not None:
                yield ("escalation", "overrides", index, "levels", level), given


def _check(
    doc: Document,
    config: _EscalationConfig,
    county: County,
    hazards: Collection[str] | None,
    rules: Collection[str] | None,
) -> Iterator[Problem]:
    for loc, policy in _policies_in(config):
        zone_less = loc[1] == "system"
        for index, step in enumerate(policy.steps):
            at = (*loc, "steps", index)
            if not step.notify and not step.people:
                yield doc.problem(
                    at, "a step must notify someone: give notify: [targets] and/or people: [ids]"
                )
            if step.repeat and step.every is None:
                yield doc.problem((*at, "repeat"), "repeat needs every: (e.g. every: 30m)")
            if step.every is not None and step.every <= timedelta(0):
                yield doc.problem((*at, "every"), "every must be longer than 0")
            for position, target in enumerate(step.notify):
                if target not in TARGETS:
                    hint = difflib.get_close_matches(target, TARGETS, n=1)
                    guess = f"did you mean {hint[0]!r}? " if hint else ""
                    yield doc.problem(
                        (*at, "notify", position),
                        f"unknown target {target!r}; {guess}expected one of: "
                        f"{', '.join(TARGETS)} (named people go under people:)",
                    )
                elif zone_less and target in ROLE_LABELS:
                    yield doc.problem(
                        (*at, "notify", position),
                        f"system alerts have no zone, so {target!r} means nobody; use "
                        "duty_officer, leader_on_duty or people:",
                    )
            for position, person_id in enumerate(step.people):
                if person_id not in county.people:
                    hint = difflib.get_close_matches(person_id, sorted(county.people), n=1)
                    guess = f"; did you mean {hint[0]!r}?" if hint else ""
                    yield doc.problem(
                        (*at, "people", position),
                        f"unknown person {person_id!r}, not in people.yaml{guess}",
                    )
        if policy.steps and policy.steps[0].after != timedelta(0):
            yield doc.problem(
                (*loc, "steps", 0, "after"),
                "the first step must be 'after: 0' (it goes out with the warning itself)",
            )
    for index, override in enumerate(config.overrides):
        at = ("escalation", "overrides", index)
        if (override.hazard is None) == (override.rule is None):
            yield doc.problem(at, "an override names exactly one of hazard: or rule:")
            continue
        key, name, known = (
            ("rule", override.rule, rules)
            if override.rule is not None
            else ("hazard", override.hazard, hazards)
        )
        if known is not None and name not in known:
            hint = difflib.get_close_matches(str(name), sorted(known), n=1)
            guess = f"; did you mean {hint[0]!r}?" if hint else ""
            yield doc.problem((*at, key), f"unknown {key} {name!r}, not in rules/{guess}")


def roster_and_escalation_problems(
    config_dir: Path, county: County, ruleset: RuleSet | None = None
) -> list[Problem]:
    """Every problem of roster.yaml and escalation.yaml (for `yujing rules check`)."""
    problems: list[Problem] = []
    try:
        load_roster(config_dir, county)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        load_policies(config_dir, county, ruleset)
    except ConfigError as exc:
        problems.extend(exc.problems)
    return problems


# --- running policies


@dataclass(frozen=True)
class AlertText:
    """The words of an alert's warning: re-sent by later steps, quoted when overdue."""

    body: str  # the message as first sent
    summary: str  # e.g. 柳林镇…不稳定斜坡寒潮黄色预警, for the overdue notice


@dataclass(frozen=True)
class EscalationRun:
    """What one `escalate_due` call did."""

    timers: int = 0
    notifications: int = 0


@dataclass(frozen=True)
class Escalation:
    """Everything escalation needs: the county, its roster, policies, channels, deadlines."""

    county: County
    roster: Roster
    policies: Policies
    channels: frozenset[str]  # names of the channels this instance has configured
    default_channel: str
    deadlines: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    actor: str = "escalation"
    # (alert id, person id, now) → signed ack link or None (dispatcher.acklinks)
    ack_link: Callable[[int, str, datetime], str | None] | None = None

    @classmethod
    def plain(cls, county: County, channel: str) -> Escalation:
        """No roster, built-in policies, one channel: for callers that configure nothing."""
        return cls(county, Roster.unconfigured(county), Policies(), frozenset({channel}), channel)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        county: County,
        roster: Roster,
        policies: Policies,
        channels: Iterable[str],
    ) -> Escalation:
        deadlines = {
            level: timedelta(seconds=getattr(settings, f"ack_deadline_{level}_seconds"))
            for level in LEVELS
        }
        configured = frozenset(channels)
        named = {
            name
            for policy in policies.all()
            for step in policy.steps
            for name in step.channels
            if name != DEFAULT_CHANNEL
        }
        for name in sorted(named - configured - {settings.default_channel}):
            log.warning(
                "escalation policies name channel %s, which is not configured here: "
                "its messages go by %s instead",
                name,
                settings.default_channel,
            )
        return cls(
            county,
            roster,
            policies,
            configured,
            settings.default_channel,
            deadlines,
            ack_link=partial(acklinks.ack_link, settings),
        )

    def with_channel(self, channel: str) -> Escalation:
        """The same escalation with `channel` as the default (a caller's explicit choice)."""
        if channel == self.default_channel:
            return self
        return replace(self, default_channel=channel, channels=self.channels | {channel})

    def deadline(self, level: str) -> timedelta:
        return self.deadlines.get(level, DEFAULT_DEADLINES["orange"])

    def channel_for(self, name: str) -> tuple[str, bool]:
        """(the channel to use for `name`, whether it fell back to the default)."""
        if name == DEFAULT_CHANNEL or name == self.default_channel:
            return self.default_channel, False
        if name in self.channels:
            return name, False
        log.info("channel %s is not configured here: using %s instead", name, self.default_channel)
        return self.default_channel, True

    # --- an alert opens, changes level or ends

    def start(
        self,
        session: Session,
        alert: Alert,
        *,
        transition: str,
        text: AlertText,
        now: datetime,
        previous: Alert | None = None,
    ) -> list[Notification]:
        """Begin the alert's policy: enqueue the first step now and plan the rest.

        `transition` (new, upgraded, downgraded) names the first step's
        messages. With `previous` (the alert this one supersedes) its escalation
        is cancelled and everyone told about it hears about the change too.
        Does not commit.
        """
        policy = self.policies.for_alert(alert)
        deadline = now + self.deadline(alert.level)
        told: list[Recipient] = []
        if previous is not None:
            cancel_escalation(session, previous, at=now, actor=self.actor, reason="superseded")
            told = notified_people(session, previous, self.county)
        planned = list(self._plans(policy, text, transition))
        now_items = [item for item in planned if item["delay"] == timedelta(0)]
        later = sorted(
            (item for item in planned if item["delay"] > timedelta(0)),
            key=lambda item: item["delay"],
        )
        notes: list[Notification] = []
        reached = False
        for item in now_items:
            fired, told_now = self._fire(session, alert, item, now, extra=told)
            notes.extend(fired)
            reached, told = reached or bool(told_now), []
        while not reached and later:
            # a first step that reaches nobody (a zone without monitors, say) is
            # followed at once by the next one: no warning waits in silence
            fired, told_now = self._fire(session, alert, later.pop(0), now, extra=told)
            notes.extend(fired)
            reached, told = bool(told_now), []
        timers = [self._timer(alert, item, now + item["delay"], now) for item in later]
        timers.append(self._deadline_timer(alert, policy, text, deadline, now))
        session.add_all(timers)
        session.flush()
        audit.record(
            session,
            at=now,
            actor=self.actor,
            action="escalation.started",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "policy": policy.name,
                "deadline": deadline.isoformat(),
                "planned": [
                    {"step": t.step, "round": t.round, "kind": t.kind, "due": t.due_at.isoformat()}
                    for t in timers
                ],
            },
        )
        return notes

    def close(
        self, session: Session, alert: Alert, *, transition: str, body: str, now: datetime
    ) -> list[Notification]:
        """The alert ended: cancel the rest of its escalation, tell everyone who was told."""
        cancel_escalation(session, alert, at=now, actor=self.actor, reason=transition)
        notes = [
            enqueue(session, alert, transition, r, self.default_channel, body, now)
            for r in notified_people(session, alert, self.county)
        ]
        session.flush()
        return notes

    # --- timers

    def run_timer(self, session: Session, timer: EscalationTimer, now: datetime) -> int:
        """Fire one due timer (already locked by the caller); returns notifications enqueued."""
        alert = session.get_one(Alert, timer.alert_id)
        timer.lease_until = None
        timer.finished_at = now
        if alert.state != "firing":
            # acknowledged or closed meanwhile; cancel_escalation normally got here first
            timer.status = CANCELLED
            return 0
        timer.status = DONE
        if timer.kind == "deadline":
            return self._overdue(session, alert, timer, now)
        later = session.scalar(
            select(EscalationTimer.round).where(
                EscalationTimer.alert_id == alert.id,
                EscalationTimer.kind == "step",
                EscalationTimer.step == timer.step,
                EscalationTimer.round > timer.round,
                EscalationTimer.status == PENDING,
                EscalationTimer.due_at <= now,
            )
        )
        if later is not None:
            # catching up after downtime: one reminder, not every one missed
            audit.record(
                session,
                at=now,
                actor=self.actor,
                action="escalation.skipped",
                subject=f"alert:{alert.id}",
                data={"code": alert.code, "step": timer.step, "round": timer.round},
            )
            return 0
        notes, _ = self._fire(session, alert, {**timer.plan, "step": timer.step}, now)
        return len(notes)

    def _plans(self, policy: Policy, text: AlertText, transition: str) -> Iterator[dict[str, Any]]:
        for index, step in enumerate(policy.steps):
            for round_, delay in step.rounds():
                first = step.after == timedelta(0) and round_ == 0
                yield {
                    "policy": policy.name,
                    "step": index,
                    "round": round_,
                    "delay": delay,
                    "targets": list(step.targets),
                    "people": list(step.people),
                    "channels": list(step.channels),
                    "transition": transition if first else _step_transition(index, round_),
                    "body": text.body,
                }

    def _timer(
        self, alert: Alert, item: dict[str, Any], due: datetime, now: datetime
    ) -> EscalationTimer:
        plan = {k: v for k, v in item.items() if k not in ("delay", "step", "round")}
        return EscalationTimer(
            alert_id=alert.id,
            kind="step",
            step=item["step"],
            round=item["round"],
            due_at=due,
            status=PENDING,
            plan=plan,
            created_at=now,
        )

    def _deadline_timer(
        self, alert: Alert, policy: Policy, text: AlertText, due: datetime, now: datetime
    ) -> EscalationTimer:
        minutes = round(self.deadline(alert.level).total_seconds() / 60)
        body = OVERDUE_TEXT.format(
            sender=self.county.sender, summary=text.summary, code=alert.code, minutes=minutes
        )
        return EscalationTimer(
            alert_id=alert.id,
            kind="deadline",
            step=0,
            round=0,
            due_at=due,
            status=PENDING,
            plan={
                "policy": policy.name,
                "targets": ["leader_on_duty"],
                "people": [],
                "channels": [DEFAULT_CHANNEL],
                "transition": OVERDUE_TRANSITION,
                "body": body,
                "minutes": minutes,
            },
            created_at=now,
        )

    def _fire(
        self,
        session: Session,
        alert: Alert,
        plan: Mapping[str, Any],
        now: datetime,
        *,
        extra: Sequence[Recipient] = (),
        action: str = "escalation.step",
    ) -> tuple[list[Notification], list[dict[str, Any]]]:
        """Enqueue one step's messages and record it; people who acknowledged are skipped."""
        routed = recipients(
            self.county,
            self.roster,
            zone_id=alert.zone_id,
            targets=plan["targets"],
            people=plan.get("people", ()),
            at=now,
        )
        acked = set(
            session.scalars(
                select(Acknowledgement.person_id).where(Acknowledgement.alert_id == alert.id)
            )
        )
        people = list(routed.recipients)
        seen = {r.person_id for r in people}
        people.extend(r for r in extra if r.person_id not in seen)
        channels: list[tuple[str, str, bool]] = []
        for name in plan["channels"]:
            used, fell_back = self.channel_for(name)
            if used not in {c for _, c, _ in channels}:
                channels.append((name, used, fell_back))
        # two steps firing together may name one person: one message each way
        already = {
            (person, channel)
            for person, channel in session.execute(
                select(Notification.person_id, Notification.channel).where(
                    Notification.alert_id == alert.id,
                    Notification.transition == plan["transition"],
                )
            )
        }
        notes: list[Notification] = []
        told: list[dict[str, Any]] = []
        for person in people:
            if person.person_id in acked:
                continue
            # people told about the alert this one replaces hear of the change by the default
            person_channels = (
                channels if person.role != "notified" else [("", self.default_channel, False)]
            )
            for _, used, _ in person_channels:
                if (person.person_id, used) in already:
                    continue
                body = plan["body"]
                if self.ack_link is not None and used in acklinks.LINK_CHANNELS:
                    body = append_link(body, self.ack_link(alert.id, person.person_id, now))
                notes.append(enqueue(session, alert, plan["transition"], person, used, body, now))
                told.append({"person": person.person_id, "role": person.role, "channel": used})
        session.flush()
        audit.record(
            session,
            at=now,
            actor=self.actor,
            action=action,
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "policy": plan.get("policy"),
                "step": plan.get("step", 0),
                "round": plan.get("round", 0),
                "targets": list(plan["targets"]),
                "told": told,
                "skipped_acknowledged": sorted(r.person_id for r in people if r.person_id in acked),
                "unrostered": routed.unrostered,
                "channel_fallbacks": [f"{n}→{u}" for n, u, fb in channels if fb],
            },
        )
        return notes, told

    def _overdue(
        self, session: Session, alert: Alert, timer: EscalationTimer, now: datetime
    ) -> int:
        audit.record(
            session,
            at=now,
            actor=self.actor,
            action="alert.overdue",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "level": alert.level,
                "deadline": timer.due_at.isoformat(),
                "minutes": timer.plan.get("minutes"),
            },
        )
        notes, _ = self._fire(session, alert, {**timer.plan, "step": "deadline"}, now)
        return len(notes)


def _step_transition(step: int, round_: int) -> str:
    return f"{ESCALATION_PREFIX}{step}" + (f".{round_}" if round_ else "")


def notified_people(session: Session, alert: Alert, county: County) -> list[Recipient]:
    """Everyone a message about `alert` was meant for (not cancelled), each once."""
    rows = session.execute(
        select(Notification.person_id, Notification.recipient_name, Notification.address)
        .where(
            Notification.alert_id == alert.id,
            Notification.status != CANCELLED,
            Notification.person_id.is_not(None),
        )
        .order_by(Notification.id)
    ).all()
    out: list[Recipient] = []
    seen: set[str] = set()
    for person_id, name, address in rows:
        if person_id is None or person_id in seen:
            continue
        seen.add(person_id)
        person = county.people.get(person_id)
        if person is not None:
            out.append(Recipient(person.id, person.name, person.phone, "notified"))
        else:
            out.append(Recipient(person_id, name, address, "notified"))
    return out


def cancel_escalation(
    session: Session, alert: Alert, *, at: datetime, actor: str, reason: str
) -> tuple[list[int], list[int]]:
    """Cancel the alert's pending timers and its escalation messages not yet sent.

    Returns (timer ids, notification ids) cancelled; records one audit event
    when anything was cancelled. Does not commit.
    """
    # RETURNING: exactly the rows this statement changed, not those a worker claimed meanwhile
    timers = sorted(
        session.scalars(
            update(EscalationTimer)
            .where(EscalationTimer.alert_id == alert.id, EscalationTimer.status == PENDING)
            .values(status=CANCELLED, finished_at=at, lease_until=None)
            .returning(EscalationTimer.id),
            execution_options={"synchronize_session": False},
        )
    )
    notes = sorted(
        session.scalars(
            update(Notification)
            .where(
                Notification.alert_id == alert.id,
                Notification.status == "pending",
                Notification.transition.startswith(ESCALATION_PREFIX),
            )
            .values(status=CANCELLED, finished_at=at)
            .returning(Notification.id),
            execution_options={"synchronize_session": False},
        )
    )
    if timers or notes:
        audit.record(
            session,
            at=at,
            actor=actor,
            action="escalation.cancelled",
            subject=f"alert:{alert.id}",
            data={"code": alert.code, "reason": reason, "timers": timers, "notifications": notes},
        )
    return timers, notes


def serialise_with_audit(session: Session) -> None:
    """Queue behind other audit writers now, before taking any row lock.

    Every writer appends to the audit chain, which on PostgreSQL takes one
    advisory lock; taking it first keeps the lock order the same everywhere
    (chain, then alert, then timers) so concurrent acknowledgements and timers
    cannot deadlock: acknowledgements, timers and the lifecycle all take it
    before touching alert or timer rows. SQLite's BEGIN IMMEDIATE already
    admits one writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_CHAIN_LOCK_KEY}
        )


def escalate_due(
    sessions: sessionmaker[Session],
    escalation: Escalation,
    now: datetime,
    *,
    limit: int = 200,
) -> EscalationRun:
    """Run every escalation timer due at `now`; the scheduler calls this every few seconds.

    Claims up to `limit` due timers in one short transaction (a lease; SKIP
    LOCKED on PostgreSQL, so instances never run the same timer), then runs each
    in its own transaction, guarded by the lease: a timer an acknowledgement
    cancelled meanwhile is skipped, and a runner that dies leaves its timers to
    be claimed again when the lease runs out.
    """
    lease_until = now + LEASE
    with sessions.begin() as session:
        rows = session.scalars(
            select(EscalationTimer)
            .where(
                EscalationTimer.status == PENDING,
                EscalationTimer.due_at <= now,
                or_(EscalationTimer.lease_until.is_(None), EscalationTimer.lease_until < now),
            )
            .order_by(EscalationTimer.due_at, EscalationTimer.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.lease_until = lease_until
        claimed = [row.id for row in rows]
    fired = notified = 0
    for timer_id in claimed:
        try:
            with sessions.begin() as session:
                # the chain lock first, as every writer takes it (see serialise_with_audit);
                # it also orders this timer after any acknowledgement in progress
                serialise_with_audit(session)
                timer = session.scalar(
                    select(EscalationTimer)
                    .where(
                        and_(
                            EscalationTimer.id == timer_id,
                            EscalationTimer.status == PENDING,
                            EscalationTimer.lease_until == lease_until,
                        )
                    )
                    .with_for_update()
                )
                if timer is None:
                    continue  # cancelled, or re-claimed after our lease ran out
                notified += escalation.run_timer(session, timer, now)
                fired += 1
        except Exception:
            # one broken timer must not hold up the others; it is retried after the lease
            log.exception("escalation timer %d failed; retrying after its lease", timer_id)
    if fired:
        log.info("escalation: %d timers fired, %d notifications", fired, notified)
    return EscalationRun(fired, notified)
