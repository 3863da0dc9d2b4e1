"""What many test files need, defined once: clocks, the example county, an open alert,
a scripted channel.

Fixtures built on these (`county`, `db`) live in tests/conftest.py; this module
holds the plain classes and functions so test files can import them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from channels.base import (
    Addressing,
    ChannelDeclaration,
    ChannelLimits,
    Medium,
    OutgoingMessage,
    SendResult,
)
from channels.registry import DECLARATIONS
from dispatcher.alerts.events import update_events
from dispatcher.alerts.lifecycle import new_code
from dispatcher.alerts.reconcile import Transition, TransitionKind
from dispatcher.county import County, load_county
from dispatcher.escalation import AlertText, Escalation
from dispatcher.roster import Roster, load_roster
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert
from rules.types import Level

ROOT = Path(__file__).resolve().parents[1]
LIULIN = ROOT / "examples" / "liulin"  # the example county shipped with the project
COLDWAVE = LIULIN / "scenarios" / "coldwave-2026-01.json"  # its recorded cold front

# 2026-01-07 00:00 in Shanghai: duty day 01-06, 李慧敏 on duty, 薛文杰 leading
OPENED = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
ZONE = "LL-LL-001"  # 柳林镇城区龙门塔不稳定斜坡
WARNING = AlertText(
    "【柳林县自然资源局】寒潮黄色预警：柳林镇城区龙门塔不稳定斜坡。回复1确认（编码XXXX）",
    "柳林镇城区龙门塔不稳定斜坡寒潮黄色预警",
)


# --- clocks


class Clock:
    """A wall clock (aware datetimes) that only moves when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now += timedelta(seconds=seconds)


class MonotonicClock:
    """A monotonic clock (float seconds, like `time.monotonic`) that only moves when told."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now += seconds


# --- the example county


@cache
def example_county() -> County:
    """The example county (examples/liulin), parsed once per test session.

    Shared by every test that reads it: County and its zones and people are
    frozen, so no test can change what another sees.
    """
    return load_county(LIULIN)


@cache
def example_roster() -> Roster:
    """The example county's duty roster, parsed once per test session."""
    return load_roster(LIULIN, example_county())


# --- an open alert


def open_alert(
    sessions: sessionmaker[Session],
    escalation: Escalation,
    *,
    level: str = "yellow",
    code: str | None = None,
    hazard: str = "cold_wave",
    rule_id: str = "cma-cold-wave-signal",
    zone_id: str | None = ZONE,
    kind: str = "hazard",
    at: datetime = OPENED,
    previous: int | None = None,
) -> int:
    """An alert opened at `at` (superseding `previous`), its escalation started as the
    lifecycle starts it; returns its id. Without a `code` it gets a fresh one."""
    with sessions.begin() as session:
        alert = Alert(
            code=code or new_code(session),
            kind=kind,
            zone_id=zone_id,
            hazard=hazard,
            rule_id=rule_id,
            title="寒潮",
            level=level,
            state="firing",
            opened_at=at,
            updated_at=at,
            supersedes_id=previous,
        )
        session.add(alert)
        old = None
        if previous is not None:
            old = session.get_one(Alert, previous)
            old.state = "superseded"
        session.flush()
        escalation.start(
            session,
            alert,
            transition="new" if previous is None else "upgraded",
            text=WARNING,
            now=at,
            previous=old,
        )
        return alert.id


def open_event(
    sessions: sessionmaker[Session],
    escalation: Escalation,
    *,
    level: str = "yellow",
    zones: tuple[str, ...] = (ZONE,),
    hazard: str = "cold_wave",
    at: datetime = OPENED,
) -> tuple[int, list[int]]:
    """Zone alerts at `zones` (each as `open_alert` opens one) and their event, opened
    by the events code as a poll opens it; returns (event id, zone alert ids)."""
    members = [
        open_alert(sessions, escalation, level=level, zone_id=z, hazard=hazard, at=at)
        for z in zones
    ]
    with sessions.begin() as session:
        update_events(
            session,
            {},
            {},
            [Transition(TransitionKind.NEW, z, hazard, Level.parse(level)) for z in zones],
            now=at,
            county=escalation.county,
            hazard_name=lambda hazard: "寒潮",
            escalation=escalation,
            forecast_run_id=None,
        )
        event_id = session.scalars(
            select(Alert.id).where(Alert.kind == "event", Alert.hazard == hazard)
        ).one()
    return event_id, members


# --- a channel double


class ScriptedChannel:
    """A channel that records each message and answers with the next scripted result.

    When the script runs out it answers OK with provider id SM<n>.
    """

    def __init__(
        self, *results: SendResult, name: str = "sms", limits: ChannelLimits | None = None
    ) -> None:
        self.name = name
        self.limits = limits or ChannelLimits()
        # a double named after a real channel has its facts (failover, links read them);
        # any other name stands for an SMS to a phone
        self.declaration = DECLARATIONS.get(name) or ChannelDeclaration(
            name, name, Medium.SMS, Addressing.PHONE, carries_links=True
        )
        self.results = list(results)
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Record the message; answer with the next scripted result, else OK."""
        self.sent.append(message)
        if self.results:
            return self.results.pop(0)
        return SendResult.ok(f"SM{len(self.sent)}")


def replay_settings(config_dir: Path, database_url: str, **changes: Any) -> Settings:
    """Settings of a runtime that replays the recorded cold front and prints to the console."""
    values: dict[str, Any] = {
        "config_dir": config_dir,
        "database_url": database_url,
        "feed": "replay",
        "replay_file": COLDWAVE,
        "replay_rebase": False,
        "channel": "console",
    }
    return Settings(_env_file=None, **(values | changes))


#: The Twilio auth token and public address of runtimes whose webhooks tests sign.
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://yujing.example.gov.cn"


def webhook_settings(config_dir: Path, database_url: str, **changes: Any) -> Settings:
    """`replay_settings` with Twilio's auth token, a public address and a secret key:
    a runtime whose webhooks (SMS replies, status callbacks) tests post signed."""
    from pydantic import SecretStr

    return replay_settings(
        config_dir,
        database_url,
        **{
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "public_base_url": PUBLIC_URL,
            "secret_key": SecretStr("webhook-tests-secret-key-0123456789"),
            **changes,
        },
    )
