"""`yujing db upgrade`: apply the database migrations."""

from __future__ import annotations

import typer

from dispatcher.commands.terminal import load_settings, operator_errors, out

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
