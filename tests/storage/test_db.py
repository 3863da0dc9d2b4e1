"""The SQLite engine's settings: concurrent readers, enforced keys, durable commits."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from dispatcher.storage.db import make_engine


def test_sqlite_runs_in_wal_with_foreign_keys_and_commits_that_survive_a_power_cut(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'yujing.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    assert (tmp_path / "nested" / "yujing.db").exists()
    engine.dispose()
