"""Reconcile: what the rules say now + what is already open → transitions.

Pure: no I/O and no clock reads (time is passed in), so every case is a plain
data test. The lifecycle (`lifecycle.py`) persists the transitions.

Per (zone, hazard):

| rules say            | open alert     | transition                                   |
| -------------------- | -------------- | -------------------------------------------- |
| level L              | none           | NEW at L — or SUPPRESSED within a cooldown (below) |
| level L              | lower level    | UPGRADED at once                             |
| level L              | same level     | CONTINUED (calm clock reset)                 |
| level L              | higher level   | DOWNGRADED once calm for `hold`, else CONTINUED |
| nothing              | open           | RESOLVED once calm for `hold`, else CONTINUED |
| indeterminate (gaps) | open           | CONTINUED, unchanged: missing data never clears |
| lower, but a level above it undecided (gaps) | open | CONTINUED, unchanged          |
| nothing / gaps       | none           | —                                            |

"Calm" means the rules have said something lower than the open level since
`calm_since`; the hold keeps a warning from flapping around a threshold.

Cooldown: a warning resolved less than `cooldown` ago is not issued again at
the level it had, or lower, when it was resolved — the rules saying so is a
SUPPRESSED transition (silent, audited). A level above every level resolved
within the cooldown is NEW at once: a rising danger is never held back.

`hold` and `cooldown` are one duration for every hazard or a function of the
hazard (rule files may set their own per hazard).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from rules.types import Assessment, Level

#: One duration for every hazard, or a function of the hazard key.
PerHazard = timedelta | Callable[[str], timedelta]


class TransitionKind(enum.Enum):
    NEW = "new"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    CONTINUED = "continued"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"  # would be NEW, but a recent warning's cooldown holds it back

    @property
    def notifies(self) -> bool:
        """Whether people are told about this transition."""
        return self not in (TransitionKind.CONTINUED, TransitionKind.SUPPRESSED)


@dataclass(frozen=True)
class OpenAlert:
    """The lifecycle's view of an open (firing or acknowledged) hazard alert."""

    id: int
    zone_id: str
    hazard: str
    level: Level
    calm_since: datetime | None = None


@dataclass(frozen=True)
class ClosedAlert:
    """A hazard alert resolved recently: its cooldown may hold back a new one."""

    id: int
    zone_id: str
    hazard: str
    level: Level  # the level it had when it was resolved
    closed_at: datetime


@dataclass(frozen=True)
class Transition:
    kind: TransitionKind
    zone_id: str
    hazard: str
    level: Level  # the level after the transition (for RESOLVED: the level that ended)
    # the open alert it acts on; None for NEW; for SUPPRESSED the resolved alert
    # whose cooldown holds the new warning back
    alert_id: int | None = None
    previous_level: Level | None = None  # for SUPPRESSED: the level that was resolved
    assessment: Assessment | None = None  # what the rules said (None when nothing fires)
    calm_since: datetime | None = None  # for CONTINUED: the calm clock to store
    data_missing: bool = False  # CONTINUED only because the forecast had gaps


@dataclass(frozen=True)
class Timing:
    """Hold and cooldown per hazard, with defaults for hazards that set none."""

    hold: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(0)
    holds: Mapping[str, timedelta] = field(default_factory=dict)
    cooldowns: Mapping[str, timedelta] = field(default_factory=dict)

    def hold_of(self, hazard: str) -> timedelta:
        """How long a hazard must stay calm before it steps down or resolves."""
        return self.holds.get(hazard, self.hold)

    def cooldown_of(self, hazard: str) -> timedelta:
        """How long a resolved warning of this hazard is not issued again."""
        return self.cooldowns.get(hazard, self.cooldown)

    @property
    def longest_cooldown(self) -> timedelta:
        """How far back resolved alerts can still matter (what the lifecycle loads)."""
        return max([self.cooldown, *self.cooldowns.values()])


def reconcile(
    assessments: Iterable[Assessment],
    open_alerts: Iterable[OpenAlert],
    now: datetime,
    *,
    hold: PerHazard = timedelta(0),
    cooldown: PerHazard = timedelta(0),
    recently_resolved: Iterable[ClosedAlert] = (),
) -> list[Transition]:
    """Decide the transitions for every (zone, hazard) seen in either input.

    At most one assessment and one open alert per (zone, hazard) are expected;
    a duplicate is a programming error and raises ValueError. `recently_resolved`
    may hold any number of alerts per (zone, hazard), and older ones than the
    cooldown (they are ignored).
    """
    hold_of = _per_hazard(hold)
    cooldown_of = _per_hazard(cooldown)
    said = _one_each(assessments, "assessments")
    opened = _one_each(open_alerts, "open alerts")
    # per (zone, hazard): the highest level resolved within its cooldown, latest first on ties
    cooling: dict[tuple[str, str], ClosedAlert] = {}
    for closed in recently_resolved:
        if now - closed.closed_at >= cooldown_of(closed.hazard):
            continue
        key = (closed.zone_id, closed.hazard)
        known = cooling.get(key)
        if known is None or (closed.level, closed.closed_at) > (known.level, known.closed_at):
            cooling[key] = closed

    transitions = []
    for key in sorted(said.keys() | opened.keys()):
        open_alert = opened.get(key)
        if open_alert is None:
            step = _start(said.get(key), cooling.get(key))
        else:
            step = _step(said.get(key), open_alert, now, hold_of(open_alert.hazard))
        if step is not None:
            transitions.append(step)
    return transitions


def _per_hazard(value: PerHazard) -> Callable[[str], timedelta]:
    if isinstance(value, timedelta):
        return lambda _hazard: value
    return value


class _ZoneHazard(Protocol):
    @property
    def zone_id(self) -> str: ...
    @property
    def hazard(self) -> str: ...


_Keyed = TypeVar("_Keyed", bound=_ZoneHazard)


def _one_each(items: Iterable[_Keyed], what: str) -> dict[tuple[str, str], _Keyed]:
    """The items by (zone, hazard); a second one for a pair is a programming error."""
    by_key: dict[tuple[str, str], _Keyed] = {}
    for item in items:
        key = (item.zone_id, item.hazard)
        if key in by_key:
            raise ValueError(f"two {what} for zone {item.zone_id} hazard {item.hazard}")
        by_key[key] = item
    return by_key


def _start(assessment: Assessment | None, cooling: ClosedAlert | None) -> Transition | None:
    """No open alert: a firing assessment opens one, unless a cooldown holds it back."""
    if assessment is None or assessment.level is None:
        return None
    if cooling is not None and assessment.level <= cooling.level:
        return Transition(
            TransitionKind.SUPPRESSED,
            assessment.zone_id,
            assessment.hazard,
            assessment.level,
            alert_id=cooling.id,
            previous_level=cooling.level,
            assessment=assessment,
        )
    return Transition(
        TransitionKind.NEW,
        assessment.zone_id,
        assessment.hazard,
        assessment.level,
        assessment=assessment,
    )


def _step(
    assessment: Assessment | None, alert: OpenAlert, now: datetime, hold: timedelta
) -> Transition:
    def continued(calm_since: datetime | None, *, data_missing: bool = False) -> Transition:
        return Transition(
            TransitionKind.CONTINUED,
            alert.zone_id,
            alert.hazard,
            alert.level,
            alert_id=alert.id,
            previous_level=alert.level,
            assessment=assessment,
            calm_since=calm_since,
            data_missing=data_missing,
        )

    level = assessment.level if assessment is not None else None
    undecided = assessment.undecided_above if assessment is not None else None
    if level is None and assessment is not None:
        return continued(alert.calm_since, data_missing=True)
    if level is not None and level >= alert.level:
        kind = TransitionKind.UPGRADED if level > alert.level else TransitionKind.CONTINUED
        if kind is TransitionKind.CONTINUED:
            return continued(None)
        return Transition(
            kind,
            alert.zone_id,
            alert.hazard,
            level,
            alert_id=alert.id,
            previous_level=alert.level,
            assessment=assessment,
        )

    # calmer than the open level — unless missing data hides a level above the
    # new one: then nothing is known to be calmer, and the warning stays as it is
    if undecided is not None:
        return continued(alert.calm_since, data_missing=True)
    # wait out the hold before stepping down
    calm_since = alert.calm_since or now
    if now - calm_since < hold:
        return continued(calm_since)
    if level is None:
        return Transition(
            TransitionKind.RESOLVED,
            alert.zone_id,
            alert.hazard,
            alert.level,
            alert_id=alert.id,
            previous_level=alert.level,
        )
    return Transition(
        TransitionKind.DOWNGRADED,
        alert.zone_id,
        alert.hazard,
        level,
        alert_id=alert.id,
        previous_level=alert.level,
        assessment=assessment,
    )
