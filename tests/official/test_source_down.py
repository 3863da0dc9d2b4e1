"""An official-warning source that stops answering is itself an alert.

The CAP sources and QWeather's warnings are watched like a forecast feed: each
poll is recorded as an attempt, and a source silent for two of its poll
intervals raises the feed-down system alert to the duty officer ("官方预警信息
… 未能更新"), resolved when it answers again. Real runtime and database; the
sources are mocked with respx at the network edge.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import respx
from pydantic import SecretStr
from sqlalchemy import select

from dispatcher.official.watch import CAP_SOURCE, QWEATHER_SOURCE
from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert, Notification
from tests.official.test_qweather_relay import ALERTS, answer
from tests.qweather import API_HOST
from tests.support import Clock, replay_settings

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "examples" / "liulin"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
CAP_INDEX = "https://alerts.example.gov.cn/cap/index.atom"
EVERY = 300  # seconds between official polls
EMPTY_ATOM = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<feed xmlns="http://www.w3.org/2005/Atom"><title>CAP</title>'
    "<id>urn:test</id><updated>2026-01-06T16:00:00Z</updated></feed>"
)


def feed_alerts(rt: Runtime) -> dict[str, tuple[str, str]]:
    """The feed-down alerts by source: (state, title)."""
    with rt.sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.hazard == "feed_down")).all()
        return {a.rule_id.removeprefix("feed:"): (a.state, a.title) for a in rows}


def bodies(rt: Runtime) -> list[str]:
    with rt.sessions() as session:
        return list(session.scalars(select(Notification.body)).all())


async def poll_and_watch(rt: Runtime) -> None:
    """What the daemon's official job does: poll, then watch the sources."""
    assert rt.official is not None
    await rt.official.poll()
    rt.pipeline.check_official(rt.official.sources, timedelta(seconds=EVERY))


@respx.mock
async def test_official_sources_that_stop_answering_raise_the_feed_down_alert(
    db_url: str,
) -> None:
    settings = replay_settings(
        COUNTY,
        db_url,
        cap_sources=CAP_INDEX,
        cap_poll_seconds=EVERY,
        qweather_warnings=True,
        qweather_api_host=API_HOST,
        qweather_api_key=SecretStr("k"),
        feed_retries=0,
    )
    clock = Clock(AT)
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    assert rt.official is not None
    assert rt.official.sources == [CAP_SOURCE, QWEATHER_SOURCE]
    up = {"cap": True, "qweather": True}
    respx.get(CAP_INDEX).mock(
        side_effect=lambda _: (
            httpx.Response(200, text=EMPTY_ATOM) if up["cap"] else httpx.Response(503)
        )
    )
    respx.get(url__startswith=ALERTS).mock(
        side_effect=lambda _: (
            httpx.Response(200, json=answer())
            if up["qweather"]
            else httpx.Response(500, json={"error": {"status": 500}})
        )
    )
    try:
        # given both sources answering
        await poll_and_watch(rt)
        assert rt.official.errors == []
        assert feed_alerts(rt) == {}

        # when the CAP source stops answering: nothing for one interval…
        up["cap"] = False
        clock.now = AT + timedelta(seconds=EVERY)
        await poll_and_watch(rt)
        assert rt.official.errors
        assert feed_alerts(rt) == {}
        # …then, silent for two intervals, the alert — for it alone
        clock.now = AT + timedelta(seconds=3 * EVERY)
        await poll_and_watch(rt)
        assert feed_alerts(rt) == {CAP_SOURCE: ("firing", "官方预警信息中断")}
        told = [b for b in bodies(rt) if "官方预警信息" in b and CAP_SOURCE in b]
        assert told and all("未能更新" in b for b in told)

        # and when it answers again, the alert resolves and says so
        up["cap"] = True
        clock.now = AT + timedelta(seconds=4 * EVERY)
        await poll_and_watch(rt)
        assert feed_alerts(rt)[CAP_SOURCE][0] == "resolved"
        assert any("官方预警信息" in b and "恢复更新" in b for b in bodies(rt))

        # QWeather's warnings are watched the same way
        up["qweather"] = False
        clock.now = AT + timedelta(seconds=5 * EVERY)
        await poll_and_watch(rt)
        clock.now = AT + timedelta(seconds=7 * EVERY)
        await poll_and_watch(rt)
        assert feed_alerts(rt)[QWEATHER_SOURCE] == ("firing", "官方预警信息中断")
    finally:
        await rt.aclose()
