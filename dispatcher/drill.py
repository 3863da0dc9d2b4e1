"""Drills: the whole pipeline, once, on a recorded forecast, at a chosen instant.

A drill uses a throw-away SQLite database and the console channel, so it can
run on the production machine without touching live data or phones.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dispatcher.runtime import drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.states import AlertState
from dispatcher.storage.models import Alert, Notification


@dataclass(frozen=True)
class DrillResult:
    at: datetime
    alerts: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    console: str  # what the console channel printed

    def as_json(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "notifications": self.notifications}


async def run_drill(config_dir: Path, replay_file: Path, at: datetime) -> DrillResult:
    """Evaluate the recorded forecast at `at`, enqueue and deliver to the console."""
    console = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="yujing-drill-") as tmp:
        settings = Settings(
            _env_file=None,
            config_dir=config_dir,
            database_url=f"sqlite:///{tmp}/drill.db",
            feed="replay",
            replay_file=replay_file,
            replay_rebase=False,
            digest_window_seconds=0,  # the drill's clock stands still: digest at once
            channel="console",
            twilio_account_sid=None,
            twilio_auth_token=None,
        )
        runtime = open_runtime(settings, clock=lambda: at, console=console, wake=lambda: None)
        try:
            await runtime.pipeline.poll()
            await drain(runtime.worker)
            tz = ZoneInfo(runtime.county.timezone)
            with runtime.sessions() as session:
                alerts = session.scalars(
                    select(Alert)
                    .where(Alert.state == AlertState.FIRING)
                    .order_by(Alert.zone_id, Alert.hazard)
                ).all()
                codes = {a.id: a.code for a in session.scalars(select(Alert))}
                notes = session.scalars(select(Notification).order_by(Notification.id)).all()
                return DrillResult(
                    at=at,
                    alerts=[
                        {
                            "code": a.code,
                            "zone_id": a.zone_id,
                            "rule_id": a.rule_id,
                            "hazard": a.hazard,
                            "level": a.level,
                            "onset": a.onset.astimezone(tz).isoformat() if a.onset else None,
                            "until": a.until.astimezone(tz).isoformat() if a.until else None,
                        }
                        for a in alerts
                    ],
                    notifications=[
                        {
                            "alert": codes.get(n.alert_id) if n.alert_id else None,
                            "recipient": n.recipient_name,
                            "address": n.address,
                            "channel": n.channel,
                            "status": n.status,
                            "body": n.body,
                        }
                        for n in notes
                    ],
                    console=console.getvalue(),
                )
        finally:
            await runtime.aclose()
