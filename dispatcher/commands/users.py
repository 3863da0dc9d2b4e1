"""`yujing users …`: duty-console accounts (README, "Duty console" → "Accounts").

add, list, and the administration that needs no SQL: disable, enable,
unlock, reset-password, remove. The rules (sessions ended, last admin kept,
removed accounts kept for the audit trail) are in `dispatcher.web.auth`,
shared with the console's 用户 page; each change is audited as
`cli:<OS user>`.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dispatcher.settings import Settings
    from dispatcher.storage.models import User

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
    from dispatcher.commands.terminal import load_settings, operator_errors, out
    from dispatcher.county import load_county
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
    with operator_errors(), _database(settings, write=True) as session:
        user = create_user(
            session,
            name=name,
            password=password,
            role=role,
            person_id=person,
            at=datetime.now(UTC),
            actor=f"cli:{_os_user()}",
        )
        label = f"{user.name} ({user.role}, {ROLES[user.role]})"
    out.print(f"user {label} added" + (f", acting as person {person}" if person else ""))


@users_app.command("list")
def users_list(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list removed accounts (kept for the audit trail)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List console accounts: role, person, status (active, locked, disabled, removed)."""
    from rich.table import Table
    from sqlalchemy import select

    from dispatcher.commands.terminal import operator_errors, out
    from dispatcher.storage.models import User
    from dispatcher.web.auth import account_status

    now = datetime.now(UTC)
    with operator_errors(), _database() as session:
        rows = [
            {
                "name": u.name,
                "role": u.role,
                "person_id": u.person_id,
                "status": account_status(u, now),
                "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            }
            for u in session.scalars(select(User).order_by(User.name))
        ]
    rows = [r for r in rows if show_all or r["status"] != "removed"]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Console users ({len(rows)})")
    for col in ("name", "role", "person", "status", "last login"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["name"]),
            str(r["role"]),
            str(r["person_id"] or ""),
            str(r["status"]),
            str(r["last_login_at"] or "")[:16].replace("T", " "),
        )
    out.print(table)


NameArgument = Annotated[str, typer.Argument(help="Login name (see `yujing users list`)")]


@users_app.command("disable")
def users_disable(name: NameArgument) -> None:
    """Stop an account logging in and end its open logins (enable undoes it)."""
    from dispatcher.web.auth import disable_user

    _change(
        name, lambda s, u, actor, at: _ended("disabled", disable_user(s, u, actor=actor, at=at))
    )


@users_app.command("enable")
def users_enable(name: NameArgument) -> None:
    """Let a disabled account log in again."""
    from dispatcher.web.auth import enable_user

    def run(session: Session, user: User, actor: str, at: datetime) -> str:
        enable_user(session, user, actor=actor, at=at)
        return "enabled"

    _change(name, run)


@users_app.command("unlock")
def users_unlock(name: NameArgument) -> None:
    """Lift the login backoff after wrong passwords: the running console forgives them."""
    from dispatcher.web.auth import unlock_user

    def run(session: Session, user: User, actor: str, at: datetime) -> str:
        unlock_user(session, user, actor=actor, at=at)
        return "unlocked (earlier wrong passwords no longer slow its logins)"

    _change(name, run)


@users_app.command("reset-password")
def users_reset_password(
    name: NameArgument,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the new password from the first line of stdin"),
    ] = False,
) -> None:
    """Set a new password (asks twice unless --password-stdin); ends the account's logins
    and lifts any lock."""
    from dispatcher.commands.terminal import operator_errors
    from dispatcher.web.auth import reset_password

    with operator_errors(), _database() as session:
        find_user_or_fail(session, name)  # before asking for a password nobody can use
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    _change(
        name,
        lambda s, u, actor, at: _ended(
            "password reset", reset_password(s, u, password, actor=actor, at=at)
        ),
    )


@users_app.command("remove")
def users_remove(name: NameArgument) -> None:
    """Remove an account for good; its audit trail stays.

    The row is kept, deactivated, with an unusable password and the name set
    free (shown as NAME~removedID by `users list --all`): audit events and
    logins refer to accounts by id, and a deleted id must not come to mean
    someone else. Its open logins end at once. The last active admin cannot
    be removed. To stop an account only for a while, use `disable`.
    """
    from dispatcher.web.auth import remove_user

    _change(name, lambda s, u, actor, at: _ended("removed", remove_user(s, u, actor=actor, at=at)))


# --- plumbing


def find_user_or_fail(session: Session, name: str) -> User:
    from dispatcher.web.auth import find_user

    return find_user(session, name)


def _change(name: str, action: Callable[[Session, User, str, datetime], str]) -> None:
    """Run one change in one transaction and say what happened."""
    from dispatcher.commands.terminal import operator_errors, out

    with operator_errors(), _database(write=True) as session:
        user = find_user_or_fail(session, name)
        label = f"{user.name} ({user.role})"
        what = action(session, user, f"cli:{_os_user()}", datetime.now(UTC))
    out.print(f"user {label}: {what}")


def _ended(what: str, ended: int) -> str:
    return what + (f"; {ended} open login(s) ended" if ended else "")


@contextmanager
def _database(settings: Settings | None = None, *, write: bool = False) -> Iterator[Session]:
    """A session on the configured database (a transaction when `write`); clean errors
    for a database that is missing or not migrated, and no SQLite file made by asking."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.commands.terminal import load_settings
    from dispatcher.storage.db import make_engine, session_factory

    settings = settings or load_settings()
    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not Path(url.database).exists()
    ):
        raise ValueError(_NO_TABLE.format(url=shown))
    engine = make_engine(settings.database_url)
    try:
        factory = session_factory(engine)
        with factory.begin() if write else factory() as session:
            try:
                yield session
            except (OperationalError, ProgrammingError):
                raise ValueError(_NO_TABLE.format(url=shown)) from None
    finally:
        engine.dispose()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers): still say it was the CLI
        return "unknown"
