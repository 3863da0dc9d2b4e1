"""`yujing roster show|ical`: who is on duty (值班员, 带班领导), and a calendar for phones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from dispatcher.county import County
    from dispatcher.roster import Roster

roster_app = typer.Typer(help="Duty roster (值班表).", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="DIR",
        help="County configuration directory [default: YUJING_CONFIG_DIR]",
    ),
]


@roster_app.command("show")
def roster_show(
    at: Annotated[
        str | None,
        typer.Option(
            "--at", metavar="TIME", help="Instant, ISO 8601 (no offset: county time) [default: now]"
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, metavar="N", help="Shifts to list from then")
    ] = 7,
    config: ConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables")
    ] = False,
) -> None:
    """Print who is on duty at an instant, then the next shifts."""
    from rich.table import Table

    from dispatcher.commands.terminal import load_settings, operator_errors, out, parse_time
    from dispatcher.county import load_county
    from dispatcher.labels import PERSON_ROLE_LABELS
    from dispatcher.roster import ROSTER_ROLES, load_roster

    with operator_errors():
        settings = load_settings(config_dir=config)
        county = load_county(settings.config_dir)
        roster = load_roster(settings.config_dir, county)
    when = parse_time(at, county.timezone) if at else datetime.now(UTC)
    tz = ZoneInfo(county.timezone)
    local = when.astimezone(tz)
    if as_json:
        _print_json(county, roster, when, days)
        return
    if not roster.configured:
        out.print(
            f"{settings.config_dir / 'roster.yaml'} 不存在：没有轮班，"
            "所有值班员和带班领导都视为在岗（都会收到通知）。"
        )
        for role in ROSTER_ROLES:
            label = PERSON_ROLE_LABELS[role]
            people = [p for p in county.people.values() if p.duty_role == role]
            out.print(f"{label}：" + ("、".join(f"{p.name}（{p.phone}）" for p in people) or "无"))
        return
    now = roster.shift_at(when)
    officer, leader = now.duty_officer, now.leader_on_duty
    out.print(
        f"{local:%Y-%m-%d %H:%M} {county.timezone} 在岗："
        f"值班员 {_who(officer.name, officer.phone) if officer else '无（将通知全部值班员）'}，"
        f"带班领导 {_who(leader.name, leader.phone) if leader else '无（将通知全部带班领导）'}"
    )
    table = Table(title=f"{county.name}值班表（{roster.handover:%H:%M} 交接班）")
    for column in ("值班日", "起", "止", "值班员", "带班领导", "安排"):
        table.add_column(column)
    for shift in roster.shifts(now.day, days):
        sources = dict.fromkeys(
            s for s in (shift.duty_officer_from, shift.leader_on_duty_from) if s
        )
        table.add_row(
            f"{shift.day:%Y-%m-%d}",
            f"{shift.start.astimezone(tz):%m-%d %H:%M}",
            f"{shift.end.astimezone(tz):%m-%d %H:%M}",
            shift.duty_officer.name if shift.duty_officer else "—",
            shift.leader_on_duty.name if shift.leader_on_duty else "—",
            " / ".join(sources) or "（未排班）",
        )
    out.print(table)


@roster_app.command("ical")
def roster_ical(
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE", help="The .ics file to write")],
    person: Annotated[
        str | None,
        typer.Option("--person", metavar="ID", help="Only this person's shifts (people.yaml id)"),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE",
            help="First duty day, YYYY-MM-DD [default: the horizon's first]",
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days", min=1, metavar="N", help="Duty days to export [default: to the horizon's end]"
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Export the roster as an iCalendar (.ics) file people can import on their phones."""
    from datetime import date

    from dispatcher.commands.terminal import fail, load_settings, operator_errors, out
    from dispatcher.county import load_county
    from dispatcher.ical import to_ical
    from dispatcher.roster import load_roster

    with operator_errors():
        settings = load_settings(config_dir=config)
        county = load_county(settings.config_dir)
        roster = load_roster(settings.config_dir, county)
    if not roster.configured or roster.horizon is None:
        fail(f"{settings.config_dir / 'roster.yaml'}: no roster to export (the file is missing)")
    if person is not None and person not in county.people:
        fail(f"--person {person!r}: no such person in {settings.config_dir / 'people.yaml'}")
    try:
        first = date.fromisoformat(start) if start else roster.horizon[0]
    except ValueError:
        fail(f"--from {start!r}: expected a date, YYYY-MM-DD")
    count = days if days is not None else (roster.horizon[1] - first).days + 1
    if count < 1:
        fail(f"--from {first}: after the roster's horizon ({roster.horizon[1]}); give --days")
    shifts = roster.shifts(first, count)
    text = to_ical(
        roster,
        shifts,
        now=datetime.now(UTC),
        calendar_name=f"{county.sender}值班表",
        domain=f"yujing.{county.area_code}",
        person_id=person,
    )
    with operator_errors():
        out_file.write_bytes(text.encode("utf-8"))
    events = text.count("BEGIN:VEVENT")
    last = first + timedelta(days=count - 1)
    out.print(f"wrote {out_file}: {events} events, duty days {first}..{last}")


def _print_json(county: County, roster: Roster, when: datetime, days: int) -> None:
    """The same as the tables, for scripts: ids and ISO times with the county's offset."""
    import json

    from dispatcher.roster import ROSTER_ROLES

    tz = ZoneInfo(county.timezone)

    def person(p: Any) -> dict[str, str] | None:
        return None if p is None else {"id": p.id, "name": p.name, "phone": p.phone}

    if not roster.configured:
        # no roster: everyone of each role is on duty
        on_duty = {
            role: [person(p) for p in county.people.values() if p.duty_role == role]
            for role in ROSTER_ROLES
        }
        print(json.dumps({"configured": False, "on_duty": on_duty}, ensure_ascii=False, indent=2))
        return
    now = roster.shift_at(when)
    shifts = [
        {
            "day": shift.day.isoformat(),
            "start": shift.start.astimezone(tz).isoformat(),
            "end": shift.end.astimezone(tz).isoformat(),
            "duty_officer": person(shift.duty_officer),
            "leader_on_duty": person(shift.leader_on_duty),
        }
        for shift in roster.shifts(now.day, days)
    ]
    document = {
        "configured": True,
        "at": when.astimezone(tz).isoformat(),
        "duty_officer": person(now.duty_officer),
        "leader_on_duty": person(now.leader_on_duty),
        "horizon": [d.isoformat() for d in roster.horizon] if roster.horizon else None,
        "shifts": shifts,
    }
    print(json.dumps(document, ensure_ascii=False, indent=2))


def _who(name: str, phone: str) -> str:
    return f"{name}（{phone}）"
