"""SQLite's WAL copied into the database file by a thread of its own, not by the
commit that fills it; its failure logged once, and once its recovery."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatcher.storage.db import Checkpointer, checkpoint_in_background, make_engine

ROWS = 5000  # ~5 MB: past the 1,000 pages at which a commit would checkpoint itself


def _in_database_file(path: Path) -> int | None:
    """Rows of `t` in the database file itself, the WAL left unread (None: no table)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as file_only:
        try:
            return int(file_only.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:
            return None


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yujing-checkpoint"]


def test_a_commit_leaves_the_wal_to_the_thread_which_copies_it_into_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "yujing.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpoint_in_background(engine, every=3600)  # only when stopped
    assert checkpointer is not None
    assert len(_checkpointers()) == 1
    with engine.begin() as connection:
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(
            text("INSERT INTO t (body) VALUES (:body)"), [{"body": "预警" * 300}] * ROWS
        )
    # committed, in the WAL only: the commit did not copy it (SQLite's own would have)
    assert _in_database_file(path) is None
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == ROWS
    checkpointer.stop()  # checkpoints once more, then ends
    assert _in_database_file(path) == ROWS
    assert not _checkpointers()
    engine.dispose()


def test_the_thread_checkpoints_every_few_moments(tmp_path: Path) -> None:
    path = tmp_path / "yujing.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpoint_in_background(engine, every=0.05)
    assert checkpointer is not None
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO t (body) VALUES ('冻雨')"))
    deadline = time.monotonic() + 10
    while _in_database_file(path) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _in_database_file(path) == 1  # copied while the engine and its pool stay open
    checkpointer.stop()
    engine.dispose()


def test_no_thread_for_a_database_in_memory(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    assert checkpoint_in_background(engine) is None
    assert not _checkpointers()
    engine.dispose()


def test_a_failing_checkpoint_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    later = tmp_path / "not-yet"
    caplog.set_level(logging.INFO, logger="yujing")
    checkpointer = Checkpointer(str(later / "yujing.db"), every=0.01)
    time.sleep(0.2)  # some twenty attempts: the folder does not exist
    assert checkpointer.checkpoints == 0
    later.mkdir()
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.stop()
    messages = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(messages) == 2, messages
    assert "failed" in messages[0] and "retrying every 0.01 s" in messages[0]
    assert "work again" in messages[1]
