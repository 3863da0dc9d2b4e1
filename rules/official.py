"""Rule levels on official warnings (`official:` in a level, docs/rules.md).

An official warning — a signal the meteorological bureau issued, received as
CAP by the dispatcher — is plain data here (`rules.types.OfficialWarning`),
like the forecast: which zones it covers, its level, its own onset and expiry.
A level with `official:` fires at a zone while a matching warning covers it;
with `when:` as well, the forecast condition must also hold, at an hour inside
the warning's own window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.types import Level, OfficialWarning

_COMPARISONS = (">=", "<=", "==", ">", "<")
_LEVEL_TEXT = re.compile(r"^\s*(>=|<=|==|>|<)?\s*([a-z]+)\s*$")
# the colour and the word "warning (signal)" are not part of the signal's name
_EVENT_NOISE = re.compile(r"(蓝色|黄色|橙色|红色)|预警信号$|预警$|信号$")


def event_name(text: str) -> str:
    """A signal's name without colour or "warning" words: 寒潮蓝色预警信号 → 寒潮."""
    name = re.sub(r"\s+", "", text)
    previous = None
    while previous != name:  # 寒潮预警信号, 寒潮蓝色预警: strip until nothing changes
        previous = name
        name = _EVENT_NOISE.sub("", name)
    return name


def parse_level_comparison(text: str) -> tuple[str, Level]:
    """`">= yellow"` → (">=", YELLOW); a bare level name means exactly that level.

    Raises ValueError with the message an administrator sees.
    """
    match = _LEVEL_TEXT.match(text)
    if match is None:
        raise ValueError(
            f'{text!r} is not a level comparison; write e.g. ">= yellow" or orange '
            f"(operators {', '.join(_COMPARISONS)}; levels blue, yellow, orange, red)"
        )
    op, name = match.group(1) or "==", match.group(2)
    return op, Level.parse(name)


@dataclass(frozen=True)
class OfficialCondition:
    """`official: {event: 寒潮, level: ">= yellow"}`: which warnings a level relays."""

    events: frozenset[str]  # names as `event_name` gives them
    op: str = ">="
    level: Level | None = None  # None: any level

    def matches(self, warning: OfficialWarning) -> bool:
        """Whether the warning is one of these events at an accepted level."""
        if event_name(warning.event) not in self.events:
            return False
        if self.level is None:
            return True
        have, want = int(warning.level), int(self.level)
        return {
            ">=": have >= want,
            "<=": have <= want,
            "==": have == want,
            ">": have > want,
            "<": have < want,
        }[self.op]

    def __str__(self) -> str:
        events = "/".join(sorted(self.events))
        return events if self.level is None else f"{events} {self.op} {self.level.key}"


def window_overlaps(
    warning: OfficialWarning,
    now: datetime,
    since_hours: int,
    within_hours: int | None,
) -> bool:
    """Whether a warning in force at `now` falls in a level's window.

    The window is the hours [h − since, h + within) around the hour h containing
    `now` (to no end without `within`), as for forecast conditions.
    """
    if not warning.in_force(now):
        return False
    hour = now.replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=since_hours)
    if warning.expires is not None and warning.expires <= start:
        return False
    return within_hours is None or warning.onset < hour + timedelta(hours=within_hours)


def matching(
    condition: OfficialCondition, warnings: Sequence[OfficialWarning], now: datetime
) -> list[OfficialWarning]:
    """The warnings in force at `now` that the condition accepts, earliest onset first."""
    found = [w for w in warnings if w.in_force(now) and condition.matches(w)]
    return sorted(found, key=lambda w: (w.onset, w.id))
