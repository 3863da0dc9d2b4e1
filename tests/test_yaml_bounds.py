"""Every YAML file is bounded: an alias bomb or a 50 MB file is refused in seconds, not run.

The loader (`rules.config`) refuses a file over `MAX_YAML_BYTES` from its size,
more than `MAX_YAML_NODES` nodes, nesting over `MAX_YAML_DEPTH`, and aliases
repeating more than `MAX_ALIAS_NODES` values or `MAX_ALIAS_CHARS` characters,
each as one `file:line:column` problem. `yujing rules check` prints that one line (no
traceback); the running daemon's rule watch and county watch refuse the file
through their normal path (audited, the administrators alerted, the files in
force kept) and do not read the same files again. Real runtimes on SQLite and
PostgreSQL, as in tests/test_rulewatch.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import rules.config
from dispatcher.cli import app
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert
from rules.config import (
    MAX_ALIAS_CHARS,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    ConfigError,
    load_yaml,
    load_yaml_text,
)
from tests.processes import COUNTY
from tests.support import Clock
from tests.test_rulewatch import (
    ADMIN,
    AT,
    audit_events,
    healthz,
    messages_to,
    rules_alerts,
    settings,
)

# billion laughs: 396 bytes that would expand to 9**9 (387 million) strings; the first alias over
# the budget is *d on line 5, column 8
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB_AT = ":5:8: "
HUGE = 50 * 1024 * 1024

runner = CliRunner()


def write_huge(path: Path, size: int = HUGE) -> None:
    """A valid rule file made huge by one long comment, written 1 MB at a time."""
    chunk = "x" * (1 << 20)
    with path.open("w", encoding="utf-8") as stream:
        stream.write("rules: []\n# ")
        for _ in range(size // len(chunk)):
            stream.write(chunk)
        stream.write("\n")


def refused(load: object, *args: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(*args)  # type: ignore[operator]
    return caught.value


# --- the loader


def test_the_bomb_is_what_it_claims() -> None:
    lines = BOMB.splitlines()
    assert lines[1] == "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]"
    assert lines[8] == "i: &i [" + ", ".join(["*h"] * 9) + "]"
    assert len(BOMB.encode()) < 700


def test_an_alias_bomb_is_refused_at_its_first_alias_over_the_budget() -> None:
    tracemalloc.start()
    try:
        error = refused(load_yaml_text, BOMB, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    [problem] = error.problems
    assert str(problem).startswith("bomb.yaml" + BOMB_AT)
    assert "MAX_ALIAS_NODES" in problem.message and "*d" in problem.message
    assert peak < 5 * 1024 * 1024  # nothing was expanded


def test_a_long_text_repeated_by_aliases_is_refused() -> None:
    text = f"s: &s {'x' * 200_000}\nl: [{', '.join(['*s'] * 6)}]\n"

    [problem] = refused(load_yaml_text, text, "long.yaml").problems

    # 5 aliases repeat 1 000 000 characters; the sixth, at column 25, is one too many
    assert (problem.line, problem.column) == (2, 25)
    assert "MAX_ALIAS_CHARS" in problem.message
    assert 6 * 200_000 > MAX_ALIAS_CHARS >= 5 * 200_000


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    [problem] = refused(load_yaml_text, "zones: &z [1, *z]\n", "loop.yaml").problems

    assert (problem.line, problem.column) == (1, 15)
    assert "contains it" in problem.message


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep = MAX_YAML_DEPTH + 1
    [problem] = refused(load_yaml_text, "x: " + "[" * deep + "]" * deep, "deep.yaml").problems

    assert problem.line == 1
    assert "MAX_YAML_DEPTH" in problem.message


def test_a_file_of_more_nodes_than_the_limit_is_refused_at_the_first_one_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the limit is a province's (2 million values, a minute of parsing): the same
    # counting, tested at a limit the test can reach in a moment
    limit = 20_000
    assert limit < MAX_YAML_NODES
    monkeypatch.setattr(rules.config, "MAX_YAML_NODES", limit)
    text = "x: [" + "0," * limit + "0]\n"  # the mapping, its key, the list, values

    [problem] = refused(load_yaml_text, text, "many.yaml").problems

    # node limit + 1 is value number limit - 2, each two characters on
    assert (problem.line, problem.column) == (1, 5 + 2 * (limit - 3))
    assert "MAX_YAML_NODES" in problem.message and f"{limit:,}" in problem.message


def test_a_few_aliases_and_merged_keys_still_load_with_positions() -> None:
    doc = load_yaml_text(
        "base: &base {within: 12h, risk: high}\n"
        "zone:\n"
        "  <<: *base\n"
        "  id: LL-1\n"
        "both: [*base, *base]\n",
        "ok.yaml",
    )

    assert doc.data["zone"] == {"within": "12h", "risk": "high", "id": "LL-1"}
    assert doc.data["both"] == [{"within": "12h", "risk": "high"}] * 2
    assert doc.where(("zone", "id")) == (4, 7)
    assert doc.where(("zone", "risk")) == (3, 3)  # merged: at the mapping it is merged into


def test_a_control_character_is_refused_at_its_position_on_one_line() -> None:
    [problem] = refused(load_yaml_text, "x: 1\ny: ab\x00c\n", "nul.yaml").problems

    assert str(problem) == (
        "nul.yaml:2:6: YAML syntax: control character U+0000 is not allowed; remove it "
        "(or write it as an escape such as \\t inside double quotes)"
    )


def test_a_file_over_the_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    write_huge(path)
    tracemalloc.start()
    try:
        error = refused(load_yaml, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    [problem] = error.problems
    assert str(problem).startswith(f"{path}:1:1: file too large: {path.stat().st_size:,} bytes")
    assert "MAX_YAML_BYTES" in problem.message
    assert peak < MAX_YAML_BYTES  # not read whole


def test_a_file_growing_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    # a FIFO has no size to stat: the read itself stops one byte past the limit
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)

    def feed() -> None:  # more than the limit, until the reader stops reading
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as stream:
            stream.write(b"# " + b"x" * MAX_YAML_BYTES + b"\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    [problem] = refused(load_yaml, fifo).problems
    writer.join(timeout=10)

    assert not writer.is_alive()
    assert problem.message.startswith(f"file too large: {MAX_YAML_BYTES + 1:,} bytes")


# --- yujing rules check


@pytest.fixture
def county(tmp_path: Path) -> Path:
    """A copy of the example county whose files the tests may edit."""
    return Path(
        shutil.copytree(COUNTY, tmp_path / "county", ignore=shutil.ignore_patterns("scenarios"))
    )


@pytest.fixture
def no_yujing_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read


def check(county: Path) -> tuple[int, list[str], str, float]:
    started = time.monotonic()
    result = runner.invoke(app, ["rules", "check", "--config", str(county)])
    return result.exit_code, result.stderr.splitlines(), result.output, time.monotonic() - started


@pytest.mark.usefixtures("no_yujing_environment")
def test_rules_check_refuses_an_alias_bomb_in_one_line(county: Path) -> None:
    path = county / "rules" / "bomb.yaml"
    path.write_text(BOMB, encoding="utf-8")

    code, lines, output, took = check(county)

    assert code == 1
    assert lines == [lines[0], "1 problem(s) in the configuration; nothing was changed."]
    assert lines[0].startswith(f"{path}{BOMB_AT}aliases repeat more than the limit")
    assert "Traceback" not in output and "MemoryError" not in output
    assert took < 10


@pytest.mark.usefixtures("no_yujing_environment")
def test_rules_check_refuses_a_50_mb_rule_file_in_one_line(county: Path) -> None:
    path = county / "rules" / "huge.yaml"
    write_huge(path)

    code, lines, output, took = check(county)

    assert code == 1
    assert lines == [lines[0], "1 problem(s) in the configuration; nothing was changed."]
    assert lines[0].startswith(f"{path}:1:1: file too large: ")
    assert "Traceback" not in output
    assert took < 10


@pytest.mark.usefixtures("no_yujing_environment")
def test_rules_check_refuses_an_alias_bomb_in_zones_yaml(county: Path) -> None:
    (county / "zones.yaml").write_text(BOMB, encoding="utf-8")

    code, lines, output, took = check(county)

    assert code == 1
    assert any(line.startswith(f"{county / 'zones.yaml'}{BOMB_AT}") for line in lines)
    assert "Traceback" not in output
    assert took < 10


# --- the running daemon's watches


@pytest.fixture
async def rt(db_url: str, county: Path) -> AsyncIterator[Runtime]:
    runtime = open_runtime(
        settings(db_url, county), clock=Clock(AT), console=io.StringIO(), wake=lambda: None
    )
    yield runtime
    await runtime.aclose()


@pytest.mark.parametrize("kind", ["bomb", "huge"])
async def test_the_rule_watch_refuses_a_bomb_or_a_huge_file_and_keeps_the_rules(
    rt: Runtime, county: Path, kind: str
) -> None:
    ruleset = rt.rules()
    path = county / "rules" / f"{kind}.yaml"
    if kind == "bomb":
        path.write_text(BOMB, encoding="utf-8")
    else:
        write_huge(path)

    started = time.monotonic()
    reload = await rt.rulewatch.poll()
    took = time.monotonic() - started

    assert took < 10
    assert reload is not None and reload.outcome == "refused"
    [problem] = reload.problems
    assert problem.startswith(f"{path}{BOMB_AT if kind == 'bomb' else ':1:1: file too large'}")
    assert rt.rules() is ruleset
    [audited] = audit_events(rt, "rules.refused")
    assert audited["files"] == [f"{kind}.yaml"] and audited["problems"] == [problem]
    [(code, state)] = rules_alerts(rt)
    assert state == "firing"
    [(transition, body)] = messages_to(rt, ADMIN)
    assert transition == "new" and f"{kind}.yaml第" in body and f"编码{code}" in body
    body_of_healthz = healthz(rt)
    assert body_of_healthz["status"] == "degraded"
    assert body_of_healthz["rules"]["error"] == problem
    assert body_of_healthz["rules"]["content_hash"] == ruleset.content_hash

    assert await rt.rulewatch.poll() is None  # the same files: not read again
    assert len(audit_events(rt, "rules.refused")) == 1
    assert len(messages_to(rt, ADMIN)) == 1


async def test_the_county_watch_refuses_an_alias_bomb_in_zones_yaml(
    rt: Runtime, county: Path
) -> None:
    in_force = rt.county
    path = county / "zones.yaml"
    path.write_text(BOMB, encoding="utf-8")

    started = time.monotonic()
    reload = await rt.configwatch.poll()
    took = time.monotonic() - started

    assert took < 10
    assert reload is not None and reload.outcome == "refused"
    [problem] = reload.problems
    assert problem.startswith(f"{path}{BOMB_AT}aliases repeat more than the limit")
    assert rt.county is in_force
    [audited] = audit_events(rt, "config.refused")
    assert audited["files"] == ["zones.yaml"] and audited["problems"] == [problem]
    with rt.sessions() as session:
        states = list(session.scalars(select(Alert.state).where(Alert.hazard == "config_refused")))
    assert states == ["firing"]
    [(transition, body)] = messages_to(rt, ADMIN)
    assert transition == "new" and "zones.yaml第5行第8列" in body

    assert await rt.configwatch.poll() is None  # the same files: not read again
    assert len(audit_events(rt, "config.refused")) == 1
    assert len(messages_to(rt, ADMIN)) == 1
