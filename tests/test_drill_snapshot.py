"""A drill of the bundled scenarios says exactly what it said when the snapshot was taken.

The snapshot (tests/data/drill_snapshot.json) holds, per scenario and instant,
the events, the alerts and every message (recipient, address, channel, audience,
mentions, status, text) with the random alert and event codes masked. Reorganising
the code must not change a word of it. After a change that is meant to change
what a drill says, rewrite it with

    YUJING_WRITE_DRILL_SNAPSHOT=1 .venv/bin/pytest tests/test_drill_snapshot.py

and explain the difference in the commit message.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.drill import run_drill

ROOT = Path(__file__).resolve().parent.parent
COUNTY = ROOT / "examples" / "liulin"
SNAPSHOT = Path(__file__).resolve().parent / "data" / "drill_snapshot.json"

CASES = [
    ("coldwave-2026-01.json", "2026-01-07T00:00:00+08:00"),
    ("coldwave-2026-01.json", "2026-01-07T06:00:00+08:00"),
    ("calm-2026-01.json", "2026-01-07T00:00:00+08:00"),
]


def drill_summary(scenario: str, at: str) -> dict[str, Any]:
    """What a drill of `scenario` at `at` says, with alert codes replaced by their alert."""
    result = asyncio.run(
        run_drill(COUNTY, COUNTY / "scenarios" / scenario, datetime.fromisoformat(at))
    )
    names = {a["code"]: f"<{a['zone_id']}/{a['hazard']}>" for a in result.alerts}
    names |= {e["code"]: f"<event/{e['hazard']}>" for e in result.events}

    def masked(text: str | None) -> str | None:
        if text is None:
            return None
        return re.sub(r"[A-Z0-9]{4}", lambda m: names.get(m.group(0), m.group(0)), text)

    alerts = sorted(
        (
            {k: masked(v) if k == "event" else v for k, v in a.items() if k != "code"}
            for a in result.alerts
        ),
        key=lambda a: (a["zone_id"], a["hazard"]),
    )
    events = sorted(
        ({k: v for k, v in e.items() if k != "code"} for e in result.events),
        key=lambda e: e["hazard"],
    )
    notes = sorted(
        (
            {
                "alert": masked(n["alert"]),
                "recipient": n["recipient"],
                "address": n["address"],
                "channel": n["channel"],
                "audience": n["audience"],
                "mentions": n["mentions"],
                "status": n["status"],
                "body": masked(n["body"]),
            }
            for n in result.notifications
        ),
        key=lambda n: json.dumps(n, ensure_ascii=False, sort_keys=True),
    )
    return {
        "events": events,
        "alerts": alerts,
        "notification_count": len(notes),
        "notifications": notes,
    }


def _key(scenario: str, at: str) -> str:
    return f"{scenario}@{at}"


def _store(key: str, summary: dict[str, Any]) -> None:
    """Rewrite one case of the snapshot (YUJING_WRITE_DRILL_SNAPSHOT=1), keeping the others."""
    stored = json.loads(SNAPSHOT.read_text(encoding="utf-8")) if SNAPSHOT.exists() else {}
    stored[key] = summary
    text = json.dumps(stored, ensure_ascii=False, indent=1, sort_keys=True)
    SNAPSHOT.write_text(text + "\n", encoding="utf-8")


@pytest.mark.parametrize(("scenario", "at"), CASES)
def test_a_drill_says_what_the_snapshot_says(scenario: str, at: str) -> None:
    actual = drill_summary(scenario, at)
    if os.environ.get("YUJING_WRITE_DRILL_SNAPSHOT"):
        _store(_key(scenario, at), actual)
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))[_key(scenario, at)]
    assert actual["alerts"] == expected["alerts"]
    assert actual["notification_count"] == expected["notification_count"]
    assert actual["notifications"] == expected["notifications"]
