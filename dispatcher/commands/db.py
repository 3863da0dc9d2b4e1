"""`yujing db upgrade`: apply the database migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.commands.terminal import load_settings, operator_errors, out, print_json

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", metavar="REVISION", help="Alembic revision"),
) -> None:
    """Apply database migrations (idempotent)."""
    from dispatcher.storage.migrate import current, upgrade

    with operator_errors():
        settings = load_settings()
        upgrade(settings.database_url, revision)
        out.print(f"database at revision {current(settings.database_url)}")


@db_app.command("current")
def db_current(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (for scripts) instead of a line")
    ] = False,
) -> None:
    """Print the database's revision (the `yujing` command checks it is the newest first)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from dispatcher.storage.migrate import alembic_config, current

    with operator_errors():
        settings = load_settings()
        revision = current(settings.database_url)
        head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    if as_json:
        print_json({"database": url, "revision": revision, "head": head, "current": True})
        return
    out.print(f"database {url} at revision {revision} (the newest)", markup=False, highlight=False)
