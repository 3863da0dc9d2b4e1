"""Partial data degrades per rule, and nobody is left thinking a blind hazard is calm.

Issue 13: a batch missing one variable is evaluated all the same — the hazards
that do not read it warn as usual, the one that does is undecided (an open
warning of it stays open) — and the blind-hazards system alert tells the duty
staff which hazards are blind, why and since when, is updated when that
changes and resolved when the data is whole again. A batch that cannot be used
reports every problem in one message. `/healthz` and the console's board count
the undecided (zone, hazard) pairs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from dispatcher.alerts.blind import BLIND
from dispatcher.configwatch import load_county_config
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.rulewatch import load_watched
from dispatcher.runtime import Runtime
from dispatcher.storage.models import Alert, AuditEvent, ForecastRun, Notification
from dispatcher.undecided import PARTIAL
from dispatcher.web import auth
from dispatcher.web.app import create_app
from rules.evaluate import evaluate
from tests.support import Clock
from tests.test_feed_health import (
    AT,
    COLDWAVE,
    COUNTY,
    INTERVAL,
    TOKEN,
    app_state,
    recording,
    runtime_for,
)
from tests.web.test_console import PASSWORD, cheap_hashes, log_in

__all__ = ["cheap_hashes"]  # a fixture, used by name

SOIL = "soil_temperature_0cm"  # road icing reads it; nothing else does


def without(*names: str) -> Any:
    """A change to a recording's location: these variables gone, values and units."""

    def change(hourly: dict[str, Any]) -> None:
        for name in names:
            del hourly[name]

    return change


def lacking(tmp_path: Path, *names: str) -> Path:
    """The feed's file (one name: one source) holding the cold front's recording without
    `names` (values and units) at every location; called again, it rewrites the file."""
    data = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    for location in data:
        for name in names:
            del location["hourly"][name]
            del location["hourly_units"][name]
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def open_alerts(rt: Runtime, kind: str = "hazard") -> list[Alert]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Alert).where(Alert.kind == kind, Alert.state.in_(("firing", "acknowledged")))
            )
        )


def blind_alerts(rt: Runtime) -> list[Alert]:
    with rt.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.hazard == BLIND)))


def bodies(rt: Runtime, alert_id: int, transition: str) -> list[str]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Notification.body).where(
                    Notification.alert_id == alert_id, Notification.transition == transition
                )
            )
        )


def count(alerts: list[Alert]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for a in alerts:
        out[a.hazard, a.level] = out.get((a.hazard, a.level), 0) + 1
    return out


# --- the rule engine


def test_the_rules_read_a_missing_variable_exactly_like_all_nan_values() -> None:
    ruleset, _ = load_watched(COUNTY / "rules")
    config = load_county_config(COUNTY, ruleset, 0.02)
    batch = asyncio.run(ReplayFeed(COLDWAVE).fetch(config.points, sorted(ruleset.variables)))
    absent = replace(batch, variables={k: v for k, v in batch.variables.items() if k != SOIL})
    all_nan = replace(
        batch, variables={**batch.variables, SOIL: np.full_like(batch.variables[SOIL], np.nan)}
    )

    gone = evaluate(ruleset, absent, config.zones, AT, "Asia/Shanghai")
    masked = evaluate(ruleset, all_nan, config.zones, AT, "Asia/Shanghai")

    assert gone == masked
    icing = [a for a in gone if a.hazard == "road_icing"]
    assert len(icing) == 40 and all(a.level is None for a in icing)  # undecided, not quiet
    assert sum(1 for a in gone if a.hazard == "cold_wave" and a.level is not None) == 40


# --- the pipeline


async def test_a_batch_missing_one_variable_still_warns_on_the_hazards_that_do_not_need_it(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=lacking(tmp_path, SOIL))
    try:
        result = await rt.pipeline.poll()

        assert result.ok, result.error
        assert count(open_alerts(rt)) == {("cold_wave", "orange"): 10, ("cold_wave", "yellow"): 30}
        with rt.sessions() as session:
            run = session.get(ForecastRun, result.forecast_run_id)
            assert run is not None and run.ok and SOIL not in run.variables
            assert run.error is not None and run.error.startswith("partial: ")
            assert f"{SOIL} missing at 34 of 34 points" in run.error
            assert f"hourly.{SOIL} is missing (all 34 locations)" in run.error
            [said] = session.scalars(select(AuditEvent).where(AuditEvent.action == PARTIAL))
            assert said.subject == f"forecast_run:{run.id}"
            assert said.data["blind"] == {"road_icing": [SOIL]}
            assert [(u["hazard"], u["zones"]) for u in said.data["undecided"]] == [
                ("road_icing", 40)
            ]
    finally:
        await rt.aclose()


async def test_an_open_warning_of_a_blind_hazard_stays_open_and_the_staff_are_told(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=lacking(tmp_path))
    try:
        assert (await rt.pipeline.poll()).ok
        icing_before = {a.code for a in open_alerts(rt) if a.hazard == "road_icing"}
        assert len(icing_before) == 40

        lacking(tmp_path, SOIL)
        clock.now += INTERVAL
        result = await rt.pipeline.poll()

        assert result.ok and result.transitions == {"continued": 80}  # nothing resolved
        assert {a.code for a in open_alerts(rt) if a.hazard == "road_icing"} == icing_before
        [blind] = blind_alerts(rt)
        assert blind.kind == "system" and blind.state == "firing"
        assert blind.rule_id == f"blind:{rt.feed.source}"
        assert set(blind.evidence["hazards"]) == {"road_icing"}
        assert blind.evidence["hazards"]["road_icing"] == {"zones": 40, "variables": [SOIL]}
        assert blind.evidence["variables"][SOIL]["since"] == clock.now.isoformat()
        told = bodies(rt, blind.id, "new")
        assert len(told) == 2  # the duty officer and the leader on duty: the system policy
        for body in told:
            assert "缺少地表温度" in body and "道路结冰（40处隐患点）无法判定" in body
            assert rt.feed.source in body and blind.code in body
            assert "自1月7日00:30起" in body  # since when, local time

        # the data whole again: the alert resolved, everyone told was told
        lacking(tmp_path)  # whole again
        clock.now += INTERVAL
        assert (await rt.pipeline.poll()).ok
        [blind] = blind_alerts(rt)
        assert blind.state == "resolved"
        restored = bodies(rt, blind.id, "resolved")
        assert len(restored) == 2 and all("恢复完整" in body for body in restored)
        assert len([a for a in open_alerts(rt) if a.hazard == "road_icing"]) == 40
    finally:
        await rt.aclose()


async def test_the_blind_alert_is_updated_when_the_blind_hazards_change(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=lacking(tmp_path, SOIL))
    try:
        assert (await rt.pipeline.poll()).ok
        [first] = blind_alerts(rt)
        since = first.evidence["variables"][SOIL]["since"]

        lacking(tmp_path, SOIL, "visibility")
        clock.now += INTERVAL
        assert (await rt.pipeline.poll()).ok

        [blind] = blind_alerts(rt)  # the same alert, updated
        assert blind.code == first.code and blind.state == "firing"
        assert set(blind.evidence["hazards"]) == {"fog", "road_icing"}
        assert blind.evidence["variables"][SOIL]["since"] == since  # still since the first
        assert blind.evidence["variables"]["visibility"]["since"] == clock.now.isoformat()
        changed = bodies(rt, blind.id, "changed.1")
        assert len(changed) == 2
        assert all("系统告警更新" in b and "大雾" in b and "能见度" in b for b in changed)

        clock.now += INTERVAL  # the same blind set again: nobody is told twice
        assert (await rt.pipeline.poll()).ok
        assert bodies(rt, blind.id, "changed.2") == []
    finally:
        await rt.aclose()


async def test_every_problem_of_an_unusable_batch_is_reported_in_one_message(
    db_url: str, tmp_path: Path
) -> None:
    data = json.loads(COLDWAVE.read_text(encoding="utf-8"))
    data[1]["utc_offset_seconds"] = 28800  # fatal: local times
    del data[5]["hourly"]["snowfall"]
    data[7]["hourly_units"]["temperature_2m"] = "°F"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=path)
    try:
        result = await rt.pipeline.poll()

        assert not result.ok and result.error is not None
        assert "times are local (utc_offset_seconds=28800)" in result.error
        assert "hourly.snowfall is missing" in result.error
        assert "hourly_units.temperature_2m is '°F', expected '°C'" in result.error
        with rt.sessions() as session:
            [failed] = session.scalars(select(AuditEvent).where(AuditEvent.action == "feed.failed"))
            assert failed.data["reason"] == result.error
    finally:
        await rt.aclose()


# --- /healthz and the console


def test_healthz_counts_undecided_zones_and_explains_them_only_to_the_authenticated(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=lacking(tmp_path, SOIL))
    try:
        assert asyncio.run(rt.pipeline.poll()).ok
        [blind] = blind_alerts(rt)
        client = TestClient(create_app(app_state(rt)))

        public = client.get("/healthz").json()
        assert public["undecided"] == {
            "zones": 40,
            "by_hazard": {"road_icing": 40},
            "blind_alert": blind.code,
        }
        assert public["status"] == "degraded" and "hazards blind" in public["problems"]
        assert SOIL not in json.dumps(public)

        told = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        [reason] = told["undecided"]["reasons"]
        assert reason == {"hazard": "road_icing", "zones": 40, "reason": f"{SOIL} not delivered"}

        lacking(tmp_path)  # whole again
        clock.now += INTERVAL
        assert asyncio.run(rt.pipeline.poll()).ok
        whole = client.get("/healthz").json()
        assert whole["undecided"] == {"zones": 0, "by_hazard": {}, "blind_alert": None}
        assert "hazards blind" not in whole["problems"]
    finally:
        asyncio.run(rt.aclose())


def test_the_board_says_how_many_zones_cannot_be_decided_and_why(
    db_url: str, tmp_path: Path, cheap_hashes: None
) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=lacking(tmp_path, SOIL))
    try:
        assert asyncio.run(rt.pipeline.poll()).ok
        with rt.sessions.begin() as session:
            auth.create_user(
                session, name="zhang", password=PASSWORD, role="viewer", person_id=None, at=AT
            )
        client = TestClient(create_app(app_state(rt)), follow_redirects=False)
        log_in(client, "zhang")

        board = client.get("/console/")

        assert board.status_code == 200
        assert "40 处隐患点的道路结冰无法判定：缺少地表温度" in board.text
        rows = client.get("/console/board/rows").json()  # the refresh carries it too
        assert "无法判定" in rows["head"]

        lacking(tmp_path)  # whole again
        clock.now += timedelta(minutes=30)
        assert asyncio.run(rt.pipeline.poll()).ok
        assert "无法判定" not in client.get("/console/").text
    finally:
        asyncio.run(rt.aclose())


def test_a_recording_lacking_a_variable_is_said_once_for_all_its_locations(
    tmp_path: Path,
) -> None:
    name = SOIL
    path = recording(tmp_path, "partial.json", without(name))
    ruleset, _ = load_watched(COUNTY / "rules")
    config = load_county_config(COUNTY, ruleset, 0.02)

    batch = asyncio.run(ReplayFeed(path).fetch(config.points, sorted(ruleset.variables)))

    assert name not in batch.variables
    assert batch.problems == (f"hourly.{name} is missing (all 34 locations)",)
