"""The `yujing` command line: checks, drills, migrations — plain messages, exit codes."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.storage.migrate import current

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
SCENARIOS = COUNTY / "scenarios"

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_yujing_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read


def test_rules_check_accepts_the_example_county() -> None:
    result = runner.invoke(app, ["rules", "check", "--config", str(COUNTY)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 40 zones")


def test_rules_check_lists_every_problem_with_file_line_and_column(tmp_path: Path) -> None:
    county = tmp_path / "county"
    shutil.copytree(COUNTY, county, ignore=shutil.ignore_patterns("scenarios"))
    rules = county / "rules" / "fog.yaml"
    rules.write_text(  # the county's files include the library: the typo is in an override
        rules.read_text(encoding="utf-8")
        + "override:\n  - id: cma-fog\n"
        + "    levels: {yellow: {within: 12h, when: visibilty < 500}}\n",
        encoding="utf-8",
    )
    zones = county / "zones.yaml"
    zones.write_text(
        zones.read_text(encoding="utf-8").replace("kind: landslide", "kind: landslip", 1),
        encoding="utf-8",
    )

    result = runner.invoke(app, ["rules", "check", "--config", str(county)])

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"{rules}:") and "visibilty" in line and "did you mean" in line
        for line in lines
    ), result.stderr
    assert any(line.startswith(f"{zones}:") and "landslip" in line for line in lines)
    assert "Traceback" not in result.output
    assert lines[-1] == "2 problem(s) in the configuration; nothing was changed."


def test_the_cold_wave_drill_warns_the_expected_zones_at_the_expected_levels() -> None:
    result = runner.invoke(
        app,
        [
            "drill",
            "--config", str(COUNTY),
            "--replay", str(SCENARIOS / "coldwave-2026-01.json"),
            "--at", "2026-01-07T00:00:00+08:00",
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    alerts = report["alerts"]
    assert Counter((a["hazard"], a["level"]) for a in alerts) == {
        ("cold_wave", "orange"): 10,
        ("cold_wave", "yellow"): 30,
        ("road_icing", "yellow"): 40,
    }
    orange = {a["zone_id"] for a in alerts if a["level"] == "orange"}
    assert orange == {
        "LL-MC-005", "LL-XC-001", "LL-XC-002", "LL-XC-003", "LL-XC-004",
        "LL-LY-003", "LL-LY-004", "LL-JJY-001", "LL-JJY-002", "LL-JJY-003",
    }  # fmt: skip
    assert set(alerts[0]) == {
        "code", "event", "zone_id", "rule_id", "hazard", "level", "onset", "until"
    }  # fmt: skip
    # the bureau's view: one event per hazard, each zone alert pointing to its own
    events = {e["hazard"]: e for e in report["events"]}
    assert {(h, e["level"], e["zones"]) for h, e in events.items()} == {
        ("cold_wave", "orange", 40),
        ("road_icing", "yellow", 40),
    }
    assert all(a["event"] == events[a["hazard"]]["code"] for a in alerts)
    assert alerts[0]["onset"].endswith("+08:00")
    notes = report["notifications"]
    # every channel is stood in for by the console: rows keep the channel they are meant for
    assert notes and all(n["status"] == "sent" for n in notes)
    assert {n["channel"] for n in notes} == {
        "twilio_sms", "twilio_voice", "broadcast", "wecom", "dingtalk"
    }  # fmt: skip
    assert all(
        n["body"].startswith("【柳林县自然资源局】") for n in notes if n["channel"] == "twilio_sms"
    )
    assert {n["alert"] for n in notes} == {a["code"] for a in alerts} | {
        e["code"] for e in events.values()
    }


def test_the_calm_drill_warns_nobody() -> None:
    result = runner.invoke(
        app,
        [
            "drill",
            "--config", str(COUNTY),
            "--replay", str(SCENARIOS / "calm-2026-01.json"),
            "--at", "2026-01-07T00:00:00+08:00",
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"events": [], "alerts": [], "notifications": []}


def test_the_drill_table_summarises_alerts_and_messages() -> None:
    result = runner.invoke(
        app,
        [
            "drill",
            "--config", str(COUNTY),
            "--replay", str(SCENARIOS / "coldwave-2026-01.json"),
            "--at", "2026-01-07T00:00:00+08:00",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "summary: cold_wave orange ×10, cold_wave yellow ×30, road_icing yellow ×40" in (
        result.stdout
    )
    assert "e.g. 【柳林县自然资源局】寒潮橙色预警：" in result.stdout
    # one count and one example per channel
    for channel in ("twilio_sms", "twilio_voice", "broadcast", "wecom", "dingtalk"):
        assert f"\n{channel}: " in result.stdout
    # the events first, and what the bureau got: one message per event and person
    assert "Events at 2026-01-07 00:00 Asia/Shanghai (2)" in result.stdout
    assert "to the bureau: 3 messages about 2 events, to 2 people" in result.stdout
    assert re.search(
        r"e\.g\. 【柳林县自然资源局】寒潮橙色预警（编码(\w{4})）.*回复“1 \1”确认", result.stdout
    )


def test_a_drill_on_a_missing_recording_says_what_to_give() -> None:
    result = runner.invoke(app, ["drill", "--config", str(COUNTY), "--replay", "nope.json"])
    assert result.exit_code == 1
    assert "nope.json: no such file" in result.stderr


def test_a_bad_time_is_refused_plainly() -> None:
    result = runner.invoke(
        app,
        ["drill", "--config", str(COUNTY), "--replay", str(SCENARIOS / "calm-2026-01.json"),
         "--at", "tomorrow"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "expected ISO 8601" in result.stderr


def test_db_upgrade_brings_an_empty_database_to_the_latest_revision(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert current(db_url) is not None
    assert f"database at revision {current(db_url)}" in result.stdout


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_POLL_INTERVAL_SECONDS", "often")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "YUJING_POLL_INTERVAL_SECONDS" in result.stderr
