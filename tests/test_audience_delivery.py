"""A warning reaches a village's loudspeakers and a township's WeCom group, end to end.

Acceptance 3 of issue 11: the real runtime (pipeline, database on SQLite and
PostgreSQL, outbox and its worker, the real broadcast and WeCom channels) on
the example county at the README's instant; respx stands in only at the
network edge, for the broadcast gateway and WeCom's robot API.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import select

from channels.broadcast import load_broadcast_directory
from channels.wecom import WECOM_API
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.storage.models import Alert, Notification
from rules.config import load_yaml
from tests.processes import COUNTY
from tests.support import Clock, replay_settings

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai: orange cold wave
GATEWAY = "http://10.20.0.5:8080"
ZONE = "LL-MC-005"  # 穆村镇杜家山村地裂缝, orange at AT


def _robot_key(name: str) -> str:
    return f"key-{name}"


@pytest.fixture
async def rt(db_url: str) -> AsyncIterator[Runtime]:
    county = load_yaml(COUNTY / "county.yaml").data
    wecom = {k: _robot_key(k) for k, g in county["groups"].items() if g["channel"] == "wecom"}
    settings = replay_settings(
        COUNTY,
        db_url,
        broadcast_base_url=GATEWAY,
        broadcast_profile="ip-broadcast-v2",
        broadcast_secret=SecretStr("bc-token"),
        wecom_robots=SecretStr(json.dumps(wecom)),
    )
    runtime = open_runtime(settings, clock=Clock(AT), console=io.StringIO(), wake=lambda: None)
    yield runtime
    await runtime.aclose()


@pytest.fixture
def edge() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True) as router:
        router.post(f"{GATEWAY}/openapi/v2/broadcast/tts").respond(
            200, json={"code": 0, "msg": "ok", "data": {"taskId": "task-1"}}
        )
        router.post(f"{WECOM_API}/cgi-bin/webhook/send").respond(
            200, json={"errcode": 0, "errmsg": "ok"}
        )
        yield router


def _calls(edge: respx.MockRouter, url_start: str) -> list[httpx.Request]:
    return [call.request for call in edge.calls if str(call.request.url).startswith(url_start)]


def _row(rt: Runtime, channel: str, zone_id: str) -> Notification:
    with rt.sessions() as session:
        row = session.scalars(
            select(Notification)
            .join(Alert, Alert.id == Notification.alert_id)
            .where(Notification.channel == channel, Alert.zone_id == zone_id)
        ).one()
        session.expunge(row)
        return row


async def test_a_warning_plays_on_its_villages_loudspeakers_and_posts_to_its_township_group(
    rt: Runtime, edge: respx.MockRouter
) -> None:
    result = await rt.pipeline.poll()
    assert result.ok
    await drain(rt.worker)

    # the gateway plays the village's terminal groups the TTS text of the row
    played = _row(rt, "broadcast", ZONE)
    assert played.status == "sent" and played.address == "穆村镇/杜家山村"
    village = load_broadcast_directory(load_yaml(COUNTY / "broadcast.yaml").data).village(
        played.address
    )
    assert village is not None
    requests = [
        json.loads(r.content) for r in _calls(edge, GATEWAY) if played.address in r.content.decode()
    ]
    (request,) = requests
    assert request["groupIds"] == village.groups
    assert request["tts"]["text"] == played.body
    assert "http" not in played.body  # no link on a loudspeaker
    assert request["playCount"] == 3 and request["volume"] == 90  # broadcast.yaml defaults

    # the township's robot posts it, mentioning the zone's 防灾责任人 and 监测责任人
    posted = _row(rt, "wecom", ZONE)
    assert posted.status == "sent" and posted.address == "muchun-town"
    bodies: list[dict[str, Any]] = [
        json.loads(r.content)
        for r in _calls(edge, WECOM_API)
        if parse_qs(r.url.query.decode())["key"] == [_robot_key("muchun-town")]
    ]
    (post,) = [b for b in bodies if b["text"]["content"] == posted.body]
    assert post["text"]["mentioned_mobile_list"] == ["17000000132", "17000000133"]
    assert "http" not in posted.body  # never an acknowledgement link in a group


async def test_no_request_to_the_edge_carries_a_phone_number_as_an_address(
    rt: Runtime, edge: respx.MockRouter
) -> None:
    await rt.pipeline.poll()
    await drain(rt.worker)
    phones = {p.phone for p in rt.county.people.values()}
    for request in edge.calls:
        url = str(request.request.url)
        assert not any(phone in url for phone in phones)
    with rt.sessions() as session:
        rows = session.scalars(
            select(Notification).where(Notification.channel.in_(["broadcast", "wecom"]))
        ).all()
        assert rows and all(r.person_id is None and r.address not in phones for r in rows)
        # a robot takes 20 a minute, paced: posts beyond its pace wait, pending, for
        # a later round of the worker (this test's clock stands still)
        assert {r.status for r in rows} <= {"sent", "pending"}
        assert all(r.error_code is None for r in rows)
