"""A poll commits exactly the rows it committed before the commit path became set-based.

The golden file (tests/data/commit_golden.json) was written by the per-alert
code (one alert, its escalation, its messages and audit events at a time,
flushed one by one) for a small province — two copies of the example county,
each with its cold front moved with it — polled by the real runtime with a
fixed clock: the cold front, a steady poll, the escalation timers due two hours
later, a first calm poll and the all-clear. Every row of `alerts`,
`notifications`, `escalation_timers` and `audit_events`, ordered by id, must
come out the same, on both databases, and the audit chain must verify.

What is normalised, and why:

- Alert codes are random (`secrets.choice`); the test seeds that one source of
  randomness, so codes — and with them the texts and every audit hash — are
  exact. The bulk path must draw codes in the same order (zone alerts in
  transition order, then events), which it does.
- Ids are kept exact: each table has its own sequence, and the bulk path
  inserts each table's rows in the order the per-alert code created them, so
  ids, the foreign keys between rows and the ids quoted in audit data match.
  Only how inserts of different tables interleave may differ, and that is not
  observable in the rows.
- Times are written as ISO 8601 in UTC (SQLite gives naive UTC back), JSON
  columns with sorted keys: the databases store the same instants and values
  in different shapes.
- The checkout's own path (the built-in rule files' paths in `rules.loaded`)
  is written as `<root>` in the golden file; the test puts this checkout's path
  back and recomputes the golden chain's hashes with `audit.chain_hash`, so
  the comparison stays exact, hashes included, wherever the project lies.

After a change that is meant to change what a poll writes, rewrite it with

    YUJING_WRITE_COMMIT_GOLDEN=1 .venv/bin/pytest tests/test_commit_equivalence.py

and explain the difference in the commit message.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts import lifecycle
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, EscalationTimer, Notification
from rules.config import load_yaml
from tests.support import LIULIN, replay_settings

GOLDEN = Path(__file__).resolve().parent / "data" / "commit_golden.json"
COLDWAVE = LIULIN / "scenarios" / "coldwave-2026-01.json"
CALM = LIULIN / "scenarios" / "calm-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
COPIES = 2
TABLES: tuple[type[Any], ...] = (Alert, Notification, EscalationTimer, AuditEvent)


def province(work: Path, copies: int) -> tuple[Path, Path, Path]:
    """A county directory of `copies` copies of Liulin, each 0.5° from the last, and
    the cold-front and calm recordings moved with each copy."""
    config = work / "county"
    shutil.copytree(LIULIN, config, ignore=shutil.ignore_patterns("scenarios", "README.md"))
    zones = load_yaml(LIULIN / "zones.yaml").data["zones"]
    people = load_yaml(LIULIN / "people.yaml").data["people"]
    local = [p for p in people if not p.get("duty_role")]
    out_people: list[dict[str, Any]] = [dict(p) for p in people if p.get("duty_role")]
    out_zones: list[dict[str, Any]] = []
    for copy in range(copies):
        ids = {p["id"]: f"{p['id']}-c{copy}" for p in local}
        out_people += [
            {"id": ids[p["id"]], "name": p["name"], "phone": f"+861700000{copy}{n:03d}"}
            for n, p in enumerate(local)
        ]
        for z in zones:
            zone = json.loads(json.dumps(z))  # plain data, deep
            zone["id"] = f"{z['id']}-c{copy}"
            zone["location"] = {
                "lat": round(z["location"]["lat"] + copy * 0.5, 5),
                "lon": z["location"]["lon"],
            }
            zone["people"] = {
                role: [ids.get(pid, pid) for pid in held] for role, held in z["people"].items()
            }
            out_zones.append(zone)
    for name, data in (
        ("zones.yaml", {"zones": out_zones}),
        ("people.yaml", {"people": out_people}),
    ):
        (config / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    def moved(source: Path) -> Path:
        locations = json.loads(source.read_text(encoding="utf-8"))
        out = work / source.name
        out.write_text(
            json.dumps(
                [
                    {**loc, "latitude": loc["latitude"] + copy * 0.5}
                    for copy in range(copies)
                    for loc in locations
                ]
            ),
            encoding="utf-8",
        )
        return out

    return config, moved(COLDWAVE), moved(CALM)


class _Clock:
    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        return self.now


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def dump(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every row of the commit's tables, by id, every column, normalised (see the docstring)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for model in TABLES:
        columns = [c.key for c in inspect(model).column_attrs]
        rows = session.scalars(select(model).order_by(model.id)).all()
        out[model.__tablename__] = [
            json.loads(json.dumps({c: _value(getattr(row, c)) for c in columns}, sort_keys=True))
            for row in rows
        ]
    return out


def golden_text(tables: dict[str, list[dict[str, Any]]]) -> str:
    """The golden file: one row a line, so a difference reads as a diff of rows."""
    lines = ["{"]
    for n, (table, rows) in enumerate(sorted(tables.items())):
        lines.append(f"{json.dumps(table)}: [")
        lines += [
            json.dumps(row, ensure_ascii=False, sort_keys=True) + ("," if i < len(rows) - 1 else "")
            for i, row in enumerate(rows)
        ]
        lines.append("]" + ("," if n < len(tables) - 1 else ""))
    return "\n".join([*lines, "}"]) + "\n"


ROOT = Path(__file__).resolve().parents[1]
ROOT_MARK = "<root>"


def _replace_root(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_root(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_root(v, old, new) for k, v in value.items()}
    return value


def portable(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The rows as the golden file keeps them: this checkout's path written `<root>`."""
    return {t: _replace_root(rows, str(ROOT), ROOT_MARK) for t, rows in tables.items()}


def localised(golden: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The golden rows in this checkout: its path put back, the audit chain re-hashed."""
    tables = {t: _replace_root(rows, ROOT_MARK, str(ROOT)) for t, rows in golden.items()}
    prev: str | None = None
    for row in tables.get("audit_events", []):
        if prev is not None:
            row["prev_hash"] = prev
        row["hash"] = audit.chain_hash(
            row["prev_hash"],
            at=datetime.fromisoformat(row["at"]),
            actor=row["actor"],
            action=row["action"],
            subject=row["subject"],
            data=row["data"],
        )
        prev = row["hash"]
    return tables


def poll(rt: Runtime, clock: _Clock, recording: Path, now: datetime) -> None:
    rt.pipeline.feed = ReplayFeed(recording)
    clock.now = now
    assert asyncio.run(rt.pipeline.poll()).ok


@pytest.fixture
def seeded_codes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Alert codes drawn from a seeded generator instead of the system's randomness."""
    monkeypatch.setattr(secrets, "choice", random.Random(14).choice)
    yield


@pytest.mark.parametrize("write_every", [None, 7], ids=["one-write", "written-in-parts"])
def test_a_province_poll_commits_the_golden_rows(
    db_url: str,
    tmp_path: Path,
    seeded_codes: None,
    write_every: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if write_every is not None:
        # a province's commit writes what it holds every few thousand alerts:
        # here every 7, so the 160 alerts of this province are written in parts
        monkeypatch.setattr(lifecycle, "_WRITE_EVERY", write_every)
    # given a province of two copies of Liulin on a fresh database, and a fixed clock
    config, cold, calm = province(tmp_path, COPIES)
    settings = replay_settings(
        config, db_url, replay_file=cold, secret_key=SecretStr("commit-equivalence")
    )
    clock = _Clock()
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    try:
        # when the cold front comes, stays, escalates, calms and clears
        poll(rt, clock, cold, AT)
        poll(rt, clock, cold, AT + timedelta(minutes=10))
        clock.now = AT + timedelta(hours=2)
        rt.pipeline.escalate()
        poll(rt, clock, cold, AT + timedelta(hours=6))
        poll(rt, clock, calm, AT.replace(day=8))
        poll(rt, clock, calm, AT.replace(day=8, hour=20))
        with rt.sessions() as session:
            actual = dump(session)
            problems = audit.verify(session)
    finally:
        asyncio.run(rt.aclose())

    # then the chain verifies and every row is the golden one
    assert problems == []
    if (
        os.environ.get("YUJING_WRITE_COMMIT_GOLDEN")
        and db_url.startswith("sqlite")
        and write_every is None
    ):
        GOLDEN.write_text(golden_text(portable(actual)), encoding="utf-8")
    expected = localised(json.loads(GOLDEN.read_text(encoding="utf-8")))
    assert {t: len(rows) for t, rows in actual.items()} == {
        t: len(rows) for t, rows in expected.items()
    }
    for table, rows in expected.items():
        for want, got in zip(rows, actual[table], strict=True):
            assert got == want, f"{table} row {want.get('id')}"
