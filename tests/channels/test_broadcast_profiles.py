"""The broadcast profiles shipped with the package and the example county's terminals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from ruamel.yaml import YAML

from channels.base import Outcome, OutgoingMessage
from channels.broadcast import (
    BUILTIN_PROFILES,
    BroadcastChannel,
    builtin_profile_path,
    load_broadcast_directory,
    load_broadcast_profile,
    village_address,
)

LIULIN = Path(__file__).resolve().parents[2] / "examples" / "liulin"
GATEWAY = "http://10.20.0.5:8080"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("vendor", BUILTIN_PROFILES)
def test_every_shipped_profile_is_valid_and_named_after_its_file(vendor: str) -> None:
    path = builtin_profile_path(vendor)

    profile = load_broadcast_profile(load_yaml(path))

    assert profile.vendor == vendor == path.stem


def test_the_shipped_profiles_are_all_the_yaml_files_in_the_folder() -> None:
    folder = builtin_profile_path("generic").parent

    assert sorted(p.stem for p in folder.glob("*.yaml")) == sorted(BUILTIN_PROFILES)


def test_asking_for_a_profile_that_is_not_shipped_names_the_ones_that_are() -> None:
    with pytest.raises(ValueError, match="generic, ip-broadcast-v2"):
        builtin_profile_path("acme")


def test_the_example_county_maps_every_zones_village_to_terminals() -> None:
    zones = load_yaml(LIULIN / "zones.yaml")["zones"]
    directory = load_broadcast_directory(load_yaml(LIULIN / "broadcast.yaml"))

    addresses = [village_address(z["township"], z["village"]) for z in zones]

    assert directory.missing(addresses) == []
    assert len(directory.villages) == len(set(addresses))


async def test_the_worked_vendor_example_plays_a_warning_in_an_example_village() -> None:
    profile = load_broadcast_profile(load_yaml(builtin_profile_path("ip-broadcast-v2")))
    directory = load_broadcast_directory(load_yaml(LIULIN / "broadcast.yaml"))
    message = OutgoingMessage("alert:9:new:village:broadcast", "三交镇/三交村", "寒潮预警测试。")

    with respx.mock(base_url=GATEWAY) as gateway:
        route = gateway.post("/openapi/v2/broadcast/tts").respond(
            200, json={"code": 0, "msg": "success", "data": {"taskId": "T20260107000123"}}
        )
        async with httpx.AsyncClient() as http:
            channel = BroadcastChannel(
                profile=profile,
                directory=directory,
                base_url=GATEWAY,
                http=http,
                secret=SecretStr("token-1"),
            )
            result = await channel.send(message)

    request = route.calls.last.request
    sent = json.loads(request.content)
    assert (result.outcome, result.provider_id) == (Outcome.OK, "T20260107000123")
    assert request.headers["X-Access-Token"] == "token-1"
    assert sent["groupIds"] == ["G-SJ-01"]
    assert sent["tts"]["text"] == "寒潮预警测试。"
    assert (sent["playCount"], sent["volume"]) == (3, 90)
