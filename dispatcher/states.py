"""The vocabularies of the stored rows: what state an alert, an outbox row or a timer is in.

Each is a `StrEnum`, so a member is the very string stored in its column and
compares equal to it (`AlertState.FIRING == "firing"`): rows read back as plain
strings and still match. The words people read for these states are in
`dispatcher.labels`, not here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class AlertKind(StrEnum):
    """What an alert is: a hazard rule at a zone, a condition of Yujing itself, or an event."""

    HAZARD = "hazard"
    SYSTEM = "system"
    #: an incident: the hazard alerts of one hazard that opened together (and
    #: those that joined while it was open), handled by the bureau as one
    EVENT = "event"


class AlertState(StrEnum):
    """firing → acknowledged → resolved; a level change marks the old row superseded."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


OPEN_ALERT_STATES: Final = (AlertState.FIRING, AlertState.ACKNOWLEDGED)
"""States of an alert that is still in force (someone may still have to act)."""


class NotificationStatus(StrEnum):
    """An outbox row: pending → sending → sent → delivered | undelivered | failed.

    `cancelled`: an escalation message an acknowledgement made unnecessary
    before it was sent.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


PRIORITY_RANKS: Final = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
"""An outbox row's `priority`, by the level of the alert it is about: lower is sent
first when a rate limit binds (see dispatcher.outbox.claim)."""
UNRANKED: Final = PRIORITY_RANKS["orange"]
"""The priority of a row without an alert, or whose alert's level has another name."""


def priority_of(level: str | None) -> int:
    """The stored priority of an outbox row about an alert at `level` (None: no alert)."""
    return PRIORITY_RANKS.get(level or "", UNRANKED)


class TimerStatus(StrEnum):
    """An escalation timer: pending until it fires (done) or is cancelled."""

    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


class TimerKind(StrEnum):
    """A later step (or repeat) of a policy, or the acknowledgement deadline."""

    STEP = "step"
    DEADLINE = "deadline"
