"""`yujing` — the command line for administrators and duty officers.

This module only wires the commands (one module per area in
`dispatcher.commands`) into one Typer application; what they share — the
terminal, plain error messages, the settings — is `dispatcher.commands.terminal`.
Every error an operator can cause (bad YAML, bad setting, second instance)
ends with a plain message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., Any] = typer.main.get_command(app)
    sys.exit(command(args=argv, standalone_mode=True))
