"""`yujing drill --replay FILE`: the whole pipeline once on a recorded forecast."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
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
)


def drill(
    replay: Annotated[Path, typer.Option("--replay", help="Recorded Open-Meteo JSON file")],
    config: ConfigOption = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Evaluation time, ISO 8601 with offset [default: now]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """Run the whole pipeline once on a recorded forecast (throw-away database, console)."""
    from dispatcher.drill import run_drill

    with operator_errors():
        settings = load_settings(config_dir=config)
        when = parse_time(at, settings.timezone) if at else datetime.now(UTC)
        if not replay.is_file():
            fail(f"{replay}: no such file (a recorded forecast, e.g. examples/liulin/scenarios/)")
        result = asyncio.run(run_drill(settings.config_dir, replay, when))
    if as_json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return
    show_drill(result.alerts, result.notifications, when, settings.timezone)


def show_drill(
    alerts: list[dict[str, Any]], notes: list[dict[str, Any]], at: datetime, tz: str
) -> None:
    """Alerts as a table, then one sample text per hazard and level."""
    local = at.astimezone(ZoneInfo(tz))
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
    people = {n["address"] for n in notes}
    statuses = Counter(n["status"] for n in notes)
    out.print(
        f"messages: {len(notes)} to {len(people)} people "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items())) or 'none'})"
    )
    level_of = {a["code"]: (a["hazard"], a["level"]) for a in alerts}
    shown: set[tuple[str, str]] = set()
    for n in notes:
        key = level_of.get(n["alert"])
        if key and key not in shown:
            shown.add(key)
            out.print(f"  e.g. {n['body']}", markup=False, highlight=False, soft_wrap=True)


def _short(iso: str | None) -> str:
    return iso[5:16].replace("T", " ") if iso else "—"
