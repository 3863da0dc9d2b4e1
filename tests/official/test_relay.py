"""Official warnings relayed end to end: CAP files → record → rules → zone alerts → messages.

The example county with the `official-signals` library as its only rules; the
CAP source is a directory the test drops messages into, as a provider would
publish them. Real database, real runtime; nothing mocked.
"""

from __future__ import annotations

import io
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.drill import run_drill
from dispatcher.feeds.chain import FeedChain, SourceAttempt
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert, ForecastRun, Notification
from tests.official.data import ALERT, BOMB, CANCEL, UPDATE
from tests.support import Clock, replay_settings

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Liulin
# escalation.yaml names freezing rain: its forecast rule stays (it is quiet in the recording);
# cold waves come from the official signal alone, so it may end at once (no hold)
RULES = """\
include: [official-signals, freezing-rain]
override:
  - {id: official-cold-wave, hold: 0s, cooldown: 0s}
"""


@pytest.fixture
def county_dir(tmp_path: Path) -> Path:
    """The example county whose rules relay the official signals (and freezing rain)."""
    target = tmp_path / "county"
    shutil.copytree(COUNTY, target, ignore=shutil.ignore_patterns("rules", "scenarios"))
    (target / "rules").mkdir()
    (target / "rules" / "official.yaml").write_text(RULES, "utf-8")
    return target


def runtime(county_dir: Path, inbox: Path, db_url: str, clock: Clock) -> Runtime:
    settings = replay_settings(county_dir, db_url, cap_sources=str(inbox))
    return open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)


def firing(rt: Runtime) -> Counter[tuple[str, str, str]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert).where(Alert.state == "firing", Alert.kind == "hazard")
        ).all()
        return Counter((a.hazard, a.level, a.authority) for a in rows)


async def test_an_official_signal_warns_updates_and_ends_with_its_issuer_named(
    county_dir: Path, tmp_path: Path, db_url: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = Clock(AT)
    rt = runtime(county_dir, inbox, db_url, clock)
    assert rt.official is not None
    try:
        # Alert: a yellow cold-wave signal for Liulin (geocode 141125) → every zone yellow
        shutil.copy(ALERT, inbox)
        (receipt,) = await rt.official.poll()
        assert receipt.state == "in_force"
        result = await rt.pipeline.poll()
        assert result.ok
        assert firing(rt) == {("cold_wave", "yellow", "吕梁市气象台"): 40}
        with rt.sessions() as session:
            bodies = session.scalars(select(Notification.body)).all()
        assert any(
            body.startswith("【柳林县自然资源局】吕梁市气象台发布寒潮黄色预警：") for body in bodies
        )

        # Update, eight hours later: orange everywhere
        clock.now = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
        shutil.copy(UPDATE, inbox)
        assert [r.state for r in await rt.official.poll()] == ["in_force"]
        await rt.pipeline.poll()
        assert firing(rt) == {("cold_wave", "orange", "吕梁市气象台"): 40}

        # Cancel: the warning ends at once (hold 0s)
        clock.now = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
        shutil.copy(CANCEL, inbox)
        assert [r.state for r in await rt.official.poll()] == ["cancel"]
        await rt.pipeline.poll()
        assert firing(rt) == {}
        with rt.sessions() as session:
            resolved = session.scalars(
                select(Alert).where(Alert.kind == "hazard", Alert.state == "resolved")
            ).all()
        assert {a.level for a in resolved} == {"orange"} and len(resolved) == 40
    finally:
        await rt.aclose()


async def test_a_signal_that_has_expired_by_the_poll_warns_nobody(
    county_dir: Path, tmp_path: Path, db_url: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = Clock(AT)
    rt = runtime(county_dir, inbox, db_url, clock)
    assert rt.official is not None
    try:
        shutil.copy(ALERT, inbox)
        await rt.official.poll()
        clock.now = datetime(2026, 1, 8, 0, 0, tzinfo=UTC)  # its expiry, 08:00 local
        await rt.pipeline.poll()
        assert firing(rt) == {}
    finally:
        await rt.aclose()


async def test_a_drill_receives_recorded_official_warnings_beside_the_forecast(
    tmp_path: Path,
) -> None:
    recorded = tmp_path / "cap"
    recorded.mkdir()
    shutil.copy(ALERT, recorded)
    (recorded / "0-bomb.xml").write_bytes(BOMB)

    result = await run_drill(COUNTY, COLDWAVE, AT, official=recorded)

    relayed = Counter(
        (a["hazard"], a["level"], a["rule_id"], a.get("authority")) for a in result.alerts
    )
    # the forecast's own cold wave is orange at 10 zones: the higher level wins there
    assert relayed[("cold_wave", "yellow", "official-cold-wave", "吕梁市气象台")] == 30
    assert relayed[("cold_wave", "orange", "gbt21987-cold-wave", None)] == 10
    assert "official warning 14110041600000_20260106233000: in_force" in result.notes
    assert any(
        note.startswith("official warning ?: refused: declares the entity 'lol'")
        for note in result.notes
    )


async def test_rules_on_official_warnings_alone_poll_without_a_forecast(
    tmp_path: Path, db_url: str
) -> None:
    county = tmp_path / "county"
    shutil.copytree(COUNTY, county, ignore=shutil.ignore_patterns("rules", "escalation.yaml"))
    (county / "rules").mkdir()
    (county / "rules" / "official.yaml").write_text("include: [official-signals]\n", "utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ALERT, inbox)
    # a recording that does not exist: reading it would fail the poll
    settings = replay_settings(
        county, db_url, cap_sources=str(inbox), replay_file=tmp_path / "absent.json"
    )
    rt = open_runtime(settings, clock=Clock(AT), console=io.StringIO(), wake=lambda: None)
    assert rt.official is not None
    try:
        await rt.official.poll()
        result = await rt.pipeline.poll()
        assert result.ok, result.error
        assert firing(rt) == {("cold_wave", "yellow", "吕梁市气象台"): 40}
    finally:
        await rt.aclose()


async def test_a_poll_on_official_warnings_alone_records_no_forecast_source_of_a_chain(
    tmp_path: Path, db_url: str
) -> None:
    # given a chain of feeds whose sources answered a fetch earlier (the rules read a
    # forecast then), and rules that now read official warnings alone
    county = tmp_path / "county"
    shutil.copytree(COUNTY, county, ignore=shutil.ignore_patterns("rules", "escalation.yaml"))
    (county / "rules").mkdir()
    (county / "rules" / "official.yaml").write_text("include: [official-signals]\n", "utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ALERT, inbox)
    settings = replay_settings(county, db_url, cap_sources=str(inbox), feeds="replay,openmeteo")
    rt = open_runtime(settings, clock=Clock(AT), console=io.StringIO(), wake=lambda: None)
    assert isinstance(rt.feed, FeedChain) and rt.official is not None
    sources = [feed.source for feed in rt.feed.feeds]
    rt.feed.last_attempts = (SourceAttempt(sources[0], True, ("temperature_2m",), None, 1, 1),)
    try:
        await rt.official.poll()
        # when it polls: nothing is fetched
        result = await rt.pipeline.poll()
        assert result.ok, result.error
        # then no source of the chain is said to have answered this poll
        with rt.sessions() as session:
            runs = session.scalars(select(ForecastRun.source)).all()
        assert not set(runs) & set(sources)
        assert firing(rt) == {("cold_wave", "yellow", "吕梁市气象台"): 40}
    finally:
        await rt.aclose()
