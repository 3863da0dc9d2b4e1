"""Alerts that stay open across polls: written when what they store changes, and only then.

A province keeps tens of thousands of alerts open for days; a poll that finds
the same forecast changes none of them, and writes none of them (`updated_at`
says when an alert last changed). A forecast that moves an open alert's onset,
end or evidence, or a calm clock that starts, is written as before. The example
county on SQLite and PostgreSQL, through the replay feed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dispatcher.feeds.replay import ReplayFeed
from dispatcher.storage.models import Alert, AuditEvent
from tests.support import Clock
from tests.test_pipeline import AT, CALM, COLDWAVE, runtime_for


def stored(rt: Any) -> dict[int, dict[str, Any]]:
    """The open hazard alerts, by id: what a continued transition may change."""
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert).where(Alert.kind == "hazard", Alert.state == "firing")
        ).all()
        return {
            a.id: {
                "onset": a.onset,
                "until": a.until,
                "evidence": a.evidence,
                "calm_since": a.calm_since,
                "updated_at": a.updated_at,
            }
            for a in rows
        }


async def test_polling_the_same_forecast_again_writes_no_alert(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        before = stored(rt)
        clock.now += timedelta(minutes=10)
        result = await rt.pipeline.poll()
        after = stored(rt)
        assert result.transitions == {"continued": 80}
        # every alert as the first poll left it: updated_at is when it last changed
        assert after == before
        assert {a["updated_at"] for a in after.values()} == {AT}
    finally:
        await rt.aclose()


def colder(source: Path, target: Path, by: float) -> None:
    """`source` with every temperature `by` °C lower, written to `target`."""
    locations = json.loads(source.read_text(encoding="utf-8"))
    for location in locations:
        hourly = location["hourly"]
        for name in ("temperature_2m", "apparent_temperature", "soil_temperature_0cm"):
            hourly[name] = [None if v is None else round(v - by, 1) for v in hourly[name]]
    target.write_text(json.dumps(locations), encoding="utf-8")


async def test_a_continued_alert_whose_forecast_changes_is_written(
    db_url: str, tmp_path: Path
) -> None:
    # given a replay of a file that the next poll finds rewritten (the same feed)
    recording = tmp_path / "coldwave.json"
    colder(COLDWAVE, recording, 0.0)
    clock = Clock(AT)
    rt = runtime_for(db_url, clock, replay_file=recording)
    try:
        assert isinstance(rt.pipeline.feed, ReplayFeed)
        await rt.pipeline.poll()
        before = stored(rt)
        colder(COLDWAVE, recording, 0.3)
        later = AT + timedelta(minutes=10)
        clock.now = later
        result = await rt.pipeline.poll()
        after = stored(rt)

        # then the alerts still open whose forecast moved carry the new one, written now
        assert result.ok and "continued" in result.transitions
        kept = before.keys() & after.keys()
        moved = {
            i
            for i in kept
            if (before[i]["onset"], before[i]["until"], before[i]["evidence"])
            != (after[i]["onset"], after[i]["until"], after[i]["evidence"])
        }
        assert moved, "the colder forecast changed no open alert's evidence"
        assert {after[i]["updated_at"] for i in moved} == {later}
        assert {after[i]["updated_at"] for i in kept - moved} <= {AT}
    finally:
        await rt.aclose()


async def test_a_calm_clock_is_written_when_it_starts_and_not_again(db_url: str) -> None:
    clock = Clock(AT)
    rt = runtime_for(db_url, clock)
    try:
        await rt.pipeline.poll()
        rt.pipeline.feed = ReplayFeed(CALM)
        calm_from = AT + timedelta(hours=1)
        clock.now = calm_from
        first = await rt.pipeline.poll()
        clock.now += timedelta(minutes=10)  # still within the hold
        second = await rt.pipeline.poll()
        after = stored(rt)

        assert first.transitions == second.transitions == {"continued": 80}
        assert {(a["calm_since"], a["updated_at"]) for a in after.values()} == {
            (calm_from, calm_from)
        }
        with rt.sessions() as session:
            calming = session.scalars(
                select(AuditEvent.subject).where(AuditEvent.action == "alert.calming")
            ).all()
        assert sorted(calming) == sorted(f"alert:{i}" for i in after)  # once each
    finally:
        await rt.aclose()
