"""County reloads: zones, people and roster edits take effect without a restart.

A real runtime on a copy of the example county, on SQLite and PostgreSQL; the
county files are edited on disk and the runtime's watch job is run, as the
daemon's scheduler does every few seconds. A valid edit is in force at the
next poll; an invalid one is refused, audited and sent to the administrators
while the last good configuration keeps working. `yujing evaluate-now` asks
the daemon to poll; `yujing rules check` warns of a roster about to end. The
last test runs the daemon itself.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, AuditEvent, ForecastRun, Notification, Person, Zone
from tests.processes import COLDWAVE, COUNTY, daemon_env, start, wait_for
from tests.support import Clock
from tests.test_rulewatch import EXTRA

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai, mid cold wave
ADMIN = "p-admin-wang"
NEW_ZONE = "LL-LL-901"

EVERYWHERE = EXTRA  # a hazard that fires everywhere in the cold-wave scenario

# a zone in a forecast cell of its own (a new forecast point too)
ZONE = """\
  - id: LL-LL-901
    name: 柳林镇测试新增滑坡
    kind: landslide
    township: 柳林镇
    village: 龙门垣村
    location: {lat: 37.5012, lon: 110.9533}
    risk: high
    tags: [residential]
    threatened: {households: 3, people: 9}
    people:
      disaster_prevention: [p-ll-lmy-1]
"""
# the same zone naming a person people.yaml does not have
BROKEN_ZONE = ZONE.replace("[p-ll-lmy-1]", "[p-nobody]")

runner = CliRunner()


@pytest.fixture
def county(tmp_path: Path) -> Path:
    """A copy of the example county whose files the tests edit; a rule fires everywhere."""
    copy = Path(
        shutil.copytree(COUNTY, tmp_path / "county", ignore=shutil.ignore_patterns("scenarios"))
    )
    write(copy / "rules" / "everywhere.yaml", EVERYWHERE)
    return copy


def settings(db_url: str, county: Path) -> Settings:
    values: dict[str, object] = {
        "config_dir": county,
        "database_url": db_url,
        "feed": "replay",
        "replay_file": COLDWAVE,
        "replay_rebase": False,
        "channel": "console",
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def opened(db_url: str, county: Path, clock: Clock) -> Runtime:
    return open_runtime(
        settings(db_url, county), clock=clock, console=io.StringIO(), wake=lambda: None
    )


@pytest.fixture
async def rt(db_url: str, county: Path) -> AsyncIterator[Runtime]:
    runtime = opened(db_url, county, Clock(AT))
    yield runtime
    await runtime.aclose()


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def add_zone(county: Path, zone: str = ZONE) -> None:
    path = county / "zones.yaml"
    write(path, path.read_text(encoding="utf-8").rstrip("\n") + "\n" + zone)


def warned_zones(rt: Runtime) -> set[str]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert.zone_id).where(Alert.hazard == "test_chill", Alert.state == "firing")
        )
        return {z for z in rows if z}


def audit_events(rt: Runtime, action: str) -> list[dict[str, Any]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return [dict(e.data) for e in rows]


def messages_to(rt: Runtime, person_id: str) -> list[tuple[str, str, str]]:
    """(transition, address, body) of every outbox row to one person, oldest first."""
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.person_id == person_id)
            .order_by(Notification.id)
        )
        return [(n.transition, n.address, n.body) for n in rows]


def config_alerts(rt: Runtime) -> list[str]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert.state).where(Alert.hazard == "config_refused").order_by(Alert.id)
        )
        return list(rows)


# --- valid edits: in force at the next poll, no restart


async def test_a_new_zone_is_warned_at_the_next_poll_without_a_restart(
    rt: Runtime, county: Path
) -> None:
    old_zones = {z.id for z in rt.county.zones}
    points = len(rt.pipeline.points)
    add_zone(county)

    reload = await rt.configwatch.poll()
    result = await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "loaded"
    assert reload.files == ("zones.yaml",)
    assert result.ok
    assert warned_zones(rt) == old_zones | {NEW_ZONE}
    assert len(rt.pipeline.points) == points + 1  # its own forecast cell
    assert NEW_ZONE in {z.id for z in rt.county.zones}
    with rt.sessions() as session:
        zone = session.get(Zone, NEW_ZONE)
        assert zone is not None and zone.active
    [reloaded] = audit_events(rt, "config.reloaded")
    assert reloaded["files"] == ["zones.yaml"]
    assert reloaded["zones"] == len(old_zones) + 1


async def test_a_new_phone_in_people_yaml_gets_the_message(rt: Runtime, county: Path) -> None:
    people = county / "people.yaml"
    person = "p-ll-lmy-2"  # monitoring of LL-LL-001: told at once of a yellow warning
    with rt.sessions() as session:
        row = session.get(Person, person)
        assert row is not None
        old_phone = row.phone
    new_phone = "+8617099990001"
    text = people.read_text(encoding="utf-8")
    assert text.count(f'"{old_phone}"') == 1
    write(people, text.replace(f'"{old_phone}"', f'"{new_phone}"'))

    reload = await rt.configwatch.poll()
    await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "loaded"
    sent = messages_to(rt, person)
    assert sent, "the zone's person must be warned"
    assert {address for _, address, _ in sent} == {new_phone}
    with rt.sessions() as session:
        row = session.get(Person, person)
        assert row is not None and row.phone == new_phone


async def test_a_roster_edit_puts_another_duty_officer_on_duty_at_once(
    rt: Runtime, county: Path
) -> None:
    assert rt.escalation is not None
    on_duty = rt.escalation.roster.on_duty(AT).duty_officer
    assert on_duty is not None
    stand_in = next(p.id for p in rt.county.duty_officers() if p.id != on_duty.id)
    day = rt.escalation.roster.duty_day(AT).isoformat()
    roster = county / "roster.yaml"
    text = roster.read_text(encoding="utf-8")
    write(
        roster,
        text.replace(
            "  overrides:\n",
            "  overrides:\n"
            "    - name: 测试顶班\n"
            f"      from: {day}\n"
            f"      to: {day}\n"
            f"      duty_officer: [{stand_in}]\n"
            "      leader_on_duty: [p-lead-gao]\n",
            1,
        ),
    )
    seen: list[str] = []
    rt.on_swap.append(lambda config: seen.append(config.content_hash))

    reload = await rt.configwatch.poll()
    await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "loaded", reload
    assert rt.escalation.roster.on_duty(AT).duty_officer.id == stand_in  # type: ignore[union-attr]
    assert rt.pipeline.escalation is rt.escalation
    assert seen == [rt.configwatch.current.content_hash]
    assert messages_to(rt, stand_in), "the stand-in on duty must be told"
    assert not messages_to(rt, on_duty.id)


async def test_the_same_content_again_changes_nothing(rt: Runtime, county: Path) -> None:
    county_in_force = rt.county
    path = county / "zones.yaml"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched

    reload = await rt.configwatch.poll()

    assert reload is not None and reload.outcome == "unchanged"
    assert rt.county is county_in_force
    assert audit_events(rt, "config.reloaded") == []
    assert await rt.configwatch.poll() is None


# --- invalid edits: refused, the last good kept


async def test_an_invalid_edit_is_refused_and_the_old_zones_are_still_warned(
    rt: Runtime, county: Path
) -> None:
    county_in_force = rt.county
    old_zones = {z.id for z in rt.county.zones}
    add_zone(county, BROKEN_ZONE)

    reload = await rt.configwatch.poll()
    result = await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "refused"
    assert any("zones.yaml:" in p and "p-nobody" in p for p in reload.problems)
    assert rt.county is county_in_force
    assert result.ok
    assert warned_zones(rt) == old_zones
    with rt.sessions() as session:
        assert session.get(Zone, NEW_ZONE) is None


async def test_an_invalid_edit_is_audited_and_sent_to_the_administrators(
    rt: Runtime, county: Path
) -> None:
    add_zone(county, BROKEN_ZONE)

    reload = await rt.configwatch.poll()

    assert reload is not None and reload.notifications == 1
    [refused] = audit_events(rt, "config.refused")
    assert refused["files"] == ["zones.yaml"]
    assert "zones.yaml:" in refused["first"] and "p-nobody" in refused["first"]
    assert refused["count"] == len(refused["problems"]) >= 1
    assert config_alerts(rt) == ["firing"]
    [(transition, _, body)] = messages_to(rt, ADMIN)
    assert transition == "new"
    assert "县级配置（区域、人员、值班表）有误，未生效，仍按原配置运行" in body
    assert "zones.yaml第" in body


async def test_saving_broken_files_again_does_not_message_the_administrators_twice(
    rt: Runtime, county: Path
) -> None:
    add_zone(county, BROKEN_ZONE)
    await rt.configwatch.poll()
    add_zone(county, "# still wrong\n")

    reload = await rt.configwatch.poll()

    assert reload is not None and (reload.outcome, reload.notifications) == ("refused", 0)
    assert len(audit_events(rt, "config.refused")) == 2
    assert config_alerts(rt) == ["firing"]
    assert len(messages_to(rt, ADMIN)) == 1


async def test_a_fixed_edit_loads_resolves_the_alert_and_tells_the_administrators(
    rt: Runtime, county: Path
) -> None:
    text = (county / "zones.yaml").read_text(encoding="utf-8")
    add_zone(county, BROKEN_ZONE)
    await rt.configwatch.poll()
    write(county / "zones.yaml", text)
    add_zone(county)

    reload = await rt.configwatch.poll()
    await rt.pipeline.poll()

    assert reload is not None and (reload.outcome, reload.notifications) == ("loaded", 1)
    assert config_alerts(rt) == ["resolved"]
    assert [t for t, _, _ in messages_to(rt, ADMIN)] == ["new", "resolved"]
    assert "县级配置（区域、人员、值班表）已于" in messages_to(rt, ADMIN)[-1][2]
    assert NEW_ZONE in warned_zones(rt)


async def test_an_invalid_roster_is_refused_with_the_roster_kept(rt: Runtime, county: Path) -> None:
    assert rt.escalation is not None
    roster_in_force = rt.escalation.roster
    roster = county / "roster.yaml"
    write(roster, roster.read_text(encoding="utf-8").replace("p-duty-guo]", "p-nobody]", 1))

    reload = await rt.configwatch.poll()

    assert reload is not None and reload.outcome == "refused"
    assert any("roster.yaml:" in p for p in reload.problems)
    assert rt.escalation.roster is roster_in_force
    assert audit_events(rt, "config.refused")[0]["files"] == ["roster.yaml"]


async def test_a_start_with_valid_files_resolves_a_config_alert_left_open(
    db_url: str, county: Path
) -> None:
    text = (county / "zones.yaml").read_text(encoding="utf-8")
    first = opened(db_url, county, Clock(AT))
    add_zone(county, BROKEN_ZONE)
    await first.configwatch.poll()
    await first.aclose()
    write(county / "zones.yaml", text)

    second = opened(db_url, county, Clock(AT + timedelta(minutes=5)))
    await second.aclose()

    assert config_alerts(second) == ["resolved"]
    assert [t for t, _, _ in messages_to(second, ADMIN)] == ["new", "resolved"]


# --- evaluate now


async def test_evaluate_now_makes_the_daemon_poll_with_the_edited_files(
    rt: Runtime, county: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rt.pipeline.poll()
    assert await rt.watch() is None  # nobody asked
    add_zone(county)
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)
    monkeypatch.setenv("YUJING_CONFIG_DIR", str(county))

    asked = runner.invoke(app, ["evaluate-now", "--wait", "0"])
    result = await rt.watch()

    assert asked.exit_code == 0, asked.output
    assert "已请求立即评估" in asked.output
    assert result is not None and result.ok
    assert NEW_ZONE in warned_zones(rt)
    [requested] = [e for e in _events(rt, "evaluate.requested") if e.actor.startswith("cli:")]
    [done] = audit_events(rt, "evaluate.done")
    assert done["request"] == requested.id
    assert done["forecast_run_id"] == result.forecast_run_id
    assert await rt.watch() is None  # answered once


async def test_evaluate_now_without_an_answer_fails_plainly(
    rt: Runtime, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)

    asked = runner.invoke(app, ["evaluate-now", "--wait", "0.6"])

    assert asked.exit_code == 1
    assert "no answer within 0.6 s" in asked.stderr
    assert "Traceback" not in asked.output


def _events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- rules check


def test_rules_check_warns_of_a_roster_that_ends_within_two_weeks(county: Path) -> None:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)  # a duty day
    end = today + timedelta(days=9)
    write(
        county / "roster.yaml",
        "roster:\n"
        '  handover: "08:30"\n'
        f"  horizon: {{from: {today - timedelta(days=3)}, to: {end}}}\n"
        "  rotations:\n"
        "    - name: 短期值班\n"
        f"      from: {today - timedelta(days=3)}\n"
        f"      to: {end}\n"
        "      duty_officer: [p-duty-zhang, p-duty-li]\n"
        "      leader_on_duty: [p-lead-gao]\n",
    )

    result = runner.invoke(app, ["rules", "check", "--config", str(county)])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 40 zones")
    lines = result.stderr.splitlines()
    roster = str(county / "roster.yaml")
    [ends] = [line for line in lines if "warning: the roster ends on" in line]
    assert ends.startswith(f"{roster}:3:") and str(end) in ends
    gaps = [line for line in lines if "nobody is rostered as" in line]
    assert len(gaps) == 2  # both roles
    assert all(f"{end + timedelta(days=1)}.." in line for line in gaps)


def test_rules_check_does_not_warn_of_a_roster_reaching_far_enough(county: Path) -> None:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    start_day, end = today - timedelta(days=3), today + timedelta(days=40)
    write(
        county / "roster.yaml",
        "roster:\n"
        '  handover: "08:30"\n'
        f"  horizon: {{from: {start_day}, to: {end}}}\n"
        "  rotations:\n"
        "    - name: 长期值班\n"
        f"      from: {start_day}\n"
        f"      to: {end}\n"
        "      duty_officer: [p-duty-zhang, p-duty-li]\n"
        "      leader_on_duty: [p-lead-gao]\n",
    )

    result = runner.invoke(app, ["rules", "check", "--config", str(county)])

    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


# --- the daemon itself


@pytest.mark.slow
def test_editing_zones_under_a_running_daemon_and_evaluating_now(
    tmp_path: Path, county: Path
) -> None:
    env = daemon_env(
        tmp_path,
        YUJING_CONFIG_DIR=str(county),
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_POLL_INTERVAL_SECONDS="3600",
        YUJING_RULES_WATCH_SECONDS="0.5",
        YUJING_CHANNEL="console",
    )
    engine = create_engine(env["YUJING_DATABASE_URL"])

    def runs() -> int:
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(ForecastRun)).scalar_one())
        except Exception:  # not migrated yet
            return 0

    def zone_warned() -> bool:
        with engine.connect() as conn:
            found = conn.execute(
                select(func.count())
                .select_from(Alert)
                .where(Alert.zone_id == NEW_ZONE, Alert.hazard == "test_chill")
            ).scalar_one()
        return bool(found)

    log = tmp_path / "daemon.log"
    proc = start(env, log)
    try:
        wait_for(lambda: runs() == 1, 90, "the daemon's first poll")
        add_zone(county)
        wait_for(
            lambda: "county configuration reloaded" in log.read_text(encoding="utf-8"),
            30,
            "the reload",
        )
        assert runs() == 1  # reloaded, not yet polled (the next poll is an hour away)

        asked = subprocess.run(
            [sys.executable, "-m", "dispatcher", "evaluate-now", "--wait", "60"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )

        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "评估完成" in asked.stdout
        assert runs() == 2
        assert zone_warned()
        assert proc.poll() is None, "the daemon must keep running"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        engine.dispose()
    output = log.read_text(encoding="utf-8")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
