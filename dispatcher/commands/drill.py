"""`yujing drill --replay FILE [--cap PATH]`: the whole pipeline once on a recorded
forecast (and recorded official warnings)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from dispatcher.commands.terminal import (
    ConfigOption,
    fail,
    load_settings,
    operator_errors,
    out,
    parse_time,
    say,
)
from rules.types import Level

# a level's rank, to show the most severe warning's text as each channel's example
LEVEL_RANK = {level.key: rank for rank, level in enumerate(Level)}


def drill(
    replay: Annotated[
        list[Path],
        typer.Option(
            "--replay",
            metavar="FILE",
            help="Recorded Open-Meteo or QWeather JSON file; repeat it for a feed chain in "
            "that order (the next recording serves what the one before lacks)",
        ),
    ],
    config: ConfigOption = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Evaluation time, ISO 8601 with offset [default: the recording's first hour "
            "plus the hours the rules read before an instant]",
        ),
    ] = None,
    official: Annotated[
        Path | None,
        typer.Option(
            "--cap",
            metavar="PATH",
            help="Recorded official warnings: a directory or file of CAP messages (or an "
            "Atom/RSS index file), received at the drill's instant before it evaluates",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Also write the information report of the drill's period to this file "
            "(.csv: one row per message, full phone numbers; else printable HTML, masked)",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline once on a recorded forecast (throw-away database, console).

    The console stands in for every channel: each message keeps the channel it
    is meant for and is printed, not sent. A recording that cannot answer (not
    readable, a variable the rules read missing, the instant not recorded) fails
    with one line naming the file; undecided zones are counted and explained.
    """
    from dispatcher.drill import DrillError, describe_sources, run_drill

    with operator_errors():
        settings = load_settings(config_dir=config)
        asked = parse_time(at, settings.timezone) if at else None
        for path in replay:
            if not path.is_file():
                fail(f"{path}: no such file (a recorded forecast, e.g. examples/liulin/scenarios/)")
        if official is not None and not official.exists():
            fail(f"{official}: no such file or directory (recorded CAP messages)")
        fmt = None if report is None else ("csv" if report.suffix.lower() == ".csv" else "html")
        try:
            result = asyncio.run(
                run_drill(settings.config_dir, replay, asked, report=fmt, official=official)
            )
        except DrillError as error:
            fail(f"drill: {error}")
        when = result.at
        for note in result.notes:
            say(note)
        for line in describe_sources(result.sources):
            say(line)
        for undecided in result.undecided:
            say(str(undecided))
        if report is not None and result.report is not None:
            # a BOM lets spreadsheet programs open the Chinese CSV as UTF-8
            report.write_text(result.report, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
    if as_json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
    else:
        show_drill(result.alerts, result.notifications, when, settings.timezone, result.events)
    if report is not None:
        local = when.astimezone(ZoneInfo(settings.timezone))
        say(f"drill report {local:%Y-%m-%d %H:%M} ({settings.timezone}) → {report}")


def show_drill(
    alerts: list[dict[str, Any]],
    notes: list[dict[str, Any]],
    at: datetime,
    tz: str,
    events: list[dict[str, Any]] | None = None,
) -> None:
    """Events, then alerts as a table, then the messages per channel: a count and one
    rendered text each."""
    local = at.astimezone(ZoneInfo(tz))
    if events:
        listed = Table(title=f"Events at {local:%Y-%m-%d %H:%M} {tz} ({len(events)})")
        for col in ("code", "hazard", "level", "zones", "onset"):
            listed.add_column(col)
        for e in events:
            title = f"{e['title']} ({e['hazard']})" if e["title"] else e["hazard"]
            listed.add_row(e["code"], title, e["level"], str(e["zones"]), _short(e["onset"]))
        out.print(listed)
    table = Table(title=f"Alerts at {local:%Y-%m-%d %H:%M} {tz} ({len(alerts)})")
    for col in ("code", "zone", "hazard", "level", "onset", "until", "rule"):
        table.add_column(col)
    for a in alerts:
        table.add_row(
            a["code"],
            a["zone_id"],
            a["hazard"],
            a["level"],
            _short(a["onset"]),
            _short(a["until"]),
            a["rule_id"],
        )
    out.print(table)
    tally = Counter((a["hazard"], a["level"]) for a in alerts)
    out.print(
        "summary: "
        + (", ".join(f"{h} {lv} ×{n}" for (h, lv), n in sorted(tally.items())) or "no alert")
    )
    people = {n["address"] for n in notes if n.get("audience") is None}
    audiences = {(n["channel"], n["address"]) for n in notes if n.get("audience") is not None}
    statuses = Counter(n["status"] for n in notes)
    out.print(
        f"messages: {len(notes)} to {len(people)} people and {len(audiences)} villages/groups "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items())) or 'none'})"
    )
    # per channel: how many, and one text as that channel words it — of the
    # highest level's first message, the one that matters most in a drill
    rank = {a["code"]: LEVEL_RANK.get(a["level"], 0) for a in [*alerts, *(events or [])]}
    per_channel = Counter(n["channel"] for n in notes)
    for channel, count in per_channel.most_common():
        mine = [n for n in notes if n["channel"] == channel]
        example = max(mine, key=lambda n: rank.get(n["alert"], 0))
        out.print(f"{channel}: {count}", highlight=False)
        # a group post has several lines: keep them under their channel
        body = example["body"].replace("\n", "\n       ")
        out.print(f"  e.g. {body}", markup=False, highlight=False, soft_wrap=True)
    # what the bureau's people got: one message per event, not one per zone
    codes = {e["code"] for e in events or []}
    bureau = [n for n in notes if n["alert"] in codes and n.get("audience") is None]
    if bureau:
        example = max(bureau, key=lambda n: rank.get(n["alert"], 0))
        staff = len({n["address"] for n in bureau})
        out.print(
            f"to the bureau: {len(bureau)} messages about {len(codes)} events, to {staff} people",
            highlight=False,
        )
        out.print(f"  e.g. {example['body']}", markup=False, highlight=False, soft_wrap=True)


def _short(iso: str | None) -> str:
    return iso[5:16].replace("T", " ") if iso else "—"
