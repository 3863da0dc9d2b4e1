"""Drills: the whole pipeline, once, on a recorded forecast, at a chosen instant.

A drill uses a throw-away SQLite database and the console standing in for
every channel (`StandIn`: one per channel name, so each row keeps the channel
it is meant for — twilio_sms, twilio_voice, broadcast, wecom … — and is
rendered for that channel's medium), so it can run on the production machine
without touching live data, phones, loudspeakers or groups.

With `report`, the drill also renders the information report (信息报送) of its
period — the minute starting at the drill's instant — from that throw-away
database, marked 演练 (`yujing drill … --report FILE`).
"""

from __future__ import annotations

import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Channel, ChannelDeclaration, OutgoingMessage, SendResult
from channels.console import ConsoleChannel
from channels.registry import DECLARATIONS
from dispatcher.county import County
from dispatcher.runtime import drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage.models import Alert, Notification

#: The period a drill's report covers, from the drill's instant (its clock stands still).
DRILL_REPORT_PERIOD: Final = timedelta(minutes=1)

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
    alerts: list[dict[str, Any]]  # the zones' (and system) alerts
    notifications: list[dict[str, Any]]
    console: str  # what the console channel printed
    events: list[dict[str, Any]] = field(default_factory=list)  # what the bureau handles
    report: str | None = None  # the report of the drill's period (html or csv), when asked

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "alerts": self.alerts, "notifications": self.notifications}


async def run_drill(
    config_dir: Path, replay_file: Path, at: datetime, *, report: str | None = None
) -> DrillResult:
    """Evaluate the recorded forecast at `at`, enqueue and deliver to the stand-ins;
    with `report` ("html" or "csv"), render the report of the drill's period too."""
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
                firing = session.scalars(
                    select(Alert)
                    .where(Alert.state == AlertState.FIRING)
                    .order_by(Alert.zone_id, Alert.hazard)
                ).all()
                alerts = [a for a in firing if a.kind != AlertKind.EVENT]
                members: Counter[int] = Counter(a.event_id for a in alerts if a.event_id)
                codes = {a.id: a.code for a in session.scalars(select(Alert))}
                notes = session.scalars(select(Notification).order_by(Notification.id)).all()
                rendered = _report(session, runtime.county, at, report) if report else None
                return DrillResult(
                    at=at,
                    events=[
                        {
                            "code": e.code,
                            "hazard": e.hazard,
                            "title": e.title,
                            "level": e.level,
                            "zones": members[e.id],
                            "onset": e.onset.astimezone(tz).isoformat() if e.onset else None,
                        }
                        for e in sorted(
                            (a for a in firing if a.kind == AlertKind.EVENT), key=lambda e: e.hazard
                        )
                    ],
                    alerts=[
                        {
                            "code": a.code,
                            "event": codes.get(a.event_id) if a.event_id else None,
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
                    report=rendered,
                )
        finally:
            await runtime.aclose()


def _report(session: Session, county: County, at: datetime, fmt: str) -> str:
    from dispatcher.report import build_report, render_csv, render_html

    built = build_report(
        session,
        start=at,
        end=at + DRILL_REPORT_PERIOD,
        timezone=county.timezone,
        now=at,
        county=county,
        drill=True,
    )
    return render_csv(built) if fmt == "csv" else render_html(built)
