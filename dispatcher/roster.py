"""The duty roster (值班表): who is duty officer and leader on duty, when.

`roster.yaml` in the configuration directory (format: docs/config.md) lists
rotations — people taking turns, one duty day each (or `days_per_shift`) — and
overrides for date ranges (holiday duty: New Year, Spring Festival, the Two
Sessions). A duty day runs from the daily handover (e.g. 08:30 local time) to
the next day's handover, so at 08:29 yesterday's shift is still on duty and at
08:30 today's takes over.

For each role an override wins over a rotation on the days it covers. Every
duty day of the `horizon` must have a duty officer and a leader on duty: a gap
is a configuration error naming the gap, like any other problem `yujing rules
check` reports.

Without roster.yaml there is no rotation: everyone with the duty role is on
duty all the time (`Roster.configured` is False), which is how the bureau
worked before the roster existed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from dispatcher.county import DUTY_ROLE_LABELS, County, PersonConfig
from rules.config import (
    ConfigError,
    Document,
    Problem,
    Strict,
    load_yaml,
    problems_from_validation,
)

__all__ = [
    "ROSTER_FILE",
    "ROSTER_ROLES",
    "OnDuty",
    "Roster",
    "Rotation",
    "Shift",
    "load_roster",
]

ROSTER_FILE = "roster.yaml"

#: The roles a roster assigns, in display order.
ROSTER_ROLES: tuple[str, ...] = ("duty_officer", "leader_on_duty")

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


# --- the YAML shape


def _handover(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:30 as the sexagesimal number 510
        raise ValueError('write the time as a quoted string, e.g. "08:30"')
    if isinstance(value, str):
        match = _HHMM.match(value)
        if not match:
            raise ValueError(f'{value!r} is not a time of day; expected "HH:MM", e.g. "08:30"')
        return time(int(match.group(1)), int(match.group(2)))
    return value


HandoverTime = Annotated[time, BeforeValidator(_handover)]


class _Strict(Strict):
    # `from:`/`to:` are Python keywords, so the fields are named start/end with
    # aliases; populate_by_name lets the code build them by those names too.
    model_config = ConfigDict(populate_by_name=True)


class _Span(_Strict):
    start: date = Field(alias="from")
    end: date = Field(alias="to")


class _RotationConfig(_Strict):
    """One rotation or override: people taking turns over a range of duty days."""

    name: str = Field(min_length=1)
    start: date = Field(alias="from")
    end: date | None = Field(default=None, alias="to")
    duty_officer: list[str] = Field(default_factory=list)
    leader_on_duty: list[str] = Field(default_factory=list)
    days_per_shift: int = Field(default=1, ge=1)


class _RosterConfig(_Strict):
    handover: HandoverTime = time(8, 30)
    horizon: _Span
    rotations: list[_RotationConfig] = Field(default_factory=list)
    overrides: list[_RotationConfig] = Field(default_factory=list)


class _RosterFile(_Strict):
    roster: dict[str, Any]


# --- the loaded roster


@dataclass(frozen=True)
class Rotation:
    """People of one role taking turns from `start` to `end` (duty days, inclusive)."""

    name: str
    role: str
    start: date
    end: date | None
    people: tuple[str, ...]
    days_per_shift: int = 1
    override: bool = False

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

    def person_on(self, day: date) -> str:
        turn = (day - self.start).days // self.days_per_shift
        return self.people[turn % len(self.people)]


class OnDuty(NamedTuple):
    """Who is on duty at an instant; None where the roster has nobody."""

    duty_officer: PersonConfig | None
    leader_on_duty: PersonConfig | None


@dataclass(frozen=True)
class Shift:
    """One duty day: from `start` to `end` (UTC), who holds each role and why."""

    day: date
    start: datetime
    end: datetime
    duty_officer: PersonConfig | None
    leader_on_duty: PersonConfig | None
    duty_officer_from: str  # the rotation or override that put them there ("" if none)
    leader_on_duty_from: str

    def holder(self, role: str) -> PersonConfig | None:
        return self.duty_officer if role == "duty_officer" else self.leader_on_duty


@dataclass(frozen=True)
class Roster:
    """The duty roster of a county; see the module docstring."""

    timezone: str
    handover: time
    people: Mapping[str, PersonConfig]
    rotations: tuple[Rotation, ...] = ()
    horizon: tuple[date, date] | None = None
    configured: bool = True

    @classmethod
    def unconfigured(cls, county: County) -> Roster:
        """No roster.yaml: nobody in particular is on duty (callers tell everyone)."""
        return cls(county.timezone, time(8, 30), county.people, configured=False)

    def duty_day(self, at: datetime) -> date:
        """The duty day `at` falls in: before the handover it is still yesterday's."""
        if at.tzinfo is None:
            raise ValueError("pass a timezone-aware time")
        local = at.astimezone(ZoneInfo(self.timezone))
        day = local.date()
        return day - timedelta(days=1) if local.time() < self.handover else day

    def handover_at(self, day: date) -> datetime:
        """When the shift of duty day `day` begins (UTC)."""
        local = datetime.combine(day, self.handover, tzinfo=ZoneInfo(self.timezone))
        return local.astimezone(UTC)

    def shift(self, day: date) -> Shift:
        """The shift of duty day `day`."""
        holders: dict[str, tuple[PersonConfig | None, str]] = {}
        for role in ROSTER_ROLES:
            rotation = self._rotation_for(role, day)
            if rotation is None:
                holders[role] = (None, "")
            else:
                holders[role] = (self.people.get(rotation.person_on(day)), rotation.name)
        return Shift(
            day=day,
            start=self.handover_at(day),
            end=self.handover_at(day + timedelta(days=1)),
            duty_officer=holders["duty_officer"][0],
            leader_on_duty=holders["leader_on_duty"][0],
            duty_officer_from=holders["duty_officer"][1],
            leader_on_duty_from=holders["leader_on_duty"][1],
        )

    def shift_at(self, at: datetime) -> Shift:
        return self.shift(self.duty_day(at))

    def shifts(self, first_day: date, days: int) -> list[Shift]:
        """`days` consecutive shifts from duty day `first_day`."""
        return [self.shift(first_day + timedelta(days=n)) for n in range(days)]

    def on_duty(self, at: datetime) -> OnDuty:
        """(duty officer, leader on duty) at `at`; None for a role nobody holds then."""
        shift = self.shift_at(at)
        return OnDuty(shift.duty_officer, shift.leader_on_duty)

    def _rotation_for(self, role: str, day: date) -> Rotation | None:
        found: Rotation | None = None
        for rotation in self.rotations:
            if rotation.role == role and rotation.covers(day):
                if rotation.override:
                    return rotation
                found = found or rotation
        return found


# --- loading


def load_roster(config_dir: Path, county: County) -> Roster:
    """Read `roster.yaml` of `config_dir`; without the file, `Roster.unconfigured`.

    Raises ConfigError listing every problem (file:line:column): the shape,
    unknown people or people without the role, overlapping rotations, and gaps
    in coverage over the horizon.
    """
    path = config_dir / ROSTER_FILE
    if not path.exists():
        return Roster.unconfigured(county)
    doc = load_yaml(path)
    problems: list[Problem] = []
    config = _validate(doc, problems)
    if config is None:
        raise ConfigError(problems)
    rotations = tuple(_rotations(config))
    problems.extend(_check_people(doc, config, county.people))
    problems.extend(_check_spans(doc, config))
    if not problems:
        problems.extend(_check_coverage(doc, config, rotations, county.timezone))
    if problems:
        raise ConfigError(problems)
    return Roster(
        timezone=county.timezone,
        handover=config.handover,
        people=county.people,
        rotations=rotations,
        horizon=(config.horizon.start, config.horizon.end),
    )


def _validate(doc: Document, problems: list[Problem]) -> _RosterConfig | None:
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        problems.append(
            doc.problem(
                (), f"the file is {what}; expected a mapping with the top-level key roster:"
            )
        )
        return None
    try:
        _RosterFile.model_validate(doc.data)
        return _RosterConfig.model_validate(doc.data["roster"])
    except ValidationError as exc:
        prefix = ("roster",) if "roster" in doc.data else ()
        problems.extend(problems_from_validation(doc, exc, prefix))
        return None


def _sections(config: _RosterConfig) -> Iterator[tuple[str, int, _RotationConfig]]:
    for index, entry in enumerate(config.rotations):
        yield "rotations", index, entry
    for index, entry in enumerate(config.overrides):
        yield "overrides", index, entry


def _rotations(config: _RosterConfig) -> Iterator[Rotation]:
    for section, _, entry in _sections(config):
        for role in ROSTER_ROLES:
            people = tuple(getattr(entry, role))
            if people:
                yield Rotation(
                    name=entry.name,
                    role=role,
                    start=entry.start,
                    end=entry.end,
                    people=people,
                    days_per_shift=entry.days_per_shift,
                    override=section == "overrides",
                )


def _check_people(
    doc: Document, config: _RosterConfig, people: Mapping[str, PersonConfig]
) -> Iterator[Problem]:
    for section, index, entry in _sections(config):
        if not entry.duty_officer and not entry.leader_on_duty:
            yield doc.problem(
                ("roster", section, index),
                f"{entry.name}: nobody listed; give duty_officer: [ids] and/or "
                "leader_on_duty: [ids]",
            )
        for role in ROSTER_ROLES:
            for position, person_id in enumerate(getattr(entry, role)):
                loc = ("roster", section, index, role, position)
                person = people.get(person_id)
                if person is None:
                    hint = difflib.get_close_matches(person_id, sorted(people), n=1, cutoff=0.6)
                    guess = f"; did you mean {hint[0]!r}?" if hint else ""
                    yield doc.problem(
                        loc,
                        f"{entry.name}: unknown person {person_id!r}, not in people.yaml{guess}",
                    )
                elif person.duty_role != role:
                    has = f"duty_role: {person.duty_role}" if person.duty_role else "no duty_role"
                    yield doc.problem(
                        loc,
                        f"{entry.name}: {person_id} ({person.name}) is listed as {role} "
                        f"({DUTY_ROLE_LABELS[role]}) but people.yaml gives {has}; "
                        f"set 'duty_role: {role}' there or list them under their role",
                    )


def _check_spans(doc: Document, config: _RosterConfig) -> Iterator[Problem]:
    if config.horizon.end < config.horizon.start:
        yield doc.problem(
            ("roster", "horizon", "to"),
            f"horizon ends ({config.horizon.end}) before it starts ({config.horizon.start})",
        )
    for section, index, entry in _sections(config):
        if entry.end is not None and entry.end < entry.start:
            yield doc.problem(
                ("roster", section, index, "to"),
                f"{entry.name}: ends ({entry.end}) before it starts ({entry.start})",
            )
    # Two rotations (or two overrides) for one role on one day would be ambiguous.
    for section, entries in (("rotations", config.rotations), ("overrides", config.overrides)):
        for later in range(len(entries)):
            for earlier in range(later):
                a, b = entries[earlier], entries[later]
                roles = [r for r in ROSTER_ROLES if getattr(a, r) and getattr(b, r)]
                if roles and _overlap(a, b):
                    line, _ = doc.where(("roster", section, earlier))
                    yield doc.problem(
                        ("roster", section, later, "from"),
                        f"{b.name}: overlaps {a.name} (line {line}) for "
                        f"{', '.join(roles)}; on any day only one {section[:-1]} may "
                        "assign a role",
                    )


def _overlap(a: _RotationConfig, b: _RotationConfig) -> bool:
    far = date.max
    return a.start <= (b.end or far) and b.start <= (a.end or far)


def _check_coverage(
    doc: Document, config: _RosterConfig, rotations: Sequence[Rotation], tz: str
) -> Iterator[Problem]:
    """Every duty day of the horizon has someone in every role; name each gap."""
    first, last = config.horizon.start, config.horizon.end
    handover = config.handover.strftime("%H:%M")
    for role in ROSTER_ROLES:
        mine = [r for r in rotations if r.role == role]
        day = first
        while day <= last:
            if any(r.covers(day) for r in mine):
                day += timedelta(days=1)
                continue
            gap_start = day
            while day <= last and not any(r.covers(day) for r in mine):
                day += timedelta(days=1)
            gap_end = day - timedelta(days=1)
            days = (gap_end - gap_start).days + 1
            yield doc.problem(
                _gap_position(config, role, gap_start, gap_end),
                f"gap in the roster: no {role} ({DUTY_ROLE_LABELS[role]}) from "
                f"{gap_start} {handover} to {gap_end + timedelta(days=1)} {handover} "
                f"({days} duty day{'s' if days > 1 else ''}, {tz}); extend a rotation or "
                f"add an override covering {gap_start}..{gap_end}",
            )


def _gap_position(
    config: _RosterConfig, role: str, gap_start: date, gap_end: date
) -> tuple[str | int, ...]:
    """Where to point for a gap: the entry that ends just before it, or starts just after."""
    for section, index, entry in _sections(config):
        if getattr(entry, role) and entry.end == gap_start - timedelta(days=1):
            return ("roster", section, index, "to")
    for section, index, entry in _sections(config):
        if getattr(entry, role) and entry.start == gap_end + timedelta(days=1):
            return ("roster", section, index, "from")
    if gap_start == config.horizon.start:
        return ("roster", "horizon", "from")
    return ("roster", "horizon", "to")
