"""The policy model: which steps an alert escalates by, and the built-in defaults.

A policy is a list of steps: after a delay from the alert's opening, notify
targets (zone roles, the duty officer and the leader on duty per the roster,
named people) on given channels, and audiences that are not people (the
zone's village loudspeakers, its township's group, named groups), optionally
repeating every so often.
`escalation.yaml` (`dispatcher.escalation.config`) replaces these defaults per
level, per hazard and level, or per rule and level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Final

from dispatcher.roster import ROSTER_ROLES
from dispatcher.routing import ADMINISTRATOR, TOWNSHIP, VILLAGE
from dispatcher.states import AlertKind
from dispatcher.storage.models import AlertFacts
from rules.types import Level

__all__ = [
    "ADMINISTRATOR_POLICY",
    "BUREAU_TARGETS",
    "DEFAULT_CHANNEL",
    "DEFAULT_DEADLINES",
    "DEFAULT_POLICIES",
    "SYSTEM_POLICY",
    "TOWNSHIP",
    "VILLAGE",
    "Policies",
    "Policy",
    "Step",
    "bureau_part",
    "zone_part",
]

#: The channel name that means "this instance's default channel".
DEFAULT_CHANNEL: Final = "default"

#: The key of the policy of system alerts (feed down) among the per-level ones;
#: escalation.yaml's `system:` replaces it.
SYSTEM_POLICY: Final = "system"

_LEVEL_KEYS: Final = frozenset(level.key for level in Level)


@dataclass(frozen=True)
class Step:
    """After `after` (from the alert's opening), tell `targets` and `people` on `channels`,
    and the audiences `broadcast` (VILLAGE) and `im` (TOWNSHIP or group keys).

    `repeat` more times every `every` (until acknowledged).
    """

    after: timedelta
    targets: tuple[str, ...]
    people: tuple[str, ...] = ()
    channels: tuple[str, ...] = (DEFAULT_CHANNEL,)
    repeat: int = 0
    every: timedelta | None = None
    broadcast: tuple[str, ...] = ()
    im: tuple[str, ...] = ()

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


def _monitors_first(level: Level) -> Policy:
    # blue/yellow: the people at the slope first, then the one who owns the
    # response, then the bureau (DOMAIN.md: roles and what they do)
    return Policy(
        f"default:{level.key}",
        (
            Step(timedelta(0), ("mass_monitor", "monitoring")),
            Step(timedelta(minutes=30), ("disaster_prevention",)),
            Step(timedelta(minutes=60), ("duty_officer",), repeat=2, every=timedelta(minutes=30)),
        ),
    )


def _everyone_at_once(level: Level, remind: timedelta, times: int) -> Policy:
    # orange/red: evacuation may be needed, so the disaster-prevention person is
    # called and the leader on duty told from the first minute, with everyone else
    return Policy(
        f"default:{level.key}",
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
    Level.BLUE.key: _monitors_first(Level.BLUE),
    Level.YELLOW.key: _monitors_first(Level.YELLOW),
    Level.ORANGE.key: _everyone_at_once(Level.ORANGE, timedelta(minutes=10), 2),
    Level.RED.key: _everyone_at_once(Level.RED, timedelta(minutes=5), 3),
    SYSTEM_POLICY: Policy(
        "default:system",
        (
            Step(timedelta(0), ("duty_officer", "leader_on_duty")),
            Step(timedelta(minutes=30), ("duty_officer",), repeat=2, every=timedelta(minutes=30)),
        ),
    ),
}

#: For what only an administrator can mend (rule files refused): the
#: administrators (the duty officers when there are none), reminded like the
#: system policy reminds the duty officer; the deadline tells the leader on duty.
ADMINISTRATOR_POLICY: Final = Policy(
    "default:administrator",
    (
        Step(timedelta(0), (ADMINISTRATOR,)),
        Step(timedelta(minutes=30), (ADMINISTRATOR,), repeat=2, every=timedelta(minutes=30)),
    ),
)

#: Acknowledgement deadlines when settings give none (blue/yellow leave room for
#: the whole ladder: monitors → disaster-prevention person → duty officer).
DEFAULT_DEADLINES: Final[Mapping[str, timedelta]] = {
    Level.BLUE.key: timedelta(minutes=120),
    Level.YELLOW.key: timedelta(minutes=90),
    Level.ORANGE.key: timedelta(minutes=15),
    Level.RED.key: timedelta(minutes=10),
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

    def for_alert(self, alert: AlertFacts) -> Policy:
        """The rule's policy for this level, else the hazard's, else the level's."""
        if alert.kind == AlertKind.SYSTEM:
            return self.levels[SYSTEM_POLICY]
        return (
            self.rules.get((alert.rule_id, alert.level))
            or self.hazards.get((alert.hazard, alert.level))
            or self.levels.get(alert.level)
            or DEFAULT_POLICIES[alert.level if alert.level in _LEVEL_KEYS else Level.ORANGE.key]
        )


# --- the bureau's part and the zone's part of a hazard policy (issue 12: events)

#: Targets that are the bureau's, not a zone's: a hazard alert does not tell
#: them itself; its event does (one message per event change, not per zone).
BUREAU_TARGETS: Final = frozenset({*ROSTER_ROLES, ADMINISTRATOR})

IsBureau = Callable[[str], bool]
"""Whether the person with this id is bureau staff (has a duty role)."""


def _split(step: Step, is_bureau: IsBureau, *, bureau: bool) -> Step | None:
    """The bureau's (or the zone's) share of one step; None when it has none."""
    targets = tuple(t for t in step.targets if (t in BUREAU_TARGETS) == bureau)
    people = tuple(p for p in step.people if is_bureau(p) == bureau)
    # a named group (the duty room) hears of events; the township's group and
    # the village loudspeakers of zones
    im = tuple(k for k in step.im if (k != TOWNSHIP) == bureau)
    broadcast = () if bureau else step.broadcast
    if not (targets or people or im or broadcast):
        return None
    return replace(step, targets=targets, people=people, im=im, broadcast=broadcast)


def zone_part(policy: Policy, is_bureau: IsBureau) -> Policy:
    """What a hazard alert of this policy does itself: its steps without the bureau.

    Steps left with nobody to tell are dropped; the bureau's share is its
    event's (`bureau_part`).
    """
    steps = tuple(s for step in policy.steps if (s := _split(step, is_bureau, bureau=False)))
    return Policy(policy.name, steps)


def bureau_part(policy: Policy, is_bureau: IsBureau) -> Policy:
    """What an event of this policy's level does: the bureau's share of its steps.

    The bureau hears of an event when it starts, whatever the policy's delays:
    the first step, at once, tells every bureau target and group the policy
    names anywhere (on the channels of its immediate steps, else the default).
    The policy's later bureau steps follow as reminders while the event is
    unacknowledged; an immediate step's repeats stay reminders too.
    """
    shares = [(step, s) for step in policy.steps if (s := _split(step, is_bureau, bureau=True))]
    if not shares:
        return Policy(f"{policy.name}:bureau", ())
    at_once = [s for step, s in shares if step.after == timedelta(0)]
    channels = tuple(dict.fromkeys(c for s in at_once for c in s.channels)) or (DEFAULT_CHANNEL,)
    first = Step(
        timedelta(0),
        tuple(dict.fromkeys(t for _, s in shares for t in s.targets)),
        people=tuple(dict.fromkeys(p for _, s in shares for p in s.people)),
        channels=channels,
        im=tuple(dict.fromkeys(k for _, s in shares for k in s.im)),
    )
    later: list[Step] = []
    for step, share in shares:
        if step.after > timedelta(0):
            later.append(replace(share, im=()))  # groups hear of changes, not reminders
        elif step.repeat and step.every is not None:
            later.append(replace(share, after=step.every, repeat=step.repeat - 1, im=()))
    return Policy(f"{policy.name}:bureau", (first, *later))
