"""Safe rule reloads: a valid edit takes effect without a restart, a broken one is refused.

A real runtime on a copy of the example county, on SQLite and PostgreSQL; the
rule files are edited on disk and the watch is asked to look, as the daemon's
scheduler does every few seconds. The last test runs the daemon itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.county import load_county
from dispatcher.routing import administrators
from dispatcher.rulewatch import changed_files, load_rules, snapshot
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, AuditEvent, EscalationTimer, Notification
from dispatcher.web.app import health
from dispatcher.web.state import AppState
from rules.config import ConfigError
from tests.processes import COLDWAVE, COUNTY, daemon_env, start, wait_for
from tests.support import Clock

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai, mid cold wave

# a hazard that fires everywhere in the cold-wave scenario (any temperature below 60 ℃)
EXTRA = """\
hazards:
  test_chill:
    name: 测试低温
rules:
  - id: test-chill
    hazard: test_chill
    zones: {}
    levels:
      yellow:
        within: 12h
        when: temperature_2m < 60
"""
# the same, with an operator the rule language does not have, on line 11
BROKEN = EXTRA.replace("temperature_2m < 60", "temperature_2m <<= 60")


@pytest.fixture
def county(tmp_path: Path) -> Path:
    """A copy of the example county whose files the tests may edit."""
    return Path(
        shutil.copytree(COUNTY, tmp_path / "county", ignore=shutil.ignore_patterns("scenarios"))
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(AT)


@pytest.fixture
async def rt(db_url: str, county: Path, clock: Clock) -> AsyncIterator[Runtime]:
    runtime = open_runtime(
        settings(db_url, county), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    yield runtime
    await runtime.aclose()


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


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def healthz(rt: Runtime) -> dict[str, Any]:
    state = AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=rt.pipeline.clock,
        feed_source=rt.feed.source,
        started_at=rt.pipeline.started_at,
        rules=rt.rules.status,
    )
    body: dict[str, Any] = json.loads(bytes(health(state, full=True).body))
    return body


def firing(rt: Runtime) -> Counter[tuple[str, str]]:
    with rt.sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.kind == "hazard", Alert.state == "firing"))
        return Counter((a.hazard, a.level) for a in rows)


def audit_events(rt: Runtime, action: str) -> list[dict[str, Any]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return [dict(e.data) for e in rows]


def messages_to(rt: Runtime, person_id: str) -> list[tuple[str, str]]:
    """(transition, body) of every outbox row to one person, oldest first."""
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.person_id == person_id)
            .order_by(Notification.id)
        )
        return [(n.transition, n.body) for n in rows]


def rules_alerts(rt: Runtime) -> list[tuple[str, str]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert).where(Alert.hazard == "rules_refused").order_by(Alert.id)
        )
        return [(a.code, a.state) for a in rows]


ADMIN = "p-admin-wang"
LEADER_ON_DUTY = "p-lead-xue"  # per the example roster at AT


# --- what the watch looks at


def test_the_watch_sees_rule_files_and_ignores_hidden_editor_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x")
    write(tmp_path / "old.yml", "x")
    write(tmp_path / ".a.yaml.swp", "x")
    write(tmp_path / "notes.txt", "x")
    assert sorted(snapshot(tmp_path)) == ["a.yaml", "old.yml"]


def test_changed_files_are_those_added_removed_or_modified() -> None:
    before = {"a.yaml": (1, 10), "b.yaml": (2, 20), "c.yaml": (3, 30)}
    after = {"a.yaml": (1, 10), "b.yaml": (2, 21), "d.yaml": (4, 40)}
    assert changed_files(before, after) == ("b.yaml", "c.yaml", "d.yaml")


def test_a_rule_reading_a_variable_the_feed_cannot_supply_is_a_problem_at_the_rule(
    county: Path,
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_rules(county / "rules", supplied={"visibility"})
    files = {Path(p.file).name for p in refused.value.problems}
    assert "road-icing.yaml" in files  # the library file the county includes
    assert "fog.yaml" not in files  # reads visibility only
    [icing] = [p for p in refused.value.problems if p.file.endswith("road-icing.yaml")]
    assert "soil_temperature_0cm" in icing.message and "cannot supply" in icing.message
    assert icing.line > 1


def test_administrators_hear_of_refused_rules(county: Path) -> None:
    assert [r.person_id for r in administrators(load_county(county))] == [ADMIN]


def test_without_an_administrator_the_duty_officers_hear_of_refused_rules(county: Path) -> None:
    people = county / "people.yaml"
    text = people.read_text(encoding="utf-8")
    entry = (
        "  - id: p-admin-wang\n"
        "    name: 王建国\n"
        '    phone: "+8617000000031"\n'
        "    duty_role: administrator\n"
    )
    assert entry in text
    write(people, text.replace(entry, ""))
    loaded = load_county(county)
    assert [r.person_id for r in administrators(loaded)] == [p.id for p in loaded.duty_officers()]


# --- a valid edit


async def test_unchanged_files_are_not_read_again(rt: Runtime) -> None:
    assert await rt.rulewatch.poll() is None


async def test_a_valid_edit_takes_effect_at_the_next_poll_without_a_restart(
    rt: Runtime, county: Path
) -> None:
    before = rt.rules().content_hash
    write(county / "rules" / "extra.yaml", EXTRA)

    reload = await rt.rulewatch.poll()
    result = await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "loaded"
    assert reload.files == ("extra.yaml",)
    assert rt.rules().content_hash == reload.content_hash != before
    assert result.ok
    assert firing(rt)[("test_chill", "yellow")] == len(rt.county.zones)


async def test_a_loaded_set_shows_in_healthz_and_the_audit_trail(
    rt: Runtime, county: Path, clock: Clock
) -> None:
    before = rt.rules().content_hash
    write(county / "rules" / "extra.yaml", EXTRA)
    clock.now += timedelta(minutes=5)

    reload = await rt.rulewatch.poll()

    assert reload is not None
    rules = healthz(rt)["rules"]
    assert rules["content_hash"] == reload.content_hash
    assert rules["loaded_at"] == clock.now.isoformat()
    assert rules["error"] is None
    [loaded] = [e for e in audit_events(rt, "rules.loaded") if not e["at_start"]]
    assert loaded["content_hash"] == reload.content_hash
    assert loaded["previous_hash"] == before
    assert loaded["files"] == ["extra.yaml"]


async def test_the_same_content_again_changes_nothing(rt: Runtime, county: Path) -> None:
    loaded_at = rt.rules.status.loaded_at
    ruleset = rt.rules()
    path = county / "rules" / "fog.yaml"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched

    reload = await rt.rulewatch.poll()

    assert reload is not None and reload.outcome == "unchanged"
    assert rt.rules() is ruleset
    assert rt.rules.status.loaded_at == loaded_at
    assert len(audit_events(rt, "rules.loaded")) == 1  # the start's only
    assert await rt.rulewatch.poll() is None


# --- an invalid edit


async def test_an_invalid_edit_leaves_the_old_rules_in_force(rt: Runtime, county: Path) -> None:
    await rt.pipeline.poll()
    before = firing(rt)
    ruleset = rt.rules()
    write(county / "rules" / "extra.yaml", BROKEN)

    reload = await rt.rulewatch.poll()
    rt.pipeline.clock = Clock(AT + timedelta(minutes=30))
    await rt.pipeline.poll()

    assert reload is not None and reload.outcome == "refused"
    assert any("extra.yaml:11:" in p for p in reload.problems)
    assert rt.rules() is ruleset
    assert firing(rt) == before


async def test_an_invalid_edit_is_reported_by_healthz(rt: Runtime, county: Path) -> None:
    in_force = rt.rules().content_hash
    write(county / "rules" / "extra.yaml", BROKEN)

    await rt.rulewatch.poll()

    body = healthz(rt)
    assert body["status"] == "degraded"
    assert "rule load error" in body["problems"]
    assert "extra.yaml:11:" in body["rules"]["error"]
    assert body["rules"]["content_hash"] == in_force


async def test_an_invalid_edit_is_audited_and_sent_to_the_administrators(
    rt: Runtime, county: Path
) -> None:
    write(county / "rules" / "extra.yaml", BROKEN)

    reload = await rt.rulewatch.poll()

    assert reload is not None and reload.notifications == 1
    [refused] = audit_events(rt, "rules.refused")
    assert refused["files"] == ["extra.yaml"]
    assert refused["in_force"] == rt.rules().content_hash
    assert refused["count"] == len(refused["problems"]) >= 1
    [(code, state)] = rules_alerts(rt)
    assert state == "firing"
    [(transition, body)] = messages_to(rt, ADMIN)
    assert transition == "new"
    assert "预警规则有误，未生效，仍按原规则运行" in body
    assert "extra.yaml第11行" in body
    assert f"编码{code}" in body


async def test_the_rules_refused_alert_has_an_acknowledgement_deadline(
    rt: Runtime, county: Path
) -> None:
    write(county / "rules" / "extra.yaml", BROKEN)

    await rt.rulewatch.poll()

    with rt.sessions() as session:
        [alert] = session.scalars(select(Alert).where(Alert.hazard == "rules_refused"))
        [deadline] = session.scalars(
            select(EscalationTimer).where(
                EscalationTimer.alert_id == alert.id, EscalationTimer.kind == "deadline"
            )
        )
    assert deadline.status == "pending"
    assert deadline.due_at.replace(tzinfo=UTC) == AT + timedelta(
        seconds=rt.settings.ack_deadline_orange_seconds
    )


async def test_refused_rules_nobody_acknowledges_are_reported_to_the_leader_on_duty(
    rt: Runtime, county: Path, clock: Clock
) -> None:
    write(county / "rules" / "extra.yaml", BROKEN)
    await rt.rulewatch.poll()
    [(code, _)] = rules_alerts(rt)
    clock.now = AT + timedelta(seconds=rt.settings.ack_deadline_orange_seconds)

    rt.pipeline.escalate()

    [(transition, body)] = messages_to(rt, LEADER_ON_DUTY)
    assert transition == "esc.overdue"
    assert "预警规则修改未生效" in body and f"编码{code}" in body
    assert len(audit_events(rt, "alert.overdue")) == 1


async def test_saving_broken_files_again_does_not_message_the_administrators_twice(
    rt: Runtime, county: Path
) -> None:
    write(county / "rules" / "extra.yaml", BROKEN)
    await rt.rulewatch.poll()
    write(county / "rules" / "extra.yaml", BROKEN + "\n# still wrong\n")

    reload = await rt.rulewatch.poll()

    assert reload is not None and (reload.outcome, reload.notifications) == ("refused", 0)
    assert len(audit_events(rt, "rules.refused")) == 2
    assert len(rules_alerts(rt)) == 1
    assert len(messages_to(rt, ADMIN)) == 1


async def test_a_fixed_edit_loads_resolves_the_alert_and_tells_the_administrators(
    rt: Runtime, county: Path
) -> None:
    write(county / "rules" / "extra.yaml", BROKEN)
    await rt.rulewatch.poll()
    write(county / "rules" / "extra.yaml", EXTRA)

    reload = await rt.rulewatch.poll()

    assert reload is not None and (reload.outcome, reload.notifications) == ("loaded", 1)
    assert healthz(rt)["rules"]["error"] is None
    [(_, state)] = rules_alerts(rt)
    assert state == "resolved"
    assert [t for t, _ in messages_to(rt, ADMIN)] == ["new", "resolved"]
    assert "预警规则已于" in messages_to(rt, ADMIN)[-1][1]


async def test_undoing_a_broken_edit_clears_the_error_without_reloading(
    rt: Runtime, county: Path
) -> None:
    ruleset = rt.rules()
    write(county / "rules" / "extra.yaml", BROKEN)
    await rt.rulewatch.poll()
    (county / "rules" / "extra.yaml").unlink()

    reload = await rt.rulewatch.poll()

    assert reload is not None and reload.outcome == "unchanged"
    assert rt.rules() is ruleset
    assert healthz(rt)["rules"]["error"] is None
    assert [state for _, state in rules_alerts(rt)] == ["resolved"]
    assert [t for t, _ in messages_to(rt, ADMIN)] == ["new", "resolved"]


# --- restarts


async def test_a_start_audits_the_rules_in_force_only_when_they_changed(
    db_url: str, county: Path, clock: Clock
) -> None:
    def restart() -> Runtime:
        return open_runtime(
            settings(db_url, county), clock=clock, console=io.StringIO(), wake=lambda: None
        )

    first = restart()
    await first.aclose()
    second = restart()
    await second.aclose()
    write(county / "rules" / "extra.yaml", EXTRA)
    third = restart()
    await third.aclose()

    starts = audit_events(third, "rules.loaded")
    assert [e["content_hash"] for e in starts] == [
        first.rules().content_hash,
        third.rules().content_hash,
    ]
    assert all(e["at_start"] for e in starts)


async def test_a_start_with_valid_rules_resolves_a_rules_alert_left_open(
    db_url: str, county: Path, clock: Clock
) -> None:
    first = open_runtime(
        settings(db_url, county), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    write(county / "rules" / "extra.yaml", BROKEN)
    await first.rulewatch.poll()
    await first.aclose()
    (county / "rules" / "extra.yaml").unlink()

    second = open_runtime(
        settings(db_url, county), clock=clock, console=io.StringIO(), wake=lambda: None
    )
    await second.aclose()

    assert [state for _, state in rules_alerts(second)] == ["resolved"]
    assert [t for t, _ in messages_to(second, ADMIN)] == ["new", "resolved"]


# --- the daemon itself (acceptance: issue 3, item 4)


@pytest.mark.slow
def test_editing_rules_under_a_running_daemon(tmp_path: Path, county: Path) -> None:
    env = daemon_env(
        tmp_path,
        YUJING_CONFIG_DIR=str(county),
        YUJING_FEED="replay",
        YUJING_REPLAY_FILE=str(COLDWAVE),
        YUJING_POLL_INTERVAL_SECONDS="3600",
        YUJING_RULES_WATCH_SECONDS="0.5",
        YUJING_CHANNEL="console",
        YUJING_METRICS_TOKEN="health-token-0123456789",  # /healthz shows error texts with it
    )
    log = tmp_path / "daemon.log"
    url = f"http://127.0.0.1:{env['YUJING_HTTP_PORT']}/healthz"
    token = {"Authorization": "Bearer health-token-0123456789"}

    def rules() -> dict[str, Any]:
        try:
            body: dict[str, Any] = httpx.get(url, headers=token, timeout=2).json()["rules"]
            return body
        except (httpx.HTTPError, ValueError):
            return {}

    def rules_now(check: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
        return lambda: check(rules())

    proc = start(env, log)
    try:
        wait_for(rules_now(lambda r: bool(r.get("content_hash"))), 60, "the daemon's /healthz")
        first = rules()["content_hash"]

        # a valid edit: the new set is in force, no restart
        write(county / "rules" / "extra.yaml", EXTRA)
        wait_for(rules_now(lambda r: r.get("content_hash") not in (None, first)), 30, "the reload")
        second = rules()
        assert second["error"] is None

        # an invalid edit: refused, reported, the last good set stays
        write(county / "rules" / "extra.yaml", BROKEN)
        wait_for(rules_now(lambda r: bool(r.get("error"))), 30, "the refusal")
        broken = rules()
        assert "extra.yaml:11:" in broken["error"]
        assert broken["content_hash"] == second["content_hash"]
        assert httpx.get(url, timeout=2).json()["status"] == "degraded"
        wait_for(
            lambda: "预警规则有误" in log.read_text(encoding="utf-8"),
            30,
            "the administrators' message",
        )
        assert proc.poll() is None, "the daemon must keep running"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    output = log.read_text(encoding="utf-8")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
