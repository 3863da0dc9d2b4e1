"""`yujing backup` (acceptance 4 of issue 16): a backup the CLI reads back as it was.

The real runtime runs the bundled cold wave into SQLite (alerts, events,
deliveries, escalation, an acknowledgement); `yujing backup` copies it; with
YUJING_DATABASE_URL on the copy, `yujing db upgrade` succeeds, `yujing alerts
list --json` lists the same alerts and `yujing audit verify` passes. The copy
is consistent while a writer keeps committing; PostgreSQL gets pg_dump lines
without the password, and `--run` dumps a database pg_restore reads back.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from dispatcher import audit
from dispatcher.cli import app as cli
from dispatcher.commands.backup import pg_commands
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.db import make_engine, session_factory
from dispatcher.storage.migrate import upgrade
from dispatcher.storage.models import Alert, AuditEvent
from tests.conftest import _postgres_database
from tests.support import LIULIN, Clock, replay_settings

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
OFFICER = "p-duty-li"


def yujing(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"YUJING_DATABASE_URL": db_url})


async def cold_wave(db_url: str) -> None:
    """The bundled cold wave through the real runtime: poll, deliver, 20 minutes of escalation."""
    clock = Clock(AT)
    settings = replay_settings(
        LIULIN, db_url, secret_key=SecretStr("backup-test-secret-key-0123456789")
    )
    rt: Runtime = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    try:
        await rt.pipeline.poll()
        await drain(rt.worker)
        for minute in range(1, 21):
            clock.now = AT + timedelta(minutes=minute)
            rt.pipeline.escalate()
            await drain(rt.worker)
    finally:
        rt.close_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'yujing.db'}"


async def test_a_backup_reads_back_with_the_same_alerts_and_a_sound_audit_chain(
    sqlite_url: str, tmp_path: Path
) -> None:
    await cold_wave(sqlite_url)
    live = json.loads(yujing(sqlite_url, "alerts", "list", "--all", "--json").stdout)
    event = next(a for a in live if a["kind"] == "event" and a["state"] == "firing")
    acked = yujing(sqlite_url, "alerts", "ack", event["code"], "--by", OFFICER)
    assert acked.exit_code == 0, acked.output
    live = json.loads(yujing(sqlite_url, "alerts", "list", "--all", "--json").stdout)
    assert len(live) > 80 and any(a["state"] == "acknowledged" for a in live)

    copy = tmp_path / "kept" / "copy.db"
    made = yujing(sqlite_url, "backup", "--out", str(copy))
    assert made.exit_code == 0, made.output
    assert str(copy) in made.output and f"{len(live)} alerts" in made.output
    assert copy.is_file() and not copy.with_name("copy.db.partial").exists()

    restored = f"sqlite:///{copy}"
    upgraded = yujing(restored, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(yujing(restored, "alerts", "list", "--all", "--json").stdout) == live
    assert json.loads(yujing(restored, "alerts", "list", "--json").stdout) == json.loads(
        yujing(sqlite_url, "alerts", "list", "--json").stdout
    )
    verified = yujing(restored, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert "audit chain intact" in verified.output
    # the copy's chain ends where the original's did
    original_head = yujing(sqlite_url, "audit", "verify").output.splitlines()[-1]
    assert verified.output.splitlines()[-1] == original_head


def test_the_default_name_is_timestamped_next_to_the_database_and_never_overwrites(
    sqlite_url: str,
) -> None:
    upgrade(sqlite_url)
    folder = Path(make_url(sqlite_url).database or "").parent
    made = yujing(sqlite_url, "backup")
    assert made.exit_code == 0, made.output
    (copy,) = folder.glob("yujing-backup-*.db")
    stamp = copy.name.removeprefix("yujing-backup-").removesuffix(".db")
    taken = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - taken) < timedelta(minutes=5)

    again = yujing(sqlite_url, "backup", "--out", str(copy))
    assert again.exit_code == 1 and "already exists" in again.output
    assert copy.stat().st_size > 0


def test_a_missing_or_unmigrated_database_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    out = tmp_path / "out.db"
    result = yujing(f"sqlite:///{missing}", "backup", "--out", str(out))
    # the check every command that reads the database shares (dispatcher/cli.py)
    assert result.exit_code == 1 and "no database at" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not missing.exists() and not out.exists()

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = yujing(f"sqlite:///{empty}", "backup", "--out", str(out))
    assert result.exit_code == 1 and "yujing db upgrade" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_name("out.db.partial").exists()


def test_a_backup_taken_while_the_daemon_writes_is_one_consistent_state(
    sqlite_url: str, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = session_factory(engine)
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # the daemon's way of writing: audited transactions, back to back
        while not stop.is_set():
            with sessions.begin() as session:
                session.execute(select(func.count()).select_from(Alert))
                audit.record(
                    session,
                    at=datetime.now(UTC),
                    actor="system",
                    action="test.write",
                    data={"n": written[0], "pad": "x" * 2000},
                )
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 50:
            stop.wait(0.01)
        before = written[0]
        copies = [tmp_path / f"copy{i}.db" for i in range(3)]
        for copy in copies:
            result = yujing(sqlite_url, "backup", "--out", str(copy))
            assert result.exit_code == 0, result.output
        during = written[0]
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    assert during > before, "the writer kept writing while the copies were made"
    for copy in copies:
        verified = yujing(f"sqlite:///{copy}", "audit", "verify")
        assert verified.exit_code == 0, verified.output
        count = sqlite3.connect(copy).execute("SELECT count(*) FROM audit_events").fetchone()[0]
        assert before <= count <= written[0]


def test_the_pg_dump_lines_never_hold_the_password() -> None:
    url = "postgresql+psycopg://yj:S3cret-Pa55@db.example:6543/yujing?sslmode=require"
    dump, restore = pg_commands(url, Path("/backups/y.dump"))
    lines = " ".join(dump + restore)
    assert "S3cret-Pa55" not in lines
    assert "--dbname=postgresql://yj@db.example:6543/yujing?sslmode=require" in dump
    assert restore[-1] == "/backups/y.dump"


@pytest.mark.postgres
def test_postgresql_prints_pg_dump_and_pg_restore_without_the_password(
    tmp_path: Path,
) -> None:
    for url in _postgres_database():
        upgrade(url)
        password = make_url(url).password
        target = tmp_path / "yujing.dump"
        result = yujing(url, "backup", "--out", str(target))
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        dump = next(line.strip() for line in lines if line.strip().startswith("pg_dump "))
        restore = next(line.strip() for line in lines if line.strip().startswith("pg_restore "))
        assert f"--file={target}" in dump and "--format=custom" in dump
        assert str(target) in restore
        database = make_url(url).database or ""
        assert f"/{database}" in dump and f"/{database}" in restore
        assert "postgresql+psycopg" not in result.output
        if password:
            assert f":{password}@" not in result.output
        assert not target.exists(), "without --run nothing is dumped"


@pytest.mark.postgres
async def test_postgresql_backup_run_dumps_what_pg_restore_reads_back(tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        if os.environ.get("CI"):
            pytest.fail("pg_dump/pg_restore missing under CI (Debian package postgresql-client)")
        pytest.skip("pg_dump/pg_restore not on PATH")
    database = contextmanager(_postgres_database)
    with database() as source, database() as target:
        await cold_wave(source)
        dump = tmp_path / "yujing.dump"
        made = yujing(source, "backup", "--run", "--out", str(dump))
        assert made.exit_code == 0, made.output
        assert dump.stat().st_size > 0
        password = make_url(source).password
        if password:
            assert f":{password}@" not in made.output
        env = dict(os.environ, PGPASSWORD=password or "")
        plain = (
            make_url(target)
            .set(drivername="postgresql")
            ._replace(password=None)
            .render_as_string(hide_password=False)
        )
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={plain}", str(dump)],
            env=env,
            check=True,
            capture_output=True,
        )
        assert yujing(target, "db", "upgrade").exit_code == 0
        live = json.loads(yujing(source, "alerts", "list", "--all", "--json").stdout)
        assert len(live) > 80
        assert json.loads(yujing(target, "alerts", "list", "--all", "--json").stdout) == live
        verified = yujing(target, "audit", "verify")
        assert verified.exit_code == 0, verified.output
        engine = make_engine(target)
        try:
            with session_factory(engine)() as session:
                assert session.scalar(select(func.count()).select_from(AuditEvent))
        finally:
            engine.dispose()
