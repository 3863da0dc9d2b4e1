"""Drills: the whole pipeline, once, on a recorded forecast, at a chosen instant.

A drill uses a throw-away SQLite database and the console standing in for
every channel (`StandIn`: one per channel name, so each row keeps the channel
it is meant for — twilio_sms, twilio_voice, broadcast, wecom … — and is
rendered for that channel's medium), so it can run on the production machine
without touching live data, phones, loudspeakers or groups.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select

from channels.base import Channel, ChannelDeclaration, OutgoingMessage, SendResult
from channels.console import ConsoleChannel
from channels.registry import DECLARATIONS
from dispatcher.runtime import drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.states import AlertState
from dispatcher.storage.models import Alert, Notification

#: What the drill's default channel is: what a county's daemon uses with Twilio.
DRILL_DEFAULT_CHANNEL: Final = "twilio_sms"


class StandIn:
    """The console, printing what the declared channel would send.

    All stand-ins share one console, so provider ids stay unique.
    """

    def __init__(
        self, declaration: ChannelDeclaration, console: ConsoleChannel, stream: TextIO
    ) -> None:
        self.name = declaration.name
        # the channel's facts, so failover and rendering behave as they would for
        # real; its lengths, but no rate: the drill's clock stands still
        self.declaration = declaration
        self.limits = replace(declaration.limits, per_second=None, per_minute=None)
        self._console = console
        self._stream = stream

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Print which channel it is for (and whom it mentions), then the message."""
        mentions = f", mentioning {', '.join(message.mentions)}" if message.mentions else ""
        self._stream.write(f"via {self.name} (drill: printed, not sent){mentions}\n")
        return await self._console.send(message)


def stand_ins(stream: TextIO) -> dict[str, Channel]:
    """The console standing in for every channel, by name (and as itself)."""
    console = ConsoleChannel(stream)
    channels: dict[str, Channel] = {"console": console}
    channels.update(
        {
            name: StandIn(declaration, console, stream)
            for name, declaration in DECLARATIONS.items()
            if not declaration.stand_in
        }
    )
    return channels


@dataclass(frozen=True)
class DrillResult:
    at: datetime
    alerts: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    console: str  # what the console channel printed

    def as_json(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "notifications": self.notifications}


async def run_drill(config_dir: Path, replay_file: Path, at: datetime) -> DrillResult:
    """Evaluate the recorded forecast at `at`, enqueue and deliver to the stand-ins."""
    console = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="yujing-drill-") as tmp:
        settings = Settings(
            _env_file=None,
            config_dir=config_dir,
            database_url=f"sqlite:///{tmp}/drill.db",
            feed="replay",
            replay_file=replay_file,
            replay_rebase=False,
            channel=DRILL_DEFAULT_CHANNEL,
            twilio_account_sid=None,
            twilio_auth_token=None,
        )
        runtime = open_runtime(
            settings,
            clock=lambda: at,
            console=console,
            wake=lambda: None,
            channels=stand_ins(console),
        )
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
                            # a village's or group's name; None for a person
                            "audience": n.recipient_name if n.person_id is None else None,
                            "mentions": list(n.mentions or []),
                            "status": n.status,
                            "body": n.body,
                        }
                        for n in notes
                    ],
                    console=console.getvalue(),
                )
        finally:
            await runtime.aclose()
