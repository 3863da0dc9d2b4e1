"""`yujing users disable|enable|unlock|reset-password|remove`: accounts without SQL.

On SQLite and PostgreSQL, through the real command line: each change ends the
account's logins where it should, is audited with the OS user, keeps the audit
trail, and refuses what would lock everyone out (the last admin).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from dispatcher import audit
from dispatcher.cli import app as cli
from dispatcher.storage.models import AuditEvent, ConsoleSession, User
from dispatcher.web import auth
from dispatcher.web.auth import authenticate, create_user, find_login, start_session
from dispatcher.web.throttle import PAIR
from tests.support import Clock
from tests.web.test_login_throttle import application, attempt, from_address


def now() -> datetime:
    """The real time: the commands use it (locks and logins are compared with it)."""
    return datetime.now(UTC)


PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def accounts(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> sessionmaker[Session]:
    """Two admins, a duty officer and a viewer; the duty officer is logged in twice."""
    monkeypatch.setattr(auth, "PASSWORD_HASHER", PasswordHasher.from_parameters(CHEAPEST))
    with sessions.begin() as db:
        for name, role in (("admin", "admin"), ("root2", "admin"), ("zhang", "duty")):
            create_user(db, name=name, password=PASSWORD, role=role, person_id=None, at=now())
        create_user(db, name="guest", password=PASSWORD, role="viewer", person_id=None, at=now())
    return sessions


def yujing(db_url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env={"YUJING_DATABASE_URL": db_url})


def log_in(sessions: sessionmaker[Session], name: str) -> str:
    with sessions.begin() as db:
        user = db.scalars(select(User).where(User.name == name)).one()
        return start_session(db, user, at=now(), ttl_seconds=3600)


def is_open(sessions: sessionmaker[Session], token: str) -> bool:
    with sessions() as db:
        return find_login(db, token, now() + timedelta(seconds=1)) is not None


def can_log_in(sessions: sessionmaker[Session], name: str, password: str = PASSWORD) -> bool:
    with sessions.begin() as db:
        return isinstance(authenticate(db, name, password, now() + timedelta(seconds=2)), User)


def last_event(sessions: sessionmaker[Session]) -> AuditEvent:
    with sessions() as db:
        return db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()


def test_disable_ends_the_logins_and_enable_lets_the_account_back_in(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    first, second, other = (
        log_in(accounts, "zhang"),
        log_in(accounts, "zhang"),
        log_in(accounts, "guest"),
    )

    result = yujing(db_url, "users", "disable", "zhang")
    assert result.exit_code == 0, result.output
    assert "disabled" in result.output and "2 open login(s) ended" in result.output
    assert not is_open(accounts, first) and not is_open(accounts, second)
    assert is_open(accounts, other), "only the disabled account's logins end"
    assert not can_log_in(accounts, "zhang")
    event = last_event(accounts)
    assert (event.action, event.actor) == ("console.user_disabled", f"cli:{getpass.getuser()}")
    assert event.data == {"name": "zhang", "ended": 2}

    again = yujing(db_url, "users", "disable", "zhang")
    assert again.exit_code == 1 and "already disabled" in again.output

    result = yujing(db_url, "users", "enable", "zhang")
    assert result.exit_code == 0, result.output
    assert can_log_in(accounts, "zhang")
    assert not is_open(accounts, first), "enabling opens no old login again"
    assert last_event(accounts).action == "console.user_enabled"


def test_unlock_lifts_the_running_consoles_backoff_from_the_command_line(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    # the console runs in another process: the command reaches it through the database
    officer = from_address(application(accounts, Clock(now())), "203.0.113.9")
    for _ in range(PAIR.free + 1):
        assert attempt(officer, "zhang", "typo").status_code == 401
    assert attempt(officer, "zhang", PASSWORD).status_code == 429, "backing off"

    result = yujing(db_url, "users", "unlock", "zhang")

    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    assert attempt(officer, "zhang", PASSWORD).status_code == 303
    assert last_event(accounts).action == "console.login"
    with accounts() as db:
        unlocked = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "console.user_unlocked")
        ).one()
    assert unlocked.data["name"] == "zhang"


def test_reset_password_from_stdin_ends_the_logins_and_only_the_new_password_works(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    token = log_in(accounts, "zhang")
    result = yujing(
        db_url, "users", "reset-password", "zhang", "--password-stdin", stdin=f"{NEW_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert not is_open(accounts, token)
    assert can_log_in(accounts, "zhang", NEW_PASSWORD)
    assert not can_log_in(accounts, "zhang", PASSWORD)
    event = last_event(accounts)
    assert event.action == "console.password_reset"
    assert NEW_PASSWORD not in json.dumps(event.data) and PASSWORD not in json.dumps(event.data)


def test_reset_password_asks_twice_and_refuses_a_short_one(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    mismatch = yujing(
        db_url, "users", "reset-password", "zhang", stdin=f"{NEW_PASSWORD}\nother one\n"
    )
    assert mismatch.exit_code != 0
    assert can_log_in(accounts, "zhang"), "a failed confirmation changes nothing"

    short = yujing(db_url, "users", "reset-password", "zhang", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "too short" in short.output
    assert can_log_in(accounts, "zhang")

    twice = yujing(
        db_url, "users", "reset-password", "zhang", stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert twice.exit_code == 0, twice.output
    assert can_log_in(accounts, "zhang", NEW_PASSWORD)


def test_remove_keeps_the_row_and_the_audit_trail_and_frees_the_name(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    token = log_in(accounts, "zhang")
    with accounts() as db:
        zhang_id = db.scalars(select(User.id).where(User.name == "zhang")).one()
        trail_before = db.scalars(
            select(AuditEvent.id).where(AuditEvent.subject == f"user:{zhang_id}")
        ).all()

    result = yujing(db_url, "users", "remove", "zhang")
    assert result.exit_code == 0, result.output
    assert not is_open(accounts, token)
    assert not can_log_in(accounts, "zhang")
    with accounts() as db:
        row = db.get_one(User, zhang_id)
        assert (row.active, row.name) == (False, f"zhang~removed{zhang_id}")
        trail_after = db.scalars(
            select(AuditEvent.id).where(AuditEvent.subject == f"user:{zhang_id}")
        ).all()
        assert set(trail_before) < set(trail_after), "nothing of the trail is deleted"
        assert audit.verify(db) == []
        assert db.scalar(select(ConsoleSession.ended_at).where(ConsoleSession.user_id == zhang_id))
    event = last_event(accounts)
    assert event.action == "console.user_removed" and event.data["name"] == "zhang"

    listed = [u["name"] for u in json.loads(yujing(db_url, "users", "list", "--json").stdout)]
    assert "zhang" not in listed and f"zhang~removed{zhang_id}" not in listed
    with_all = json.loads(yujing(db_url, "users", "list", "--all", "--json").stdout)
    assert {u["name"]: u["status"] for u in with_all}[f"zhang~removed{zhang_id}"] == "removed"
    # a removed account is gone for the commands, and its name is free again
    assert "no user named 'zhang'" in yujing(db_url, "users", "enable", "zhang").output
    added = yujing(
        db_url,
        "users",
        "add",
        "zhang",
        "--role",
        "viewer",
        "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )
    assert added.exit_code == 0, added.output
    assert can_log_in(accounts, "zhang")


def test_the_last_admin_can_be_neither_disabled_nor_removed(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    assert yujing(db_url, "users", "disable", "root2").exit_code == 0
    for command in ("disable", "remove"):
        result = yujing(db_url, "users", command, "admin")
        assert result.exit_code == 1
        assert "last active admin" in result.output
    assert can_log_in(accounts, "admin")
    # with a second admin again, the first may go
    assert yujing(db_url, "users", "enable", "root2").exit_code == 0
    assert yujing(db_url, "users", "disable", "admin").exit_code == 0


def test_an_unknown_user_is_refused_with_the_closest_names(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    with accounts() as db:
        events_before = len(db.scalars(select(AuditEvent.id)).all())
    for command in ("disable", "enable", "unlock", "remove", "reset-password"):
        result = yujing(
            db_url, "users", command, "zhagn", stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
        )
        assert result.exit_code == 1, (command, result.output)
        assert "no user named 'zhagn'; did you mean zhang?" in result.output, command
        assert "Traceback" not in result.output
    with accounts() as db:
        assert len(db.scalars(select(AuditEvent.id)).all()) == events_before


def test_the_commands_on_a_database_not_yet_migrated_say_so_and_create_no_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nothing.db"
    url = f"sqlite:///{path}"
    for args in (("list",), ("disable", "x"), ("unlock", "x"), ("remove", "x")):
        result = yujing(url, "users", *args)
        assert result.exit_code == 1, args
        assert "yujing db upgrade" in result.output and "Traceback" not in result.output
    assert not path.exists()


def test_users_list_json_shows_roles_and_status(
    db_url: str, accounts: sessionmaker[Session]
) -> None:
    yujing(db_url, "users", "disable", "guest")
    listed = json.loads(yujing(db_url, "users", "list", "--json").stdout)
    assert [(u["name"], u["role"], u["status"]) for u in listed] == [
        ("admin", "admin", "active"),
        ("guest", "viewer", "disabled"),
        ("root2", "admin", "active"),
        ("zhang", "duty", "active"),
    ]


def test_users_help_explains_what_remove_keeps() -> None:
    result = CliRunner().invoke(cli, ["users", "remove", "--help"])
    assert result.exit_code == 0
    assert "audit" in result.output and "disable" in result.output
