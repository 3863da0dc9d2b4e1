"""The command line and the daemon as an IT officer meets them (issue 16).

A taken port is one line; a failing feed or database is one line when it starts
and one when it ends; `--version`; `--json` on every read command; a database
that is missing or not migrated is one line for every command that reads it,
and no empty SQLite file is left behind.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from dispatcher import logs
from dispatcher.cli import WITHOUT_DATABASE, app, cli, commands
from dispatcher.daemon import _logged
from dispatcher.storage.models import Alert, ForecastRun
from tests.processes import COUNTY, daemon_env, free_port, wait_for
from tests.support import Clock
from tests.test_pipeline import AT, COLDWAVE, OPEN_METEO, recorded_answers, runtime_for

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_yujing_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read


# --- the daemon: a taken port, and its logs --------------------------------------


def test_a_taken_port_is_one_line_exit_1_and_nothing_polls(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = daemon_env(tmp_path, YUJING_FEED="replay", YUJING_REPLAY_FILE=str(COLDWAVE))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dispatcher",
                "run",
                "--config",
                str(COUNTY),
                "--port",
                f"{port}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: port {port} on 127.0.0.1 is already in use (another yujing, or another "
        "program); stop it, or choose another port with --port or YUJING_HTTP_PORT"
    ]
    assert done.stdout == ""
    # checked before anything started: no migration, no poll, no forecast run
    db = tmp_path / "yujing.db"
    if db.exists():
        with create_engine(f"sqlite:///{db}").connect() as connection:
            assert connection.execute(select(func.count()).select_from(ForecastRun)).scalar() == 0


def test_the_daemon_logs_json_only_with_named_jobs_and_no_scheduler_chatter(
    tmp_path: Path,
) -> None:
    env = daemon_env(
        tmp_path,
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_POLL_INTERVAL_SECONDS="3600",
    )
    port = free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "run", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "yujing.console" in err.read_text(encoding="utf-8"), 90, "a message")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    text = err.read_text(encoding="utf-8")
    entries = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert out.read_text(encoding="utf-8") == ""  # the console channel wrote into the log
    messages = [e["message"] for e in entries]
    assert not [m for m in messages if "Adding job tentatively" in m or "<locals>" in m]
    assert not [e for e in entries if e["logger"].startswith("apscheduler")]
    console = [e for e in entries if e["logger"] == "yujing.console"]
    assert console and all("─" not in e["message"] for e in console)
    assert any("【柳林县自然资源局】" in e["message"] for e in console)
    fallbacks = [m for m in messages if "channel twilio_voice not configured here" in m]
    assert len(fallbacks) == 1  # not one per alert
    assert not [e for e in entries if "color_message" in e]


# --- once on failure, once on recovery ------------------------------------------


@respx.mock
async def test_a_failing_feed_is_logged_once_and_its_recovery_once(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    recording = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    answers = [httpx.Response(503)] * 3
    answer = recorded_answers(recording)

    def respond(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else answer(request)

    respx.get(OPEN_METEO).mock(side_effect=respond)
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, feed="openmeteo", feed_retries=0, openmeteo_batch_size=40)
    caplog.set_level(logging.INFO, logger="yujing.pipeline")
    try:
        results = []
        for _ in range(5):
            results.append((await rt.pipeline.poll()).ok)
            clock.now += timedelta(minutes=1)
    finally:
        await rt.aclose()
    assert results == [False, False, False, True, True]
    feed = [
        r
        for r in caplog.records
        if r.name == "yujing.pipeline" and "forecast feed" in r.getMessage()
    ]
    warnings = [r for r in feed if r.levelno == logging.WARNING]
    recovered = [r for r in feed if "recovered" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in feed]
    assert warnings[0].getMessage().startswith("forecast feed open-meteo failed: HTTP 503")
    assert len(recovered) == 1
    assert "after 3 failed attempt(s)" in recovered[0].getMessage()


def _refused_database() -> Any:
    """An engine on a PostgreSQL port nobody listens on: a real `connection refused`."""
    return create_engine(f"postgresql+psycopg://yujing@127.0.0.1:{free_port()}/yujing")


async def test_a_database_outage_is_one_warning_and_one_recovery_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = _refused_database()
    down = [True] * 4

    async def job() -> None:
        if down.pop(0) if down else False:
            with engine.connect():
                pass

    run = _logged(job, "poll")
    caplog.set_level(logging.DEBUG, logger="yujing.daemon")
    for _ in range(6):
        await run()
    mine = [r for r in caplog.records if r.name == "yujing.daemon"]
    loud = [r for r in mine if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and loud[0].exc_info is None
    assert "job poll failed" in loud[0].getMessage()
    assert "OperationalError" in loud[0].getMessage()
    recovered = [r.getMessage() for r in mine if "recovered" in r.getMessage()]
    assert len(recovered) == 1
    assert recovered[0].startswith("job poll recovered after 4 failed attempt(s) since ")
    assert run.__qualname__ == "poll"  # the scheduler names jobs by it


def test_other_parts_tracebacks_of_a_database_outage_become_one_plain_line() -> None:
    """The outbox worker and the leadership loop log with exc_info; the handler's filter
    makes the first one plain and keeps the repeats quiet."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.OperationalFaults(quiet_seconds=300))
    logger = logging.getLogger("yujing.test.outage")
    logger.addHandler(handler)
    logger.propagate = False
    engine = _refused_database()
    try:
        for _ in range(5):
            try:
                engine.connect()
            except Exception:
                logger.exception("could not claim outbox rows; trying again in %g s", 1.0)
        try:
            raise KeyError("a bug")
        except KeyError:
            logger.exception("a bug keeps its traceback")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("could not claim outbox rows; trying again in 1 s: OperationalError")
    assert "Traceback" in stream.getvalue()  # the bug's
    assert sum("could not claim" in line for line in lines) == 1
    assert "Traceback" not in stream.getvalue().split("a bug keeps its traceback")[0]


# --- the command line ------------------------------------------------------------


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"yujing {version('yujing')}\n"


def test_help_placeholders_are_words_not_python_types(capsys: pytest.CaptureFixture[str]) -> None:
    command = cli()
    for name, _ in commands():
        with pytest.raises(SystemExit) as exited:
            command.main(args=[*name.split(), "--help"], prog_name="yujing")
        assert exited.value.code == 0
        text = capsys.readouterr().out
        # `<path>`, `<list[Path]>`, `<bool>`: Python's words, not the operator's
        assert not re.search(r"<[a-z][\w\[\], ]*>", text, re.IGNORECASE), f"{name}:\n{text}"
    command.main(args=["drill", "--help"], prog_name="yujing", standalone_mode=False)
    drill = capsys.readouterr().out
    assert "--config        DIR" in drill and "--replay        FILE" in drill


@pytest.fixture
def cold_wave_database(db_url: str) -> Iterator[str]:
    """A migrated database after the cold-wave poll (alerts, audit events)."""
    import asyncio

    rt = runtime_for(db_url, Clock(AT))
    try:
        asyncio.run(rt.pipeline.poll())
        with rt.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Alert))
    finally:
        asyncio.run(rt.aclose())
    yield db_url


#: every read command, with what it needs to answer
READ_COMMANDS: dict[str, list[str]] = {
    "alerts list": ["--all"],
    "audit verify": [],
    "db current": [],
    "roster show": ["--config", str(COUNTY), "--days", "2"],
    "rules check": ["--config", str(COUNTY)],
    "drill": [
        "--config",
        str(COUNTY),
        "--replay",
        str(COLDWAVE),
        "--at",
        "2026-01-07T00:00:00+08:00",
    ],
}


def _clicks() -> dict[str, Any]:
    """Every command as the console script builds it, by full name."""
    found: dict[str, Any] = {}

    def walk(command: Any, prefix: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if hasattr(sub, "commands"):
                walk(sub, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = sub

    walk(cli(), "")
    return found


def test_every_command_with_json_is_listed_here() -> None:
    with_json = {
        name
        for name, command in _clicks().items()
        if any("--json" in p.opts for p in command.params)
    }
    assert with_json - {"users list"} == set(READ_COMMANDS)


@pytest.mark.parametrize("name", sorted(READ_COMMANDS))
def test_json_on_each_read_command(
    name: str, cold_wave_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUJING_DATABASE_URL", cold_wave_database)
    result = runner.invoke(app, [*name.split(), *READ_COMMANDS[name], "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document  # something, not an empty answer
    if name == "alerts list":
        assert {a["hazard"] for a in document} >= {"cold_wave", "road_icing"}
    if name == "audit verify":
        assert document["ok"] is True and document["events"] > 0


def _arguments(name: str, tmp_path: Path) -> list[str]:
    """Values for a command's required parameters, so it gets as far as the database."""
    args: list[str] = []
    for param in _clicks()[name].params:
        if not param.required:
            continue
        value = "x"
        if param.type_descriptor.is_path:
            value = str(tmp_path / "input.txt")
        elif param.metavar == "TIME":  # `report --from --to`: checked before the database
            value = "2026-01-07" if "--from" in param.opts else "2026-01-08"
        options = [o for o in param.opts if o.startswith("--")]
        args += [options[0], value] if param.param_type_name == "option" else [value]
    return args


def _database_commands() -> list[str]:
    return sorted(name for name, _ in commands() if name not in WITHOUT_DATABASE)


def test_the_commands_without_a_database_are_few_and_named() -> None:
    names = {name for name, _ in commands()}
    assert names >= WITHOUT_DATABASE
    assert {"alerts list", "alerts ack", "audit verify", "report", "users list"} <= set(
        _database_commands()
    )


@pytest.mark.parametrize("name", _database_commands())
def test_a_missing_database_is_one_line_for_every_command_and_no_file_is_made(
    name: str, tmp_path: Path
) -> None:
    db = tmp_path / "data" / "yujing.db"
    env = {"YUJING_DATABASE_URL": f"sqlite:///{db}", "YUJING_CONFIG_DIR": str(COUNTY)}
    result = runner.invoke(app, [*name.split(), *_arguments(name, tmp_path)], env=env, input="")
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: no database at {db}; run `yujing db upgrade` first\n"
    assert "Traceback" not in result.output
    assert not db.exists() and not db.parent.exists()


@pytest.mark.parametrize("name", _database_commands())
def test_an_unmigrated_database_is_one_line_for_every_command(
    name: str, db_url: str, tmp_path: Path
) -> None:
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()  # there, but empty: never migrated
    env = {"YUJING_DATABASE_URL": db_url, "YUJING_CONFIG_DIR": str(COUNTY)}
    result = runner.invoke(app, [*name.split(), *_arguments(name, tmp_path)], env=env, input="")
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the database ") and line.endswith(
        "has no tables yet; run `yujing db upgrade` first"
    )
    assert "Traceback" not in result.output
    assert "secret" not in line  # the password of a PostgreSQL URL is never shown


def test_an_unreachable_database_is_one_line() -> None:
    url = f"postgresql+psycopg://yujing:not-shown@127.0.0.1:{free_port()}/yujing"
    result = runner.invoke(app, ["alerts", "list"], env={"YUJING_DATABASE_URL": url})
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot open the database postgresql+psycopg://yujing:***@")
    assert "not-shown" not in result.output


def test_acknowledging_again_says_who_already_did(
    cold_wave_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUJING_DATABASE_URL", cold_wave_database)
    monkeypatch.setenv("YUJING_CONFIG_DIR", str(COUNTY))
    listed = json.loads(runner.invoke(app, ["alerts", "list", "--json"]).stdout)
    code = next(a["code"] for a in listed if a["kind"] == "event")
    first = runner.invoke(app, ["alerts", "ack", code, "--by", "p-duty-li"])
    again = runner.invoke(app, ["alerts", "ack", code, "--by", "李慧敏"])
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert "已确认（李慧敏，p-duty-li）" in first.stdout
    assert "李慧敏（p-duty-li）已于" in again.stdout and "本次未重复记录" in again.stdout
    assert first.stdout != again.stdout
