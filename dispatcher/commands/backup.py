"""`yujing backup`: a consistent copy of the database, safe while the daemon runs.

SQLite: SQLite's online backup API (`sqlite3.Connection.backup`) copies the
whole database in one step inside one read transaction. The database is in
WAL mode, so that read sees one committed state (a snapshot) and the daemon's
writers carry on meanwhile; a copy made page by page in several steps would
restart whenever the daemon commits. The copy is written to `FILE.partial`,
checked (`PRAGMA integrity_check`), then renamed, so FILE is either complete
or absent. It is a plain SQLite database: point YUJING_DATABASE_URL at it (or
copy it over the original while the daemon is stopped) to restore.

PostgreSQL: the right tool is `pg_dump`. Without `--run` the command prints
the exact `pg_dump` and `pg_restore` lines for the configured database (never
the password: libpq reads it from PGPASSWORD or ~/.pgpass) and exits 0; with
`--run` it runs that `pg_dump` itself when it is on PATH, passing the password
in the environment, never on the command line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

#: The default file name: the time is UTC, so names sort in order across DST and zones.
DEFAULT_NAME = "yujing-backup-{stamp}.{ext}"


def backup(
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the backup [default: yujing-backup-<UTC time>.db next to "
            "the SQLite database; .dump in the current directory for PostgreSQL]",
        ),
    ] = None,
    run_pg_dump: Annotated[
        bool,
        typer.Option(
            "--run",
            help="PostgreSQL: run pg_dump (must be on PATH) instead of printing the commands",
        ),
    ] = False,
) -> None:
    """Back up the database: SQLite online backup, or pg_dump for PostgreSQL.

    Safe while `yujing run` is writing. To restore a SQLite backup, point
    YUJING_DATABASE_URL at the file (or copy it into place with the daemon
    stopped), then `yujing db upgrade` and `yujing audit verify`.
    """
    from sqlalchemy.engine import make_url

    from dispatcher.commands.terminal import load_settings, operator_errors, out

    with operator_errors():
        settings = load_settings()
        url = make_url(settings.database_url)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                raise ValueError("YUJING_DATABASE_URL names no SQLite file to back up")
            source = Path(url.database)
            target = out_file or source.with_name(DEFAULT_NAME.format(stamp=stamp, ext="db"))
            summary = backup_sqlite(source, target)
            out.print(f"backup written: {target} ({summary})", markup=False, highlight=False)
            return
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"cannot back up a {url.get_backend_name()} database")
        target = out_file or Path(DEFAULT_NAME.format(stamp=stamp, ext="dump"))
        dump, restore = pg_commands(settings.database_url, target)
        if not run_pg_dump:
            out.print(
                "PostgreSQL: back up with pg_dump (the password comes from PGPASSWORD or "
                "~/.pgpass, never the command line):",
                markup=False,
                highlight=False,
            )
            out.print(f"  {shlex.join(dump)}", markup=False, highlight=False, soft_wrap=True)
            out.print("restore into an empty database with:", markup=False, highlight=False)
            out.print(f"  {shlex.join(restore)}", markup=False, highlight=False, soft_wrap=True)
            out.print(
                "then `yujing db upgrade` and `yujing audit verify`; "
                "`yujing backup --run` runs the pg_dump line itself.",
                markup=False,
                highlight=False,
            )
            return
        if shutil.which("pg_dump") is None:
            raise ValueError(
                "pg_dump is not on PATH (Debian: apt install postgresql-client); "
                "run `yujing backup` without --run for the commands"
            )
        env = dict(os.environ)
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        done = subprocess.run(dump, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            target.unlink(missing_ok=True)
            detail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise ValueError(f"pg_dump failed (exit {done.returncode}): {detail[0]}")
        size = target.stat().st_size
        out.print(f"backup written: {target} ({size} bytes)", markup=False, highlight=False)


def backup_sqlite(source: Path, target: Path) -> str:
    """Copy `source` to `target` with the online backup API; a one-line summary.

    ValueError for a missing or un-migrated source, an existing target, or a
    copy that fails its integrity check (then nothing is left at `target`).
    """
    if not source.is_file():
        raise ValueError(
            f"no SQLite database at {source}: nothing to back up "
            "(check YUJING_DATABASE_URL; `yujing db upgrade` creates it)"
        )
    if target.exists():
        raise ValueError(f"{target} already exists; give another --out or move it away")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # read-only: a backup never writes to the live database (nor creates it)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        if not src.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone():
            raise ValueError(
                f"{source} is not a Yujing database (no migrations applied; "
                "run `yujing db upgrade` first)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=-1)  # one step: one snapshot, writers not blocked (WAL)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            alerts = dst.execute("SELECT count(*) FROM alerts").fetchone()[0]
            events = dst.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            head = dst.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise ValueError(f"backup of {source} failed: {exc}") from None
    finally:
        src.close()
    if check is None or check[0] != "ok":
        partial.unlink(missing_ok=True)
        raise ValueError(f"the copy of {source} failed its integrity check: {check}")
    partial.replace(target)
    size = target.stat().st_size
    latest = f", audit head {head[0][:12]}…" if head else ""
    return f"{size} bytes, {alerts} alerts, {events} audit events{latest}"


def pg_commands(database_url: str, target: Path) -> tuple[list[str], list[str]]:
    """The pg_dump and pg_restore command lines for `database_url`, without its password."""
    from sqlalchemy.engine import make_url

    # libpq wants postgresql://, not SQLAlchemy's postgresql+psycopg://
    url = make_url(database_url).set(drivername="postgresql")._replace(password=None)
    conninfo = url.render_as_string(hide_password=False)
    dump = ["pg_dump", "--format=custom", "--no-owner", f"--file={target}", f"--dbname={conninfo}"]
    restore = ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={conninfo}", str(target)]
    return dump, restore
