"""`yujing users add|list`: duty-console accounts (README, "Duty console")."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

users_app = typer.Typer(help="Duty-console accounts.", no_args_is_help=True)

# Raised as ValueError inside operator_errors(), which prints "error: …" and exits 1
# (typer.Exit is a RuntimeError, so fail() must not be called inside it).
_NO_TABLE = (
    "the database has no users table yet; run `yujing db upgrade` first (YUJING_DATABASE_URL={url})"
)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name, e.g. wangfang")],
    role: Annotated[
        str, typer.Option("--role", help="admin, duty (may acknowledge) or viewer (read only)")
    ],
    person: Annotated[
        str | None,
        typer.Option("--person", help="Person id in people.yaml: console acks count as theirs"),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin"),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="County configuration directory [default: YUJING_CONFIG_DIR]"
        ),
    ] = None,
) -> None:
    """Create a console account; asks for the password twice unless --password-stdin."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.commands.terminal import load_settings, operator_errors, out
    from dispatcher.county import load_county
    from dispatcher.storage.db import make_engine, session_factory
    from dispatcher.web.auth import ROLES, create_user

    with operator_errors():
        settings = load_settings(config_dir=config)
        if role not in ROLES:
            raise ValueError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
        if person is not None:
            county = load_county(settings.config_dir)
            if person not in county.people:
                raise ValueError(
                    f"--person {person!r}: no such person in {settings.config_dir / 'people.yaml'}"
                )
    # outside operator_errors(): Ctrl-C at the prompt is click's Abort, a RuntimeError
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with operator_errors():
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine).begin() as session:
                user = create_user(
                    session,
                    name=name,
                    password=password,
                    role=role,
                    person_id=person,
                    at=datetime.now(UTC),
                )
                label = f"{user.name} ({user.role}, {ROLES[user.role]})"
        except (OperationalError, ProgrammingError):
            raise ValueError(
                _NO_TABLE.format(url=engine.url.render_as_string(hide_password=True))
            ) from None
        finally:
            engine.dispose()
    out.print(f"user {label} added" + (f", acting as person {person}" if person else ""))


@users_app.command("list")
def users_list() -> None:
    """List console accounts."""
    from rich.table import Table
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.commands.terminal import load_settings, operator_errors, out
    from dispatcher.storage.db import make_engine, session_factory
    from dispatcher.storage.models import User

    with operator_errors():
        settings = load_settings()
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine)() as session:
                rows = [
                    (u.name, u.role, u.person_id or "", "yes" if u.active else "no")
                    for u in session.scalars(select(User).order_by(User.name))
                ]
        except (OperationalError, ProgrammingError):
            raise ValueError(
                _NO_TABLE.format(url=engine.url.render_as_string(hide_password=True))
            ) from None
        finally:
            engine.dispose()
    table = Table(title=f"Console users ({len(rows)})")
    for col in ("name", "role", "person", "active"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)
