"""The duty roster as an iCalendar file (RFC 5545), for people's phones (`yujing roster ical`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from dispatcher.county import DUTY_ROLE_LABELS, PersonConfig
from dispatcher.roster import ROSTER_ROLES, Roster, Shift


def to_ical(
    roster: Roster,
    shifts: Sequence[Shift],
    *,
    now: datetime,
    calendar_name: str,
    domain: str = "yujing",
    person_id: str | None = None,
) -> str:
    """The shifts as an iCalendar file: one event per person and unbroken run of duty days.

    Times are UTC (`…Z`), so no VTIMEZONE is needed; UIDs are stable (role,
    person, start) so a phone re-importing the file updates its events instead
    of duplicating them. `person_id` keeps only that person's shifts.
    """
    stamp = _ical_time(now)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Yujing//Duty roster//ZH",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_ical_text(calendar_name)}",
        f"X-WR-TIMEZONE:{roster.timezone}",
    ]
    for role, person, source, start, end in _runs(shifts):
        if person_id is not None and person.id != person_id:
            continue
        label = DUTY_ROLE_LABELS[role]
        lines += [
            "BEGIN:VEVENT",
            f"UID:{role}-{person.id}-{_ical_time(start)}@{domain}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_ical_time(start)}",
            f"DTEND:{_ical_time(end)}",
            f"SUMMARY:{_ical_text(f'{label}：{person.name}')}",
            f"DESCRIPTION:{_ical_text(f'{source}（{label}，{roster.handover:%H:%M} 交接班）')}",
            f"CATEGORIES:{_ical_text(label)}",
            "TRANSP:OPAQUE",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)


def _runs(
    shifts: Sequence[Shift],
) -> Iterator[tuple[str, PersonConfig, str, datetime, datetime]]:
    """(role, person, source, start, end) of each unbroken run of one person in one role."""
    for role in ROSTER_ROLES:
        current: tuple[PersonConfig, str, datetime, datetime] | None = None
        for shift in shifts:
            person = shift.holder(role)
            source = (
                shift.duty_officer_from if role == "duty_officer" else shift.leader_on_duty_from
            )
            if (
                current is not None
                and person is not None
                and person.id == current[0].id
                and source == current[1]
                and shift.start == current[3]
            ):
                current = (current[0], current[1], current[2], shift.end)
                continue
            if current is not None:
                yield role, *current
            current = (person, source, shift.start, shift.end) if person is not None else None
        if current is not None:
            yield role, *current


def _ical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _ical_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 5545 3.1), never inside a UTF-8 character."""
    parts: list[str] = []
    current, size, limit = "", 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append(current)
            current, size, limit = "", 0, 74  # continuation lines start with a space
        current += char
        size += width
    parts.append(current)
    return "\r\n ".join(parts)
