"""`yujing audit verify`: an intact chain passes; any row changed in the database is named."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from dispatcher.audit import record
from dispatcher.cli import app

T0 = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture(autouse=True)
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)


def append(sessions: sessionmaker[Session], count: int) -> None:
    for i in range(count):
        with sessions.begin() as session:
            record(
                session,
                at=T0 + timedelta(minutes=i),
                actor="system",
                action="alert.new",
                subject=f"alert:{i + 1}",
                data={"code": f"K{i}QA", "level": "yellow"},
            )


def test_an_intact_chain_passes_and_says_how_long_it_is(sessions: sessionmaker[Session]) -> None:
    append(sessions, 3)

    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "audit chain intact: 3 events"
    assert result.stdout.splitlines()[1].startswith("latest: event 3, hash ")


def test_an_empty_log_is_intact(sessions: sessionmaker[Session]) -> None:
    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "audit chain intact: 0 events"


def test_a_row_edited_in_the_database_is_detected_and_named(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    append(sessions, 3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'p-somebody-else' WHERE id = 2"))

    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "event 2: hash does not match its content (edited?)",
        "audit chain BROKEN: 1 problem(s) in 3 events",
    ]


def test_an_edited_time_is_detected(sessions: sessionmaker[Session], engine: Engine) -> None:
    append(sessions, 3)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET at = :at WHERE id = 1"),
            {"at": (T0 + timedelta(hours=1)).replace(tzinfo=None)},
        )

    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 1
    assert "event 1: hash does not match its content (edited?)" in result.stderr


def test_a_deleted_row_is_detected_at_the_row_after_it(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    append(sessions, 3)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = 2"))

    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "event 3: prev_hash does not match event 1 (deleted or inserted row?)"
    )


def test_an_inserted_row_is_detected(sessions: sessionmaker[Session], engine: Engine) -> None:
    append(sessions, 2)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (id, at, actor, action, subject, data, prev_hash, hash) "
                "VALUES (10, :at, 'p-forger', 'alert.ack', 'alert:1', '{}', :prev, :hash)"
            ),
            {"at": T0.replace(tzinfo=None), "prev": "0" * 64, "hash": "f" * 64},
        )

    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 1
    assert "event 10: prev_hash does not match event 2 (deleted or inserted row?)" in (
        result.stderr
    )
    assert "event 10: hash does not match its content (edited?)" in result.stderr


def test_a_database_without_tables_gets_a_plain_message(db_url: str) -> None:
    result = runner.invoke(app, ["audit", "verify"])

    assert result.exit_code == 1
    assert "run `yujing db upgrade` first" in result.stderr
    assert "Traceback" not in result.output
