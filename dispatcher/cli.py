"""`yujing` — the command line for administrators and duty officers.

Every error an operator can cause (bad YAML, bad setting, second instance)
ends with a plain message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from dispatcher.commands.alerts import alerts_app
from dispatcher.commands.audit import audit_app
from dispatcher.commands.report import report
from dispatcher.commands.roster import roster_app
from dispatcher.commands.rules_test import rules_test
from dispatcher.commands.users import users_app
from dispatcher.settings import Settings
from rules.config import ConfigError, Problem

app = typer.Typer(
    help="Yujing 预警 — geohazard early-warning dispatcher.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
rules_app = typer.Typer(help="Warning rules.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(roster_app, name="roster")
app.command("report")(report)
rules_app.command("test")(rules_test)

out = Console(width=None if sys.stdout.isatty() else 120)  # pipes and CI logs: wide enough


def say(message: str) -> None:
    """One unwrapped line on stderr: `file:line:column: …` must stay greppable."""
    print(message, file=sys.stderr, flush=True)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="County configuration directory [default: YUJING_CONFIG_DIR]"),
]


def fail(message: str, code: int = 1) -> NoReturn:
    say(message)
    raise typer.Exit(code)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the errors an operator can cause into plain messages and exit 1."""
    try:
        yield
    except typer.Exit:
        raise  # a deliberate exit (it is a RuntimeError to click): not an error to report
    except ConfigError as exc:
        for problem in exc.problems:
            say(str(problem))
        fail(f"{len(exc.problems)} problem(s) in the configuration; nothing was changed.")
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            name = "YUJING_" + "_".join(str(p) for p in e["loc"]).upper()
            say(f"{name}: {e['msg']}")
        fail("invalid settings (environment or .env); see .env.example")
    except (ValueError, RuntimeError, OSError) as exc:
        fail(f"error: {exc}")


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def run() -> None:
    """Run the daemon: poll forecasts, evaluate rules, deliver and serve HTTP."""
    from dispatcher import logs
    from dispatcher.daemon import serve

    with operator_errors():
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        asyncio.run(serve(settings))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations (idempotent)."""
    from dispatcher.storage.migrate import current, upgrade

    with operator_errors():
        settings = load_settings()
        upgrade(settings.database_url, revision)
        out.print(f"database at revision {current(settings.database_url)}")


@rules_app.command("check")
def rules_check(config: ConfigOption = None) -> None:
    """Validate the county configuration and rules; list every problem with file:line:column."""
    from dispatcher.county import County, load_county
    from dispatcher.escalation import roster_and_escalation_problems
    from rules.loader import RuleSet, load_ruleset

    with operator_errors():
        config_dir = load_settings(config_dir=config).config_dir
        problems: list[Problem] = []
        county: County | None = None
        ruleset: RuleSet | None = None
        try:
            county = load_county(config_dir)
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            ruleset = load_ruleset(config_dir / "rules")
        except ConfigError as exc:
            problems.extend(exc.problems)
        if county is not None:
            problems.extend(roster_and_escalation_problems(config_dir, county, ruleset))
        if problems:
            raise ConfigError(problems)
        assert county is not None and ruleset is not None
        out.print(
            f"ok: {len(county.zones)} zones, {len(county.people)} people, "
            f"{len(ruleset.rules)} rules over {', '.join(sorted(ruleset.variables))}"
        )


@app.command()
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


def parse_time(text: str, tz: str) -> datetime:
    """ISO 8601; a time without an offset is read in the county's timezone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r}: expected ISO 8601, e.g. 2026-01-05T08:00:00+08:00")
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., Any] = typer.main.get_command(app)
    sys.exit(command(args=argv, standalone_mode=True))
