"""The engine's settings: concurrent readers, enforced keys, durable commits (SQLite),
JSON stored as it reads (both)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from dispatcher.storage.db import json_text, make_engine, session_factory
from dispatcher.storage.held import insert_rows
from dispatcher.storage.models import ForecastRun


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


def test_json_columns_keep_chinese_as_written_and_read_back_the_same(engine: Engine) -> None:
    """A timer's plan holds a warning's texts: stored as UTF-8, not as \\u escapes
    (half the bytes to write and fsync), and read back as given — ORM and bulk insert."""
    at = datetime(2026, 1, 6, 16, tzinfo=UTC)
    run = {"source": "回放", "started_at": at, "finished_at": at, "ok": True}
    with session_factory(engine).begin() as session:
        session.add(ForecastRun(id=1, **run, variables=["气温", "🟠"]))
    with session_factory(engine).begin() as session:
        insert_rows(session, ForecastRun, [{"id": 2, **run, "variables": ["降水"]}])
    with engine.connect() as connection:
        stored: dict[int, str] = dict(
            connection.execute(text("SELECT id, CAST(variables AS TEXT) FROM forecast_runs")).all()
        )
    assert stored[1].replace(" ", "") == '["气温","🟠"]'
    assert stored[2] == '["降水"]'
    plan = {"body": "【柳林县自然资源局】寒潮橙色预警", "bodies": {"im": '🟠 "引号"\n换行'}}
    assert "\\u" not in json_text(plan) and json.loads(json_text(plan)) == plan
    with session_factory(engine)() as session:
        assert session.get_one(ForecastRun, 1).variables == ["气温", "🟠"]
        assert session.get_one(ForecastRun, 2).variables == ["降水"]
