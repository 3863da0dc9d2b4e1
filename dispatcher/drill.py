"""Drills: the whole pipeline, once, on a recorded forecast, at a chosen instant.

A drill uses a throw-away SQLite database and the console standing in for
every channel (`StandIn`: one per channel name, so each row keeps the channel
it is meant for — twilio_sms, twilio_voice, broadcast, wecom … — and is
rendered for that channel's medium), so it can run on the production machine
without touching live data, phones, loudspeakers or groups.

With `report`, the drill also renders the information report (信息报送) of its
period — the minute starting at the drill's instant — from that throw-away
database, marked 演练 (`yujing drill … --report FILE`).

A drill tells the truth about its recording (`check_recording`): one it cannot
read, that lacks a variable the rules read, or that does not hold the instant
is a `DrillError` naming the file and what is wrong, never "no alert". Without
an instant it chooses one the recording covers and says so; (zone, hazard)
pairs the rules could not decide for missing data are counted and explained.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Channel, ChannelDeclaration, OutgoingMessage, SendResult
from channels.console import ConsoleChannel
from channels.registry import DECLARATIONS
from dispatcher.configwatch import load_county_config
from dispatcher.county import County
from dispatcher.feeds.base import Feed, FeedError
from dispatcher.feeds.chain import FeedChain
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.rulewatch import load_watched
from dispatcher.runtime import drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage.models import Alert, Notification
from dispatcher.undecided import Undecided, explain, reach, rule_variables
from rules.evaluate import evaluate
from rules.ruleset import RuleSet
from rules.types import ForecastBatch, ZoneSpec

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


class DrillError(ValueError):
    """The recording cannot drive a drill: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Recording:
    """What `check_recording` found: the instant to drill at, and what to say about it."""

    at: datetime
    notes: list[str]  # the chosen instant, hours the rules read that are not recorded
    undecided: list[Undecided]
    sources: dict[str, str] = field(default_factory=dict)  # variable → the recording serving it


#: A chain of recordings without an instant: every recorded hour counts as "from now on".
_BEFORE_ANY_RECORDING: Final = datetime(1970, 1, 1, tzinfo=UTC)


def replay_feed(
    replay_files: Sequence[Path], settings: Settings, at: Callable[[], datetime]
) -> Feed:
    """The recording as a feed; several recordings as a chain in the order given
    (the first serves what it holds, the next what it lacks: docs/feeds.md).

    `at` is the drill's instant, from which a chain judges what a recording holds.
    """
    feeds = [
        ReplayFeed(
            path,
            issued_at=settings.replay_at,
            past_days=settings.openmeteo_past_days,
            max_distance_deg=settings.point_resolution_deg,
        )
        for path in replay_files
    ]
    if len(feeds) == 1:
        return feeds[0]
    try:
        return FeedChain(feeds, clock=at)
    except ValueError as error:
        raise DrillError(f"--replay: {error} (give recordings with different file names)") from None


def served_by(batch: ForecastBatch) -> dict[str, str]:
    """Which source served each variable of a batch."""
    return dict(batch.sources) or {name: batch.source for name in sorted(batch.variables)}


def describe_sources(sources: Mapping[str, str]) -> list[str]:
    """One line per source: the variables it served."""
    by_source: dict[str, list[str]] = {}
    for name, source in sorted(sources.items()):
        by_source.setdefault(source, []).append(name)
    return [f"forecast from {source}: {', '.join(names)}" for source, names in by_source.items()]


async def check_recording(
    config_dir: Path, replay_file: Path | Sequence[Path], at: datetime | None, settings: Settings
) -> Recording:
    """Read the recording as the drill will, and check it can answer at `at`.

    Raises `DrillError` when it cannot be read, lacks a variable the rules read,
    substitutes a recorded location beyond the point resolution, or does not
    hold the instant. Without `at`, chooses the recording's first hour plus the
    hours the rules read before an instant (capped at its last hour).
    """
    files = [replay_file] if isinstance(replay_file, Path) else list(replay_file)
    replay_file = files[0] if len(files) == 1 else Path(" + ".join(map(str, files)))
    ruleset, _ = load_watched(config_dir / "rules")
    config = load_county_config(config_dir, ruleset, settings.point_resolution_deg)
    feed = replay_feed(files, settings, lambda: at or _BEFORE_ANY_RECORDING)
    try:
        batch = await feed.fetch(config.points, sorted(ruleset.variables))
    except FeedError as error:
        raise DrillError(_explained(replay_file, error.problems, ruleset, config.zones)) from None
    # the daemon would evaluate what is there; a drill of a recording lacking data
    # would rehearse blind hazards as quiet ones: refused, every problem said
    if batch.problems:
        raise DrillError(_explained(replay_file, batch.problems, ruleset, config.zones))
    tz = ZoneInfo(config.county.timezone)
    first, last = _utc(batch.times[0]), _utc(batch.times[-1])
    before, after = reach(ruleset)
    recorded = f"{_local(first, tz)} – {_local(last, tz)} ({config.county.timezone})"
    notes: list[str] = []
    if at is None:
        at = min(first + timedelta(hours=before), last)
        notes.append(
            f"no --at: drilling at {_local(at, tz)} ({config.county.timezone}), the recording's "
            f"first hour {_local(first, tz)} plus the {before} h the rules read before an instant"
        )
    hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start, stop = hour - timedelta(hours=before), hour + timedelta(hours=after - 1)
    needed = f"{_local(start, tz)} – {_local(stop, tz)}"
    if not first <= hour <= last:
        raise DrillError(
            f"{replay_file}: does not cover the instant {_local(at, tz)}: recorded {recorded}; "
            f"the rules read {needed} ({before} h before, {after} h from it)"
        )
    if start < first or stop > last:
        notes.append(
            f"{replay_file}: the rules read {needed} ({before} h before, {after} h from the "
            f"instant), recorded {recorded}: the hours outside are unknown"
        )
    assessments = evaluate(ruleset, batch, config.zones, at, config.county.timezone)
    undecided = explain(ruleset, batch, assessments, config.zones, at, config.county.timezone)
    return Recording(at=at, notes=notes, undecided=undecided, sources=served_by(batch))


def _explained(
    replay_file: Path, problems: Sequence[str], ruleset: RuleSet, zones: Sequence[ZoneSpec]
) -> str:
    """The feed's problems as one line naming the file, with the rules or zones concerned."""
    said = []
    for problem in problems:
        reason = problem.removeprefix(f"{replay_file.name}: ")
        if missing := re.search(r"hourly(?:_units)?\.(\w+) is", reason):
            name = missing.group(1)
            readers = sorted({r.id for r in ruleset.rules if name in rule_variables(r)})
            if readers:
                reason += f" (the rules read it: {', '.join(readers)})"
        if point := re.search(r"of point (\S+) ", reason):
            named = [zone.id for zone in zones if zone.point_id == point.group(1)]
            if named:
                shown = ", ".join(named[:5]) + (
                    f" … ({len(named)} zones)" if len(named) > 5 else ""
                )
                reason += f"; zones at that point: {shown}"
        said.append(reason)
    return f"{replay_file}: {'; '.join(said)}"


def _utc(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)


def _local(when: datetime, tz: ZoneInfo) -> str:
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class DrillResult:
    at: datetime
    alerts: list[dict[str, Any]]  # the zones' (and system) alerts
    notifications: list[dict[str, Any]]
    console: str  # what the console channel printed
    events: list[dict[str, Any]] = field(default_factory=list)  # what the bureau handles
    report: str | None = None  # the report of the drill's period (html or csv), when asked
    notes: list[str] = field(default_factory=list)  # the chosen instant, unrecorded hours
    undecided: list[Undecided] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # variable → the recording serving it

    def as_json(self) -> dict[str, Any]:
        """What `--json` prints (the notes and the undecided go to stderr, as lines)."""
        return {"events": self.events, "alerts": self.alerts, "notifications": self.notifications}


async def run_drill(
    config_dir: Path,
    replay_file: Path | Sequence[Path],
    at: datetime | None = None,
    *,
    report: str | None = None,
    official: Path | None = None,
) -> DrillResult:
    """Evaluate the recorded forecast at `at`, enqueue and deliver to the stand-ins;
    with `report` ("html" or "csv"), render the report of the drill's period too.
    With `official` (a directory or file of recorded CAP messages, or an index
    file), those official warnings are received first, as the daemon would
    receive them at `at`; each message's fate is a note.

    Several recordings are a feed chain in the order given (`sources` says which
    served what). Raises `DrillError` when the recording cannot answer
    (`check_recording`); without `at`, drills at an instant the recording covers
    (in `notes`).
    """
    files = [replay_file] if isinstance(replay_file, Path) else list(replay_file)
    replay_file = files[0]
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
            cap_sources=str(official) if official is not None else "",
        )
        checked = await check_recording(config_dir, files, at, settings)
        when = checked.at
        runtime = open_runtime(
            settings,
            clock=lambda: when,
            console=console,
            wake=lambda: None,
            channels=stand_ins(console),
            feed=replay_feed(files, settings, lambda: when) if len(files) > 1 else None,
        )
        received: list[str] = []
        try:
            if runtime.official is not None:
                for receipt in await runtime.official.poll():
                    why = f": {receipt.reason}" if receipt.reason else ""
                    received.append(
                        f"official warning {receipt.identifier or '?'}: {receipt.state}{why}"
                    )
                received.extend(f"official warnings: {e}" for e in runtime.official.errors)
            polled = await runtime.pipeline.poll()
            if not polled.ok:
                raise DrillError(f"{replay_file}: {polled.error}")
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
                rendered = _report(session, runtime.county, when, report) if report else None
                return DrillResult(
                    at=when,
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
                            # who issued the official warning it relays; only then
                            **({"authority": a.authority} if a.authority else {}),
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
                    notes=[*checked.notes, *received],
                    undecided=checked.undecided,
                    sources=checked.sources,
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
