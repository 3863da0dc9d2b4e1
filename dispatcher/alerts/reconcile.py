"""Reconcile: what the rules say now + what is already open → transitions.

Pure: no I/O and no clock reads (time is passed in), so every case is a plain
data test. The lifecycle (`lifecycle.py`) persists the transitions.

Per (zone, hazard):

| rules say            | open alert     | transition                                   |
| -------------------- | -------------- | -------------------------------------------- |
| level L              | none           | NEW at L                                     |
| level L              | lower level    | UPGRADED at once                             |
| level L              | same level     | CONTINUED (calm clock reset)                 |
| level L              | higher level   | DOWNGRADED once calm for `hold`, else CONTINUED |
| nothing              | open           | RESOLVED once calm for `hold`, else CONTINUED |
| indeterminate (gaps) | open           | CONTINUED, unchanged: missing data never clears |
| lower, but a level above it undecided (gaps) | open | CONTINUED, unchanged          |
| nothing / gaps       | none           | —                                            |

"Calm" means the rules have said something lower than the open level since
`calm_since`; the hold keeps a warning from flapping around a threshold.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.types import Assessment, Level


class TransitionKind(enum.Enum):
    NEW = "new"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    CONTINUED = "continued"
    RESOLVED = "resolved"

    @property
    def notifies(self) -> bool:
        """Whether people are told about this transition."""
        return self is not TransitionKind.CONTINUED


@dataclass(frozen=True)
class OpenAlert:
    """The lifecycle's view of an open (firing or acknowledged) hazard alert."""

    id: int
    zone_id: str
    hazard: str
    level: Level
    calm_since: datetime | None = None


@dataclass(frozen=True)
class Transition:
    kind: TransitionKind
    zone_id: str
    hazard: str
    level: Level  # the level after the transition (for RESOLVED: the level that ended)
    alert_id: int | None = None  # the open alert it acts on; None for NEW
    previous_level: Level | None = None
    assessment: Assessment | None = None  # what the rules said (None when nothing fires)
    calm_since: datetime | None = None  # for CONTINUED: the calm clock to store
    data_missing: bool = False  # CONTINUED only because the forecast had gaps


def reconcile(
    assessments: Iterable[Assessment],
    open_alerts: Iterable[OpenAlert],
    now: datetime,
    *,
    hold: timedelta = timedelta(0),
) -> list[Transition]:
    """Decide the transitions for every (zone, hazard) seen in either input.

    At most one assessment and one open alert per (zone, hazard) are expected;
    a duplicate is a programming error and raises ValueError.
    """
    said: dict[tuple[str, str], Assessment] = {}
    for a in assessments:
        key = (a.zone_id, a.hazard)
        if key in said:
            raise ValueError(f"two assessments for zone {a.zone_id} hazard {a.hazard}")
        said[key] = a
    opened: dict[tuple[str, str], OpenAlert] = {}
    for alert in open_alerts:
        key = (alert.zone_id, alert.hazard)
        if key in opened:
            raise ValueError(f"two open alerts for zone {alert.zone_id} hazard {alert.hazard}")
        opened[key] = alert

    transitions = []
    for key in sorted(said.keys() | opened.keys()):
        step = _step(said.get(key), opened.get(key), now, hold)
        if step is not None:
            transitions.append(step)
    return transitions


def _step(
    assessment: Assessment | None, alert: OpenAlert | None, now: datetime, hold: timedelta
) -> Transition | None:
    if alert is None:
        if assessment is None or assessment.level is None:
            return None
        return Transition(
            TransitionKind.NEW,
            assessment.zone_id,
            assessment.hazard,
            assessment.level,
            assessment=assessment,
        )

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
