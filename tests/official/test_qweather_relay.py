"""QWeather's official warnings relayed end to end: QWeather's answer → record → rules → alerts.

The example county with the `official-signals` library; QWeather's alert API is
mocked with respx at the network edge, one answer per forecast point. Real
runtime and database.
"""

from __future__ import annotations

import io
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import select

from dispatcher.runtime import Runtime, open_runtime
from dispatcher.storage.models import Alert, AuditEvent, Notification, ReceivedWarning
from tests.official.test_relay import RULES
from tests.qweather import API_HOST
from tests.support import Clock, replay_settings

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "examples" / "liulin"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Liulin
ALERTS = f"https://{API_HOST}/weatheralert/v1/current/"

COLD_WAVE: dict[str, Any] = {
    "id": "202601062330105837988676",
    "senderName": "柳林县气象台",
    "issuedTime": "2026-01-06T23:30+08:00",
    "messageType": {"code": "new", "supersedes": []},
    "eventType": {"name": "寒潮", "code": "1004"},
    "urgency": None,
    "severity": "moderate",
    "certainty": None,
    "icon": "1004",
    "color": {"code": "yellow", "red": 255, "green": 255, "blue": 0, "alpha": 1},
    "effectiveTime": "2026-01-06T23:30+08:00",
    "onsetTime": "2026-01-06T23:30+08:00",
    "expiredTime": "2026-01-08T08:00+08:00",
    "headline": "柳林县气象台发布寒潮黄色预警信号",
    "description": "预计未来48小时内我县气温将下降8℃以上……",
}


def answer(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"tag": "ec71f8", "zeroResult": not alerts}, "alerts": list(alerts)}


@pytest.fixture
def county_dir(tmp_path: Path) -> Path:
    target = tmp_path / "county"
    shutil.copytree(COUNTY, target, ignore=shutil.ignore_patterns("rules", "scenarios"))
    (target / "rules").mkdir()
    (target / "rules" / "official.yaml").write_text(RULES, "utf-8")
    return target


def firing(rt: Runtime) -> Counter[tuple[str, str, str]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(Alert).where(Alert.state == "firing", Alert.kind == "hazard")
        ).all()
        return Counter((a.hazard, a.level, a.authority) for a in rows)


def failures_audited(rt: Runtime) -> int:
    with rt.sessions() as session:
        return len(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "official.source_failed")
            ).all()
        )


@respx.mock
async def test_a_qweather_warning_at_a_point_warns_its_zones_and_ends_when_it_is_gone(
    county_dir: Path, db_url: str
) -> None:
    settings = replay_settings(
        county_dir,
        db_url,
        qweather_warnings=True,
        qweather_api_host=API_HOST,
        qweather_api_key=SecretStr("k"),
        feed_retries=0,
    )
    clock = Clock(AT)
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    assert rt.official is not None and rt.official.qweather is not None
    point_of = rt.official.qweather.point_of
    point = max(rt.points, key=lambda p: sum(1 for q in point_of.values() if q == p.id))
    zones_there = {zone for zone, p in point_of.items() if p == point.id}
    assert 0 < len(zones_there) < len(point_of)
    where = f"{point.latitude:.2f}/{point.longitude:.2f}"
    state = {"at_point": answer(COLD_WAVE), "status": 200}

    def reply(request: httpx.Request) -> httpx.Response:
        if state["status"] != 200:
            return httpx.Response(int(str(state["status"])), json={"error": {"status": 500}})
        here = request.url.path.endswith(where)
        return httpx.Response(200, json=state["at_point"] if here else answer())

    route = respx.get(url__startswith=ALERTS).mock(side_effect=reply)
    try:
        # a yellow cold-wave signal at the point → the zones there, naming the issuer
        (receipt,) = await rt.official.poll()
        assert receipt.state == "in_force"
        assert route.call_count == len(rt.points)
        assert (await rt.pipeline.poll()).ok
        assert firing(rt) == {("cold_wave", "yellow", "柳林县气象台"): len(zones_there)}
        with rt.sessions() as session:
            fired = session.scalars(
                select(Alert.zone_id).where(Alert.state == "firing", Alert.kind == "hazard")
            ).all()
            bodies = session.scalars(select(Notification.body)).all()
        assert set(fired) == zones_there
        assert any("柳林县气象台发布寒潮黄色预警" in body for body in bodies)

        # the same answer again: nothing new recorded
        assert await rt.official.poll() == []

        # QWeather fails: nothing changes, the failure is reported once per episode
        state["status"] = 500
        assert await rt.official.poll() == []
        assert rt.official.errors and "qweather" in rt.official.errors[0]
        assert await rt.official.poll() == []
        assert failures_audited(rt) == 1
        await rt.pipeline.poll()
        assert firing(rt) == {("cold_wave", "yellow", "柳林县气象台"): len(zones_there)}
        with rt.sessions() as session:
            assert session.scalars(select(ReceivedWarning.state)).all() == ["in_force"]

        # the warning is no longer in QWeather's answer: it ends, like a CAP Cancel
        state["status"], state["at_point"] = 200, answer()
        clock.now = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
        (ended,) = await rt.official.poll()
        assert ended.state == "cancelled" and ended.changes_warnings
        assert rt.official.errors == []
        await rt.pipeline.poll()
        assert firing(rt) == {}
        with rt.sessions() as session:
            audited = session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("official.%"))
                .order_by(AuditEvent.id)
            ).all()
        assert audited == ["official.received", "official.source_failed", "official.ended"]
    finally:
        await rt.aclose()


@respx.mock
async def test_an_update_supersedes_and_a_poll_with_one_point_failing_applies_nothing(
    county_dir: Path, db_url: str
) -> None:
    settings = replay_settings(
        county_dir,
        db_url,
        qweather_warnings=True,
        qweather_api_host=API_HOST,
        qweather_api_key=SecretStr("k"),
        feed_retries=0,
    )
    clock = Clock(AT)
    rt = open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)
    assert rt.official is not None
    first, last = rt.points[0], rt.points[-1]
    orange = COLD_WAVE | {
        "id": "202601070800105837988677",
        "messageType": {"code": "update", "supersedes": [COLD_WAVE["id"]]},
        "color": {"code": "orange"},
    }
    answers: dict[str, httpx.Response] = {}

    def reply(request: httpx.Request) -> httpx.Response:
        for point in (first, last):
            if request.url.path.endswith(f"{point.latitude:.2f}/{point.longitude:.2f}"):
                return answers.get(point.id, httpx.Response(200, json=answer()))
        return httpx.Response(200, json=answer())

    respx.get(url__startswith=ALERTS).mock(side_effect=reply)
    try:
        answers[first.id] = httpx.Response(200, json=answer(COLD_WAVE))
        assert [r.state for r in await rt.official.poll()] == ["in_force"]

        # the update comes with another point failing: nothing is applied
        answers[first.id] = httpx.Response(200, json=answer(orange))
        answers[last.id] = httpx.Response(503)
        assert await rt.official.poll() == []
        with rt.sessions() as session:
            rows = session.scalars(select(ReceivedWarning).order_by(ReceivedWarning.id)).all()
            assert [(r.identifier, r.state) for r in rows] == [(COLD_WAVE["id"], "in_force")]

        # every point answers: the update is in force, the yellow superseded by it
        del answers[last.id]
        assert sorted(r.state for r in await rt.official.poll()) == ["in_force", "superseded"]
        with rt.sessions() as session:
            rows = session.scalars(select(ReceivedWarning).order_by(ReceivedWarning.id)).all()
            assert [(r.identifier, r.state) for r in rows] == [
                (COLD_WAVE["id"], "superseded"),
                (orange["id"], "in_force"),
            ]
            assert rows[0].ended_by_id == rows[1].id
        await rt.pipeline.poll()
        assert set(firing(rt)) == {("cold_wave", "orange", "柳林县气象台")}
    finally:
        await rt.aclose()
