"""`yujing` — the command line for administrators and duty officers.

This module only wires the commands (one module per area in
`dispatcher.commands`) into one Typer application; what they share — the
terminal, plain error messages, the settings — is `dispatcher.commands.terminal`.
Every error an operator can cause (bad YAML, bad setting, second instance,
a database not migrated) ends with a plain message and a non-zero exit, never
a traceback.

Every command reads the database unless it is listed in `WITHOUT_DATABASE`:
`guard_database` checks the database first (exists, reachable, migrated) so a
new command is covered without anyone remembering to, and no command creates
an empty SQLite file by connecting to one that is not there.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any

import typer

from dispatcher.commands.alerts import alerts_app
from dispatcher.commands.audit import audit_app
from dispatcher.commands.backup import backup
from dispatcher.commands.db import db_app
from dispatcher.commands.drill import drill
from dispatcher.commands.evaluate import evaluate_now
from dispatcher.commands.report import report
from dispatcher.commands.roster import roster_app
from dispatcher.commands.rules_check import rules_check
from dispatcher.commands.rules_test import rules_test
from dispatcher.commands.run import run
from dispatcher.commands.users import users_app

app = typer.Typer(
    help="Yujing 预警 — geohazard early-warning dispatcher.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Warning rules.", no_args_is_help=True)
# in the order `yujing --help` has always listed them
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(roster_app, name="roster")
app.command("report")(report)
app.command("run")(run)
app.command("drill")(drill)
app.command("evaluate-now")(evaluate_now)
app.command("backup")(backup)
rules_app.command("test")(rules_test)
rules_app.command("check")(rules_check)

#: Commands that never open the configured database (`db upgrade` and `run`
#: migrate it themselves; a drill has a throw-away one). Every other command is
#: checked by `guard_database` before it runs, unless it is marked
#: `checks_database_itself` (it checks its own options first, then the database).
WITHOUT_DATABASE = frozenset(
    {"db upgrade", "run", "drill", "rules test", "rules check", "roster show", "roster ical"}
)


def yujing_version() -> str:
    try:
        return package_version("yujing")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _version(value: bool) -> None:
    if value:
        print(f"yujing {yujing_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Yujing 预警 — geohazard early-warning dispatcher."""


def commands(typer_app: typer.Typer = app, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full name, Typer command info) of every command, e.g. ("alerts list", …)."""
    for info in typer_app.registered_commands:
        assert info.callback is not None
        name = info.name or info.callback.__name__.replace("_", "-")
        yield f"{prefix}{name}", info
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None and group.name
        yield from commands(group.typer_instance, f"{prefix}{group.name} ")


def guard_database(callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback`, after checking the configured database is there and migrated."""

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from dispatcher.commands.terminal import check_database, load_settings, operator_errors

        with operator_errors():
            check_database(load_settings().database_url)
        return callback(*args, **kwargs)

    guarded.__yujing_guarded__ = True  # type: ignore[attr-defined]
    return guarded


for _name, _info in commands():
    if _name not in WITHOUT_DATABASE and not getattr(_info.callback, "__yujing_guarded__", False):
        _info.callback = guard_database(_info.callback)


_PLACEHOLDERS = {"config": "DIR", "out_file": "FILE", "person": "ID", "at": "TIME"}


def _no_type(ctx: Any) -> None:
    return None


def readable_placeholders(command: Any) -> Any:
    """Help that shows `--config DIR`, not `<path>`: flags show nothing, values a word.

    Options declare their own `metavar=` (DIR, FILE, TIME); one without gets
    its name in capitals rather than a Python type.
    """
    # Typer carries its own copy of click: its classes, found by what they have
    help_option = command.get_help_option(typer.Context(command, info_name=command.name))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if param.param_type_name == "argument":
            # the name column already says FILE…: no `<list[Path]>` beside it
            param.display_type_rich = _no_type
        elif param.is_flag or param.count:
            param.metavar = ""
        elif param.metavar is None and param.name:
            param.metavar = _PLACEHOLDERS.get(param.name, param.name.upper())
    if hasattr(command, "commands"):
        for sub in command.commands.values():
            readable_placeholders(sub)
    return command


def cli() -> Any:
    """The `yujing` command as the console script runs it."""
    return readable_placeholders(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(cli()(args=argv, standalone_mode=True))
