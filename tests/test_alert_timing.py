"""The rules' hold, cooldown and templates, applied by the whole pipeline.

A real runtime on a copy of the example county, on SQLite and PostgreSQL. The
cold wave of the recorded scenario is replaced by the calm recording to end it
and brought back to see what a cooldown does; a rule file added beside the
county's (`override:`) sets the cold wave's own hold, cooldown and SMS text.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatcher.feeds.replay import ReplayFeed
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, Notification
from tests.processes import COLDWAVE, COUNTY
from tests.support import Clock, replay_settings

CALM = COUNTY / "scenarios" / "calm-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai, mid cold wave
COLD_WAVE_ZONES = 40  # the scenario warns every zone of a cold wave (yellow or orange)


@pytest.fixture
def clock() -> Clock:
    return Clock(AT)


@pytest.fixture
async def rt(db_url: str, tmp_path: Path, clock: Clock) -> AsyncIterator[Runtime]:
    county = Path(shutil.copytree(COUNTY, tmp_path / "county"))
    config = replay_settings(county, db_url)
    runtime = open_runtime(config, clock=clock, console=io.StringIO(), wake=lambda: None)
    yield runtime
    await runtime.aclose()


async def override_cold_wave(rt: Runtime, settings: str) -> None:
    """Give every cold-wave rule `settings` (YAML lines) in a file of its own, and reload."""
    ids = [rule.id for rule in rt.rules().rules if rule.hazard == "cold_wave"]
    assert ids, "the example county has cold-wave rules"
    body = "".join(f"  - id: {rule_id}\n{settings}" for rule_id in ids)
    (rt.settings.config_dir / "rules" / "zz-cold-wave-local.yaml").write_text(
        f"override:\n{body}", encoding="utf-8"
    )
    reload = await rt.rulewatch.poll()
    assert reload is not None and reload.outcome == "loaded", reload


async def poll_at(rt: Runtime, clock: Clock, hours: float, recording: Path) -> dict[str, int]:
    clock.now = AT + timedelta(hours=hours)
    rt.pipeline.feed = ReplayFeed(recording)
    result = await rt.pipeline.poll()
    assert result.ok
    return result.transitions


def cold_wave_alerts(rt: Runtime, state: str) -> int:
    with rt.sessions() as session:
        return (
            session.scalar(
                select(func.count()).where(
                    Alert.hazard == "cold_wave", Alert.state == state, Alert.kind == "hazard"
                )
            )
            or 0
        )


def cold_wave_messages(rt: Runtime) -> list[str]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Notification.body)
                .join(Alert, Alert.id == Notification.alert_id)
                .where(Alert.hazard == "cold_wave", Alert.kind == "hazard")
            )
        )


async def test_a_hazards_own_hold_resolves_it_sooner_than_the_default(
    rt: Runtime, clock: Clock
) -> None:
    await poll_at(rt, clock, 0, COLDWAVE)
    await override_cold_wave(rt, "    hold: 1h\n")

    await poll_at(rt, clock, 1, CALM)  # calm from here on
    await poll_at(rt, clock, 2, CALM)  # an hour calm: the cold wave's hold is over

    assert cold_wave_alerts(rt, "resolved") == COLD_WAVE_ZONES
    assert cold_wave_alerts(rt, "firing") == 0
    with rt.sessions() as session:  # road icing keeps the default hold of 3 h
        assert session.scalar(
            select(func.count()).where(Alert.hazard == "road_icing", Alert.state == "firing")
        )


async def test_the_default_hold_keeps_a_warning_open_through_a_calm_spell(
    rt: Runtime, clock: Clock
) -> None:
    await poll_at(rt, clock, 0, COLDWAVE)
    await poll_at(rt, clock, 1, CALM)
    await poll_at(rt, clock, 3.5, CALM)  # 2.5 h calm, less than YUJING_ALERT_HOLD_SECONDS
    transitions = await poll_at(rt, clock, 4, COLDWAVE)

    assert cold_wave_alerts(rt, "firing") == COLD_WAVE_ZONES
    assert cold_wave_alerts(rt, "resolved") == 0
    assert "new" not in transitions


async def test_a_warning_back_within_its_cooldown_is_held_back_and_audited_once(
    rt: Runtime, clock: Clock
) -> None:
    await poll_at(rt, clock, 0, COLDWAVE)
    await override_cold_wave(rt, "    hold: 1h\n    cooldown: 2h\n")
    await poll_at(rt, clock, 1, CALM)
    await poll_at(rt, clock, 2, CALM)  # resolved
    sent = len(cold_wave_messages(rt))

    first = await poll_at(rt, clock, 3, COLDWAVE)  # the same levels, an hour later
    await poll_at(rt, clock, 3.5, COLDWAVE)

    assert first.get("suppressed") == COLD_WAVE_ZONES
    assert cold_wave_alerts(rt, "firing") == 0
    assert len(cold_wave_messages(rt)) == sent
    with rt.sessions() as session:
        held_back = session.scalars(
            select(AuditEvent.data).where(AuditEvent.action == "alert.suppressed")
        ).all()
    assert len(held_back) == COLD_WAVE_ZONES
    assert {e["hazard"] for e in held_back} == {"cold_wave"}
    assert all(e["evidence"] for e in held_back)


async def test_a_warning_back_after_its_cooldown_is_issued_again(rt: Runtime, clock: Clock) -> None:
    await poll_at(rt, clock, 0, COLDWAVE)
    await override_cold_wave(rt, "    hold: 1h\n    cooldown: 2h\n")
    await poll_at(rt, clock, 1, CALM)
    await poll_at(rt, clock, 2, CALM)  # resolved at +2 h

    await poll_at(rt, clock, 3, COLDWAVE)  # held back
    await poll_at(rt, clock, 4, COLDWAVE)  # the cooldown is over

    assert cold_wave_alerts(rt, "firing") == COLD_WAVE_ZONES
    assert cold_wave_alerts(rt, "resolved") == COLD_WAVE_ZONES


async def test_a_rules_sms_template_words_its_warnings(rt: Runtime, clock: Clock) -> None:
    await override_cold_wave(
        rt,
        "    templates:\n"
        "      sms: '【{{ sender }}】{{ township }}{{ zone }}{{ hazard }}{{ level }}"
        "（{{ kind }}），回复1确认（编码{{ code }}）'\n",
    )

    await poll_at(rt, clock, 0, COLDWAVE)

    with rt.sessions() as session:
        alerts = session.scalars(
            select(Alert).where(Alert.hazard == "cold_wave", Alert.kind == "hazard")
        ).all()
        zone = rt.county.zone(alerts[0].zone_id or "")
        expected = (
            f"【{rt.county.sender}】{zone.township}{zone.name}寒潮"
            f"{'橙色' if alerts[0].level == 'orange' else '黄色'}（new），"
            f"回复1确认（编码{alerts[0].code}）"
        )
        bodies = session.scalars(
            select(Notification.body).where(Notification.alert_id == alerts[0].id)
        ).all()
        icing = session.scalars(
            select(Notification.body)
            .join(Alert, Alert.id == Notification.alert_id)
            .where(Alert.hazard == "road_icing", Alert.kind == "hazard")
        ).all()
    assert bodies and all(b.startswith(expected) for b in bodies)  # an ack link may follow
    assert icing and all("道路结冰黄色预警" in b for b in icing)  # no template: built-in text
