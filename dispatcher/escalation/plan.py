"""A planned step: one firing of one policy step for one alert, and its transition name.

When an alert opens, every firing of its policy (each step, each repeat) and
its acknowledgement deadline is planned: whom to tell, on which channels, with
which words. Those due at once are sent; the others become rows of
`escalation_timers` whose `plan` column holds `PlannedStep.to_json()` (the
JSON shape is the stored one: rows written by earlier versions still load).

The outbox `transition` of an escalation message is encoded here and parsed
here only: `esc{step}` for a later step, `esc{step}.{round}` for its repeats,
`esc.overdue` for the deadline's notice; the first step of a policy goes out
under the alert's own transition (new, upgraded, downgraded). An event's
policy restarts at each of its level changes (its epoch): from epoch 1 on, its
transitions end in `@{epoch}` (`esc2.1@1`, `esc.overdue@2`), so each restart's
messages have keys of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from channels.base import Medium
from dispatcher.states import TimerKind
from dispatcher.storage.models import EscalationTimer

__all__ = [
    "ESCALATION_PREFIX",
    "OVERDUE_TRANSITION",
    "AlertText",
    "PlannedStep",
    "RenderedOnRead",
    "StepTransition",
    "overdue_transition",
    "parse_step_transition",
    "step_transition",
]

#: Outbox `transition` prefix of the messages later steps and the deadline send;
#: an acknowledgement cancels those still pending (the warning itself still goes out).
ESCALATION_PREFIX: Final = "esc"
OVERDUE_TRANSITION: Final = f"{ESCALATION_PREFIX}.overdue"

_STEP_TRANSITION: Final = re.compile(rf"^{ESCALATION_PREFIX}(\d+)(?:\.(\d+))?(?:@(\d+))?$")


@dataclass(frozen=True)
class AlertText:
    """The words of an alert's warning: re-sent by later steps, quoted when overdue."""

    body: str  # the message as first sent, for the default channel's medium
    summary: str  # e.g. 柳林镇…不稳定斜坡寒潮黄色预警, for the overdue notice
    # medium (sms, voice, broadcast, im) → the text for channels of that medium;
    # a medium not here gets `body` (system alerts have one text for all)
    bodies: Mapping[str, str] = field(default_factory=dict)

    def for_medium(self, medium: str) -> str:
        """The text for a channel of `medium`."""
        return self.bodies.get(medium, self.body)


class RenderedOnRead(Mapping[str, str]):
    """`AlertText.bodies` whose words are rendered when first read (`render(medium)`),
    not at once: an alert's end goes only to the media of those who were told, and
    no timer quotes it, so an all-clear renders one text per alert, not four."""

    def __init__(self, render: Callable[[Medium], str]) -> None:
        self._render = render
        self._texts: dict[str, str] = {}

    def __getitem__(self, medium: str) -> str:
        text = self._texts.get(medium)
        if text is None:
            try:
                kind = Medium(medium)
            except ValueError:
                raise KeyError(medium) from None
            text = self._texts[medium] = self._render(kind)
        return text

    def __iter__(self) -> Iterator[str]:
        return (kind.value for kind in Medium)

    def __len__(self) -> int:
        return len(Medium)


@dataclass(frozen=True)
class StepTransition:
    """What a later step's transition name says: its step and round (0-based)."""

    step: int
    round: int
    epoch: int = 0


def _epoch(epoch: int) -> str:
    return f"@{epoch}" if epoch else ""


def step_transition(step: int, round_: int, epoch: int = 0) -> str:
    """The transition of a later step's messages: esc2 (step 2), esc2.1 (its first
    repeat), esc2.1@1 (the same after the event's first level change)."""
    return f"{ESCALATION_PREFIX}{step}" + (f".{round_}" if round_ else "") + _epoch(epoch)


def overdue_transition(epoch: int = 0, round_: int = 0) -> str:
    """The transition of the deadline's notice: esc.overdue; esc.overdue@1 after the
    event's first level change; esc.overdue.1 for the notice about zones that
    joined after the first one went."""
    return OVERDUE_TRANSITION + (f".{round_}" if round_ else "") + _epoch(epoch)


def parse_step_transition(transition: str) -> StepTransition | None:
    """The step, round and epoch `transition` names, or None when it is not a later step's."""
    match = _STEP_TRANSITION.match(transition)
    if match is None:
        return None
    return StepTransition(int(match[1]), int(match[2] or 0), int(match[3] or 0))


# Not frozen: a province's cold front plans several firings for each of tens of
# thousands of alerts, and a frozen dataclass sets each of the 14 fields through
# object.__setattr__ (twice the cost). Nothing changes a planned step once built.
@dataclass(slots=True)
class PlannedStep:
    """One planned firing: whom to tell (targets, people; audiences `broadcast`, `im`),
    how (channels), what (`bodies`, one per medium; `body`, the default channel's).

    `step` and `round` place it in its policy (`kind` deadline: the
    acknowledgement deadline, step 0 round 0); `delay` is from the alert's
    opening; `minutes` is the deadline's length, quoted by the console.
    """

    policy: str | None
    targets: tuple[str, ...]
    people: tuple[str, ...]
    channels: tuple[str, ...]
    transition: str
    body: str
    kind: TimerKind = TimerKind.STEP
    step: int = 0
    round: int = 0
    delay: timedelta = timedelta(0)
    minutes: int | None = None
    bodies: Mapping[str, str] = field(default_factory=dict)  # medium → text
    broadcast: tuple[str, ...] = ()
    im: tuple[str, ...] = ()

    def body_for(self, medium: str) -> str:
        """The text for a channel of `medium` (sms, voice, broadcast, im).

        Plans stored before texts were rendered per medium have `body` only.
        """
        return self.bodies.get(medium, self.body)

    def to_json(self) -> dict[str, Any]:
        """The `plan` column: what the timer's own columns (kind, step, round, due) do not say."""
        plan: dict[str, Any] = {
            "policy": self.policy,
            "targets": list(self.targets),
            "people": list(self.people),
            "channels": list(self.channels),
            "transition": self.transition,
            "body": self.body,
        }
        # written only when there are any, so plans without them read back as stored
        if self.bodies:
            plan["bodies"] = dict(self.bodies)
        if self.broadcast:
            plan["broadcast"] = list(self.broadcast)
        if self.im:
            plan["im"] = list(self.im)
        if self.kind is TimerKind.DEADLINE:
            plan["minutes"] = self.minutes
        return plan

    @classmethod
    def from_json(
        cls, plan: Mapping[str, Any], *, kind: TimerKind, step: int, round_: int
    ) -> PlannedStep:
        """The planned step a timer's `plan` column and columns describe.

        Lenient about what may be missing from rows written by earlier
        versions (people, policy, minutes, bodies, audiences): the console
        shows what there is, and a plan with `body` only sends it on every channel.
        """
        minutes = plan.get("minutes")
        bodies = plan.get("bodies")
        return cls(
            policy=_text_or_none(plan.get("policy")),
            targets=_texts(plan.get("targets")),
            people=_texts(plan.get("people")),
            channels=_texts(plan.get("channels")),
            transition=str(plan.get("transition", "")),
            body=str(plan.get("body", "")),
            kind=kind,
            step=step,
            round=round_,
            minutes=minutes if isinstance(minutes, int) else None,
            bodies=(
                {str(k): str(v) for k, v in bodies.items() if isinstance(v, str)}
                if isinstance(bodies, Mapping)
                else {}
            ),
            broadcast=_texts(plan.get("broadcast")),
            im=_texts(plan.get("im")),
        )

    @classmethod
    def of_timer(cls, timer: EscalationTimer) -> PlannedStep:
        """The planned step an escalation timer row holds."""
        return cls.from_json(
            timer.plan or {}, kind=TimerKind(timer.kind), step=timer.step, round_=timer.round
        )


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str))


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
