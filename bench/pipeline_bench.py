"""Whole-poll speed at province scale: the example county's cold front, replicated.

Builds a province by copying the example county (examples/liulin: 40 zones,
their people, its rules, its recorded cold front) `--zones / 40` times: ten
copies share each grid cell (so zones share forecast points as real ones do),
cells of copies lie 0.5° apart, and each copy's recording is the original's
moved with it — so every copy warns exactly as Liulin does (80 zone alerts per
40 zones: ~60,000 for 30,000 zones) and the figures scale with no surprise in
the weather. Then it runs the real runtime (configuration loaded, the
database migrated, the replay feed, rules, reconcile, lifecycle, events,
escalation, outbox rows, audit chain) on SQLite and, when
`YUJING_TEST_POSTGRES_URL` is set, on PostgreSQL, and prints per phase:

- config load (`open_runtime`: county files parsed and checked, directory synced
  into the database; the two printed apart, and a restart on the same database);
- the cold-front poll, split into fetch (replay), evaluate (rules), reconcile,
  and commit (alerts, events, notifications, timers, audit), and how much of
  it was spent waiting on the database (its statements, COPYs and commits);
- a steady poll (nothing changed), a first calm poll (calm clocks start) and
  the all-clear poll once every hold has passed (the calm recording);
- peak RSS of the process.

    .venv/bin/python bench/pipeline_bench.py [--zones 30000] [--database URL] [--config-only]
        [--yaml]

zones.yaml and people.yaml are written in JSON form (what a script exporting a
province writes), or with `--yaml` in block YAML as an administrator writes
them (the example county's layout); the loader reads both on its fast path.

Targets (issue 14): cold-front poll ≤ 10 s on SQLite, ≤ 15 s on PostgreSQL;
steady poll ≤ 3 s; config load of 30,000 zones ≤ 3 s; peak RSS ≤ 2 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dispatcher.alerts.hazards as hazards_module  # noqa: E402
import dispatcher.pipeline as pipeline_module  # noqa: E402
import dispatcher.runtime as runtime_module  # noqa: E402
from dispatcher.feeds.replay import ReplayFeed  # noqa: E402
from dispatcher.settings import Settings  # noqa: E402
from dispatcher.storage.copier import Copier  # noqa: E402
from rules.config import load_yaml  # noqa: E402

LIULIN = ROOT / "examples" / "liulin"
COLDWAVE = LIULIN / "scenarios" / "coldwave-2026-01.json"
CALM = LIULIN / "scenarios" / "calm-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
PER_CELL = 10  # copies sharing one grid cell
STEP_DEG = 0.5  # between cells of copies

_T = TypeVar("_T")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=30_000)
    parser.add_argument("--database", help="one database URL instead of SQLite (+ PostgreSQL)")
    parser.add_argument(
        "--config-only", action="store_true", help="time the configuration load alone, no polls"
    )
    parser.add_argument(
        "--yaml", action="store_true", help="write the zones and people in block YAML, not JSON"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the figures, not the daemon's log
    copies = max(1, args.zones // 40)
    with tempfile.TemporaryDirectory(prefix="yujing-pipeline-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        config, cold, calm = province(work, copies, block_yaml=args.yaml)
        print(
            f"province: {copies * 40:,} zones ({copies} copies of Liulin, "
            f"{'block YAML' if args.yaml else 'JSON form'}), "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        urls = [args.database] if args.database else [f"sqlite:///{work / 'bench.db'}"]
        if not args.database and (pg := os.environ.get("YUJING_TEST_POSTGRES_URL")):
            urls.append(pg)
        for url in urls:
            if url.startswith("postgres"):
                with bench_database(url) as fresh:
                    run(fresh, config, cold, calm, polls=not args.config_only)
            else:
                run(url, config, cold, calm, polls=not args.config_only)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def run(url: str, config: Path, cold: Path, calm: Path, *, polls: bool = True) -> None:
    backend = url.split(":", 1)[0].split("+", 1)[0]
    settings = Settings(
        _env_file=None,
        config_dir=config,
        database_url=url,
        feed="replay",
        replay_file=cold,
        replay_rebase=False,
        channel="console",
    )
    clock = _Clock()
    rt = None
    for start in ("first start", "restart"):  # a fresh database, then the same one
        if rt is not None:
            asyncio.run(rt.aclose())
        with timed_calls(LOAD_PHASES) as spent:
            loaded, cpu = time.perf_counter(), time.process_time()
            rt = runtime_module.open_runtime(
                settings, clock=clock, console=io.StringIO(), wake=lambda: None
            )
            load, cpu = time.perf_counter() - loaded, time.process_time() - cpu
        print(
            f"\n{backend}: config load ({start}) {load:.1f} s ({cpu:.1f} s CPU): files parsed "
            "and checked "
            f"{spent['files']:.1f} s, directory synced {spent['directory']:.1f} s "
            f"({len(rt.county.zones):,} zones, {len(rt.county.people):,} people)"
        )
    assert rt is not None
    if not polls:
        asyncio.run(rt.aclose())
        return
    try:
        rounds = (
            ("cold front", cold, AT),
            ("steady", cold, AT),
            ("calm", calm, AT.replace(day=8)),  # the calm clock starts …
            ("all clear", calm, AT.replace(day=8, hour=20)),  # … and every hold has passed
        )
        for name, recording, now in rounds:
            rt.pipeline.feed = ReplayFeed(recording)
            clock.now = now
            with timed_calls(POLL_PHASES + database_calls(rt.engine)) as spent:
                started, cpu = time.perf_counter(), time.process_time()
                result = asyncio.run(rt.pipeline.poll())
                total, cpu = time.perf_counter() - started, time.process_time() - cpu
            changed = {k: v for k, v in result.transitions.items() if k != "continued"}
            waited = spent.pop("database", 0.0)
            detail = ", ".join(f"{k} {v:.1f} s" for k, v in spent.items())
            print(
                f"  {name:10} poll {total:5.1f} s ({cpu:.1f} s CPU; {detail}; of all that "
                f"waiting on the database {waited:.1f} s); "
                f"transitions {changed or 'none'}, {result.notifications:,} notifications"
            )
    finally:
        asyncio.run(rt.aclose())


class _Clock:
    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        return self.now


# what the bench times, by wrapping what the runtime calls (timing only)
LOAD_PHASES = [
    (runtime_module, "load_county_config", "files"),
    (runtime_module, "sync_directory", "directory"),
]
POLL_PHASES = [
    (pipeline_module, "evaluate", "evaluate"),
    (pipeline_module, "reconcile", "reconcile"),
    (pipeline_module, "apply_transitions", "commit"),
    (hazards_module, "update_events", "events"),
]


def database_calls(engine: Any) -> list[tuple[Any, str, str]]:
    """What a poll waits on the database for: its statements and commits, and on
    PostgreSQL the COPYs the copier thread sends (`Copier.drain`: the time the
    poll waited for them, not the time they took beside it). Printed as
    "database", a part of the phases it falls in."""
    dialect = engine.dialect
    calls = [(dialect, name, "database") for name in ("do_execute", "do_executemany")]
    return [*calls, (dialect, "do_commit", "database"), (Copier, "drain", "database")]


@contextmanager
def timed_calls(wrapped: list[tuple[Any, str, str]]) -> Iterator[dict[str, float]]:
    """Within, each (module, function, phase) of `wrapped` adds the seconds it takes
    to its phase in the dict yielded; the functions are put back after."""
    spent: dict[str, float] = {}
    originals = [(module, attr, getattr(module, attr)) for module, attr, _ in wrapped]
    for module, attr, name in wrapped:
        setattr(module, attr, _timed(getattr(module, attr), name, spent))
    try:
        yield spent
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)


def _timed(function: Callable[..., _T], name: str, spent: dict[str, float]) -> Callable[..., _T]:
    def timed(*args: Any, **kwargs: Any) -> _T:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    return timed


def province(work: Path, copies: int, *, block_yaml: bool = False) -> tuple[Path, Path, Path]:
    """The county directory and the two recordings of `copies` copies of Liulin.

    zones.yaml and people.yaml are JSON, or block YAML with `block_yaml`.
    """
    config = work / "county"
    shutil.copytree(LIULIN, config, ignore=shutil.ignore_patterns("scenarios", "README.md"))
    zones = load_yaml(LIULIN / "zones.yaml").data["zones"]
    people = load_yaml(LIULIN / "people.yaml").data["people"]
    staff = [p for p in people if p.get("duty_role")]
    local = [p for p in people if not p.get("duty_role")]
    out_zones: list[dict[str, Any]] = []
    out_people: list[dict[str, Any]] = [dict(p) for p in staff]
    phone = 10_000_000
    for copy in range(copies):
        dlat, dlon = _offset(copy)
        ids = {p["id"]: f"{p['id']}-c{copy}" for p in local}
        for p in local:
            phone += 1
            out_people.append(
                {"id": ids[p["id"]], "name": p["name"], "phone": f"+86170{phone:08d}"}
            )
        for z in zones:
            zone = json.loads(json.dumps(z))  # plain data, deep
            zone["id"] = f"{z['id']}-c{copy}"
            zone["location"] = {
                "lat": round(z["location"]["lat"] + dlat, 5),
                "lon": round(z["location"]["lon"] + dlon, 5),
            }
            zone["people"] = {
                role: [ids.get(pid, pid) for pid in held] for role, held in z["people"].items()
            }
            out_zones.append(zone)
    write = _block_yaml if block_yaml else _json_form
    (config / "zones.yaml").write_text(write({"zones": out_zones}), encoding="utf-8")
    (config / "people.yaml").write_text(write({"people": out_people}), encoding="utf-8")
    return config, _recording(work, COLDWAVE, copies), _recording(work, CALM, copies)


def _json_form(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)  # JSON is YAML


def _block_yaml(data: dict[str, list[dict[str, Any]]]) -> str:
    """`{key: [entry, …]}` as the example county writes it: an entry per block, its
    small mappings and lists in flow style (`location: {lat: …, lon: …}`)."""
    ((key, entries),) = data.items()
    lines = [f"{key}:"]
    for entry in entries:
        first = True
        for name, value in entry.items():
            lead = "  - " if first else "    "
            first = False
            if isinstance(value, dict) and any(isinstance(v, list) for v in value.values()):
                lines.append(f"{lead}{name}:")  # people: one role a line
                lines.extend(f"      {role}: {_flow(held)}" for role, held in value.items())
            else:
                lines.append(f"{lead}{name}: {_flow(value)}")
    return "\n".join(lines) + "\n"


_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _flow(value: Any) -> str:
    """One value in flow style: text unquoted where YAML reads it back as that text."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = (
            value
            and value[0] not in "-?:,[]{}#&*!|>'\"%@`+.0123456789~=<"
            and not any(c in value for c in ":#,[]{}\"' \t")
            and value.lower() not in _YAML_WORDS
        )
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _offset(copy: int) -> tuple[float, float]:
    cell, within = divmod(copy, PER_CELL)
    row, col = divmod(cell, 40)
    return row * STEP_DEG + within * 0.001, col * STEP_DEG + within * 0.001


def _recording(work: Path, source: Path, copies: int) -> Path:
    locations = json.loads(source.read_text(encoding="utf-8"))
    moved = []
    for cell in range((copies + PER_CELL - 1) // PER_CELL):
        dlat, dlon = _offset(cell * PER_CELL)
        for loc in locations:
            moved.append(
                {**loc, "latitude": loc["latitude"] + dlat, "longitude": loc["longitude"] + dlon}
            )
    out = work / source.name
    out.write_text(json.dumps(moved), encoding="utf-8")
    return out


@contextmanager
def bench_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of `url` for one run, dropped after."""
    import uuid

    from sqlalchemy import create_engine, make_url, text

    name = f"yujing_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
