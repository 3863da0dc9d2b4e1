# Long module: one policy run end to end (start, fire, deadline, close), also per poll
"""Running a policy: an alert opens, its steps fire, its deadline passes, it closes.

When an alert opens (`Escalation.start`, called by the lifecycle in the same
transaction as the transition) the first step is enqueued at once, and every
later step, every repeat and the acknowledgement deadline become timers
(`dispatcher.escalation.timers`), each with its `PlannedStep`. A missed
acknowledgement deadline records `alert.overdue` (迟报) and tells the leader on
duty. When the alert closes (`Escalation.close`) the rest is cancelled and
everyone who was told hears of it.

Channels a step names but this instance has not configured (say twilio_voice
without a voice provider) fall back to the default channel, with a log line
and a note in the audit event: a message on the wrong channel beats none.
People are told on the channels that address a phone; a step's audiences
(the zone's village loudspeakers, groups) on their own channel, which has no
such fallback — a phone channel cannot address a village or a robot — so an
audience whose channel is not configured here is noted as unreached.

A hazard alert runs its zone's share of its policy, an event the bureau's
(`Escalation.policy_for`); an event's reminders and its overdue notice are
worded when they fire, from what its zones say then (`members`), and none is
sent when no zone waits any more.

Every message carries the text of its channel's medium (the alert's
`AlertText.bodies`, rendered once as it opens, with the rule's template for
that medium); a signed acknowledgement link is added only on channels that
carry links, and only to a person's own message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.registry import medium_of
from dispatcher import acklinks, audit, logs
from dispatcher.county import County
from dispatcher.escalation.config import warn_unconfigured
from dispatcher.escalation.fire import Ways, fire, resolve_ways
from dispatcher.escalation.members import event_reminder
from dispatcher.escalation.plan import AlertText, PlannedStep, overdue_transition, step_transition
from dispatcher.escalation.policy import (
    DEFAULT_CHANNEL,
    DEFAULT_DEADLINES,
    Policies,
    Policy,
    Step,
    bureau_part,
    zone_part,
)
from dispatcher.escalation.timers import cancel_escalation, cancel_escalations
from dispatcher.escalation.told import AlertRef, Told, notified_people, told_of
from dispatcher.outbox.rows import QueuedRow, enqueue, queue
from dispatcher.roster import Roster
from dispatcher.routing import Recipient
from dispatcher.settings import Settings
from dispatcher.states import (
    AlertKind,
    AlertState,
    TimerKind,
    TimerStatus,
)
from dispatcher.storage import held
from dispatcher.storage.models import Alert, AlertFacts, EscalationTimer
from rules.types import Level

__all__ = ["AlertText", "Escalation", "enqueue", "on_channel"]

log = logging.getLogger("yujing.escalation")

# The overdue notice to the leader on duty. The warning texts themselves come
# from dispatcher.messages; this one is composed of what the alert already said.
OVERDUE_TEXT: Final = (
    "【{sender}】迟报提醒：{summary}（编码{code}）已超过{minutes}分钟无人确认，"
    "请督促落实。回复1确认（编码{code}）"
)


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
    # (id of a policy, alert kind) → (that policy, the share of it alerts of that kind do):
    # a province opens tens of thousands of alerts on a handful of policies
    _parts: dict[tuple[int, str], tuple[Policy, Policy]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    # a step's channel names → how they are sent here (`ways`)
    _ways: dict[tuple[str, ...], Ways] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    # (id of a policy, epoch) → (that policy, its firings at once, later): `_schedule`
    _schedules: dict[tuple[int, int], tuple[Policy, tuple[_Firing, ...], tuple[_Firing, ...]]] = (
        field(default_factory=dict, init=False, compare=False, repr=False)
    )

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
            for level in (lv.key for lv in Level)
        }
        configured = frozenset(channels)
        warn_unconfigured(policies, county, configured, settings.default_channel)
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

    def policy_for(self, alert: AlertFacts) -> Policy:
        """The policy `alert` escalates by: a hazard alert does its zone's share of its
        level's policy, its event the bureau's share (`policy.zone_part`,
        `policy.bureau_part`); a system alert its own."""
        policy = self.policies.for_alert(alert)
        if alert.kind not in (AlertKind.HAZARD, AlertKind.EVENT):
            return policy
        known = self._parts.get((id(policy), alert.kind))
        if known is not None and known[0] is policy:
            return known[1]
        split = zone_part if alert.kind == AlertKind.HAZARD else bureau_part
        part = split(policy, self.is_bureau)
        self._parts[(id(policy), alert.kind)] = (policy, part)
        return part

    @property
    def _terms(self) -> dict[str, Any]:
        return {"default_channel": self.default_channel, "deadline": self.deadline}

    def is_bureau(self, person_id: str) -> bool:
        """Whether this person is bureau staff (has a duty role in people.yaml)."""
        person = self.county.people.get(person_id)
        return person is not None and person.duty_role is not None

    def deadline(self, level: str) -> timedelta:
        return self.deadlines.get(level, DEFAULT_DEADLINES["orange"])

    def channel_for(self, name: str) -> tuple[str, bool]:
        """(the channel to use for `name`, whether it fell back to the default)."""
        if name == DEFAULT_CHANNEL or name == self.default_channel:
            return self.default_channel, False
        if name in self.channels:
            return name, False
        logs.log_once(log, "channel %s not configured here: using %s", name, self.default_channel)
        return self.default_channel, True

    def ways(self, names: tuple[str, ...]) -> Ways:
        """How a step naming the channels `names` sends (`fire.resolve_ways`): worked out once
        per step's names, as every alert's step asks (`channel_for` depends on this
        escalation alone, and says a fallback once per process anyway)."""
        known = self._ways.get(names)
        if known is None:
            known = self._ways[names] = resolve_ways(names, self.channel_for)
        return known

    # --- an alert opens, changes level or ends

    def start(
        self,
        session: Session,
        alert: AlertFacts,
        *,
        transition: str,
        text: AlertText,
        now: datetime,
        previous: Alert | None = None,
        policy: Policy | None = None,
        fresh: bool = False,
    ) -> list[QueuedRow]:
        """Begin the alert's policy: enqueue the first step now and plan the rest.

        `transition` (new, upgraded, downgraded) names the first step's
        messages. With `previous` (the alert this one supersedes) its escalation
        is cancelled and everyone told about it hears about the change too.
        `policy` replaces the one escalation.yaml gives the alert (a built-in
        audience, such as the administrators'). `fresh`: the alert opened in
        this transaction (nobody acknowledged it, nothing was sent about it), so
        its steps fire without reading either back. Does not commit.
        """
        policy = policy or self.policy_for(alert)
        deadline = now + self.deadline(alert.level)
        told: list[Recipient] = []
        if previous is not None:
            cancel_escalation(session, previous, at=now, actor=self.actor, reason="superseded")
            told = notified_people(session, previous, self.county)
        now_items, later = self._plans(policy, text, transition, alert.epoch)
        notes: list[QueuedRow] = []
        reached = False
        keys: set[str] | None = set() if fresh else None
        for item in now_items:
            fired, told_now = self._fire(session, alert, item, now, extra=told, fresh=keys)
            notes.extend(fired)
            reached, told = reached or _people_told(told_now), []
        while not reached and later:
            # a first step that reaches no person (a zone without monitors, say)
            # is followed at once by the next one: no warning waits in silence,
            # and a loudspeaker or a group post is no one who can acknowledge
            fired, told_now = self._fire(session, alert, later.pop(0), now, extra=told, fresh=keys)
            notes.extend(fired)
            reached, told = _people_told(told_now), []
        timers = [self._timer(alert, item, now + item.delay, now) for item in later]
        timers.append(self._deadline_timer(alert, policy, text, deadline, now))
        _add_timers(session, timers)
        audit.append(
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
                    {
                        "step": t["step"],
                        "round": t["round"],
                        "kind": t["kind"],
                        "due": t["due_at"].isoformat(),
                    }
                    for t in timers
                ],
                **({"epoch": alert.epoch} if alert.epoch else {}),
            },
        )
        return notes

    def close(
        self,
        session: Session,
        alert: Alert,
        *,
        transition: str,
        body: str,
        now: datetime,
        bodies: Mapping[str, str] | None = None,
    ) -> list[QueuedRow]:
        """The alert ended: cancel the rest of its escalation, tell everyone who was told.

        People hear it on the default channel (`body`); the villages and groups
        that were told hear it on their own channel, in their medium's words
        from `bodies` when given.
        """
        text = AlertText(body, "", bodies or {})
        (notes,) = self.close_all(session, [(alert, text)], transition=transition, now=now)
        session.flush()
        return notes

    def close_all(
        self,
        session: Session,
        closings: Sequence[tuple[AlertRef, AlertText]],
        *,
        transition: str,
        now: datetime,
        before: Callable[[AlertRef], object] = lambda alert: None,
    ) -> list[list[QueuedRow]]:
        """`close` for many alerts, each with its words: their escalations cancelled
        and their people told with a few statements for all. `before(alert)` is
        called ahead of each alert's own audit events (its caller's event first,
        as when one alert at a time is closed). The alerts may be `Alert`s or only
        their columns. Returns each alert's notifications, in order; does not commit."""
        alerts = [alert for alert, _ in closings]
        cancel_escalations(
            session, alerts, at=now, actor=self.actor, reason=transition, before=before
        )
        return self.tell_all(session, closings, transition=transition, now=now)

    def tell(
        self, session: Session, alert: Alert, *, transition: str, text: AlertText, now: datetime
    ) -> list[QueuedRow]:
        """Tell everyone who was told about `alert` (people on the default channel,
        villages and groups on theirs) of `transition`; does not commit."""
        (notes,) = self.tell_all(session, [(alert, text)], transition=transition, now=now)
        session.flush()
        return notes

    def tell_all(
        self,
        session: Session,
        tellings: Sequence[tuple[AlertRef, AlertText]],
        *,
        transition: str,
        now: datetime,
    ) -> list[list[QueuedRow]]:
        """`tell` for many alerts, each with its words; who was told about them is read
        in one query per thousand, and each message queued as `outbox.rows.queue`
        queues it (held for the batch insert inside a held-rows batch) without
        needing the alert's object. Returns each alert's notifications; does not commit."""
        told = told_of(session, [alert.id for alert, _ in tellings], self.county)
        out: list[list[QueuedRow]] = []
        default_medium = medium_of(self.default_channel)
        for alert, text in tellings:
            people, audiences = told[alert.id]
            body = text.for_medium(default_medium)
            notes = [
                queue(session, alert, transition, r, self.default_channel, body, now)
                for r in people
            ]
            for key, name, address, channel in audiences:
                if channel in self.channels:
                    body = text.for_medium(medium_of(channel))
                    to = Told(name, address)
                    notes.append(
                        queue(session, alert, transition, to, channel, body, now, audience=key)
                    )
            out.append(notes)
        return out

    # --- timers

    def run_timer(self, session: Session, timer: EscalationTimer, now: datetime) -> int:
        """Fire one due timer (already locked by the caller); returns notifications enqueued."""
        alert = session.get_one(Alert, timer.alert_id)
        timer.lease_until = None
        timer.finished_at = now
        if alert.state != AlertState.FIRING:
            # acknowledged or closed meanwhile; cancel_escalation normally got here first
            timer.status = TimerStatus.CANCELLED
            return 0
        timer.status = TimerStatus.DONE
        planned = PlannedStep.of_timer(timer)
        if planned.kind is TimerKind.DEADLINE:
            return self._overdue(session, alert, timer, planned, now)
        later = session.scalar(
            select(EscalationTimer.round).where(
                EscalationTimer.alert_id == alert.id,
                EscalationTimer.kind == TimerKind.STEP,
                EscalationTimer.step == timer.step,
                EscalationTimer.round > timer.round,
                EscalationTimer.epoch == timer.epoch,
                EscalationTimer.status == TimerStatus.PENDING,
                EscalationTimer.due_at <= now,
            )
        )
        if later is not None:
            # catching up after downtime: one reminder, not every one missed
            audit.append(
                session,
                at=now,
                actor=self.actor,
                action="escalation.skipped",
                subject=f"alert:{alert.id}",
                data={"code": alert.code, "step": timer.step, "round": timer.round},
            )
            return 0
        if alert.kind == AlertKind.EVENT:
            # a reminder says how many zones still wait, as of now; none: no reminder
            reminder = event_reminder(session, self.county, alert, planned, now, **self._terms)
            if reminder is None:
                self._nobody_waits(session, alert, timer, now)
                return 0
            planned = reminder
        notes, _ = self._fire(session, alert, planned, now)
        return len(notes)

    def _plans(
        self, policy: Policy, text: AlertText, transition: str, epoch: int = 0
    ) -> tuple[list[PlannedStep], list[PlannedStep]]:
        """Every firing of `policy` for an alert with `text`: those due at once (in the
        policy's order), then the later ones by delay (the policy's order among equal
        delays). The first step goes out under the alert's `transition`."""
        bodies = dict(text.bodies)  # one copy for all the alert's steps: none changes it

        def planned(firing: _Firing) -> PlannedStep:
            step = firing.step
            return PlannedStep(
                policy=policy.name,
                targets=step.targets,
                people=step.people,
                channels=step.channels,
                transition=firing.transition or transition,
                body=text.body,
                step=firing.index,
                round=firing.round,
                delay=firing.delay,
                bodies=bodies,
                broadcast=step.broadcast,
                im=step.im,
            )

        at_once, later = self._schedule(policy, epoch)
        return [planned(f) for f in at_once], [planned(f) for f in later]

    def _schedule(
        self, policy: Policy, epoch: int
    ) -> tuple[tuple[_Firing, ...], tuple[_Firing, ...]]:
        """The firings of `policy` at `epoch`, due at once and later (`_plans`): worked
        out once per policy, as its alerts open by the thousand."""
        known = self._schedules.get((id(policy), epoch))
        if known is not None and known[0] is policy:
            return known[1], known[2]
        firings = [
            _Firing(index, step, round_, delay, step_transition(index, round_, epoch))
            for index, step in enumerate(policy.steps)
            for round_, delay in step.rounds()
        ]
        # the first step (no delay, first round) goes out under the alert's transition
        at_once = tuple(
            replace(f, transition=None) if f.step.after == timedelta(0) and f.round == 0 else f
            for f in firings
            if f.delay == timedelta(0)
        )
        later = tuple(sorted((f for f in firings if f.delay > timedelta(0)), key=_delay))
        self._schedules[(id(policy), epoch)] = (policy, at_once, later)
        return at_once, later

    def _timer(
        self, alert: AlertFacts, planned: PlannedStep, due: datetime, now: datetime
    ) -> dict[str, Any]:
        """The column values of the timer row of `planned`."""
        return {
            "alert_id": alert.id,
            "kind": planned.kind,
            "step": planned.step,
            "round": planned.round,
            "epoch": alert.epoch,
            "due_at": due,
            "status": TimerStatus.PENDING,
            "plan": planned.to_json(),
            "created_at": now,
        }

    def watch_deadline(
        self, session: Session, event: Alert, *, text: AlertText, now: datetime
    ) -> None:
        """Zones joined `event`: when its deadline's notice has gone already, plan
        another, so the leader on duty hears of these zones too should they wait."""
        held.write(session)
        rounds = session.execute(
            select(EscalationTimer.round, EscalationTimer.status).where(
                EscalationTimer.alert_id == event.id,
                EscalationTimer.kind == TimerKind.DEADLINE,
                EscalationTimer.epoch == event.epoch,
            )
        ).all()
        if any(status == TimerStatus.PENDING for _, status in rounds):
            return
        round_ = max((r for r, _ in rounds), default=-1) + 1
        due = now + self.deadline(event.level)
        timer = self._deadline_timer(event, self.policy_for(event), text, due, now, round_)
        _add_timers(session, [timer])
        audit.append(
            session,
            at=now,
            actor=self.actor,
            action="escalation.deadline_planned",
            subject=f"alert:{event.id}",
            data={"code": event.code, "round": round_, "due": due.isoformat()},
        )

    def _deadline_timer(
        self,
        alert: AlertFacts,
        policy: Policy,
        text: AlertText,
        due: datetime,
        now: datetime,
        round_: int = 0,
    ) -> dict[str, Any]:
        minutes = round(self.deadline(alert.level).total_seconds() / 60)
        body = OVERDUE_TEXT.format(
            sender=self.county.sender, summary=text.summary, code=alert.code, minutes=minutes
        )
        planned = PlannedStep(
            policy=policy.name,
            targets=("leader_on_duty",),
            people=(),
            channels=(DEFAULT_CHANNEL,),
            transition=overdue_transition(alert.epoch, round_),
            body=body,
            kind=TimerKind.DEADLINE,
            round=round_,
            minutes=minutes,
        )
        return self._timer(alert, planned, due, now)

    def _fire(
        self,
        session: Session,
        alert: AlertFacts,
        planned: PlannedStep,
        now: datetime,
        *,
        extra: Sequence[Recipient] = (),
        fresh: set[str] | None = None,
    ) -> tuple[list[QueuedRow], list[dict[str, Any]]]:
        return fire(self, session, alert, planned, now, extra=extra, fresh=fresh)

    def _overdue(
        self,
        session: Session,
        alert: Alert,
        timer: EscalationTimer,
        planned: PlannedStep,
        now: datetime,
    ) -> int:
        grouped = alert.kind == AlertKind.HAZARD and alert.event_id is not None
        if alert.kind == AlertKind.EVENT:
            # one notice for the event: how many of its zones are past their deadline
            notice = event_reminder(session, self.county, alert, planned, now, **self._terms)
            if notice is None:
                self._nobody_waits(session, alert, timer, now)
                return 0
            planned = notice
        audit.append(
            session,
            at=now,
            actor=self.actor,
            action="alert.overdue",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "level": alert.level,
                "deadline": timer.due_at.isoformat(),
                "minutes": planned.minutes,
                # the leader on duty hears of it in its event's notice, with the others
                **({"event": alert.event_id} if grouped else {}),
            },
        )
        if grouped:
            return 0
        notes, _ = self._fire(session, alert, planned, now)
        return len(notes)

    def _nobody_waits(
        self, session: Session, event: Alert, timer: EscalationTimer, now: datetime
    ) -> None:
        """Record that an event's reminder or notice was not sent: no zone waits."""
        audit.append(
            session,
            at=now,
            actor=self.actor,
            action="escalation.skipped",
            subject=f"alert:{event.id}",
            data={
                "code": event.code,
                "step": "deadline" if timer.kind == TimerKind.DEADLINE else timer.step,
                "round": timer.round,
                "reason": "no_zone_waits",
            },
        )


@dataclass(frozen=True)
class _Firing:
    """One firing of a policy's step: which step, which round, when after the opening,
    under which transition (None: the alert's own, for the first step)."""

    index: int
    step: Step
    round: int
    delay: timedelta
    transition: str | None


def _delay(firing: _Firing) -> timedelta:
    return firing.delay


def _add_timers(session: Session, timers: Sequence[dict[str, Any]]) -> None:
    """Add timer rows: held for the batch insert inside a held-rows batch, else as objects."""
    for values in timers:
        if not held.hold(session, EscalationTimer, values):
            session.add(EscalationTimer(**values))


def _people_told(told: Sequence[Mapping[str, Any]]) -> bool:
    return any("person" in entry for entry in told)


def on_channel(escalation: Escalation | None, county: County, channel: str) -> Escalation:
    """`escalation` with `channel` as its default; without one, the plain one of `county`.

    The plain escalation has the built-in policies and no roster (every duty
    officer and leader on duty counts as on duty): for callers that configure nothing.
    """
    return escalation.with_channel(channel) if escalation else Escalation.plain(county, channel)
