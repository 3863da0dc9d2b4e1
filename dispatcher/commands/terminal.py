"""What every command shares: the operator's terminal, plain errors, and the settings.

Output for people goes to `out` (rich); messages an operator greps for
(`file:line:column: …`) go unwrapped to stderr through `say`. Every error an
operator can cause ends in `fail`: one plain message and a non-zero exit,
never a traceback. The commands import this module; `dispatcher.cli` only
wires the commands into the `yujing` application.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.console import Console

from dispatcher.settings import Settings
from rules.config import ConfigError

__all__ = [
    "ConfigOption",
    "DatabaseNotReady",
    "JsonOption",
    "check_database",
    "checks_database_itself",
    "fail",
    "load_settings",
    "operator_errors",
    "out",
    "parse_time",
    "print_json",
    "say",
]

out = Console(width=None if sys.stdout.isatty() else 120)  # pipes and CI logs: wide enough

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="DIR",
        help="County configuration directory [default: YUJING_CONFIG_DIR]",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables")
]


def say(message: str) -> None:
    """One unwrapped line on stderr: `file:line:column: …` must stay greppable."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Say `message` and exit with `code`."""
    say(message)
    raise typer.Exit(code)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the errors an operator can cause into plain messages and exit 1."""
    try:
        yield
    except typer.Exit:
        raise  # a deliberate exit (it is a RuntimeError to click): not an error to report
    except DatabaseNotReady as exc:
        fail(f"error: {exc}")
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


def print_json(document: Any) -> None:
    """A command's `--json` answer on stdout: UTF-8 (Chinese as is), indented."""
    import json

    print(json.dumps(document, ensure_ascii=False, indent=2), flush=True)


def load_settings(**overrides: Any) -> Settings:
    """The settings (environment, .env) with the options the operator gave on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def parse_time(text: str, tz: str) -> datetime:
    """ISO 8601; a time without an offset is read in the county's timezone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r}: expected ISO 8601, e.g. 2026-01-05T08:00:00+08:00")
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC)


F = TypeVar("F", bound=Callable[..., Any])


def checks_database_itself(command: F) -> F:
    """Mark a command that calls `check_database` itself, after checking its own options
    (`dispatcher.cli` checks the database before every other command)."""
    command.__yujing_guarded__ = True  # type: ignore[attr-defined]
    return command


class DatabaseNotReady(RuntimeError):
    """The database is missing, unreachable or not migrated: one line for the operator."""


def check_database(url: str) -> None:
    """Raise DatabaseNotReady unless the database at `url` exists and is at the newest revision.

    Checked before any command reads it: a SQLite file that does not exist is
    reported, never created (connecting would create an empty one).
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.storage.db import make_engine
    from dispatcher.storage.migrate import alembic_config
    from dispatcher.storage.models import Base

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    upgrade_hint = "run `yujing db upgrade` first"
    sqlite = parsed.get_backend_name() == "sqlite"
    on_file = sqlite and parsed.database not in {None, "", ":memory:"}
    if on_file and not Path(str(parsed.database)).is_file():
        raise DatabaseNotReady(f"no database at {parsed.database}; {upgrade_hint}")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            tables = set(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseNotReady(f"cannot open the database {shown}: {reason}") from None
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if revision is None:
        # every table but no revision: made from the models directly (the test suite does)
        if tables >= set(Base.metadata.tables):
            return
        raise DatabaseNotReady(f"the database {shown} has no tables yet; {upgrade_hint}")
    if revision != head:
        raise DatabaseNotReady(
            f"the database {shown} is at revision {revision}, this yujing needs {head}; "
            f"{upgrade_hint}"
        )
