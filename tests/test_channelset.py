"""Channels are built from settings: configured ones exist, secrets never leak."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from dispatcher.channelset import build_channels
from dispatcher.settings import Settings

COUNTY = Path(__file__).resolve().parents[1] / "examples" / "liulin"
SECRET = "SECdo-not-print-me"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, config_dir=COUNTY, **values)  # type: ignore[arg-type]


async def test_only_the_console_exists_without_provider_settings() -> None:
    async with httpx.AsyncClient() as http:
        assert set(build_channels(settings(), http)) == {"console"}


async def test_every_configured_channel_is_built() -> None:
    async with httpx.AsyncClient() as http:
        channels = build_channels(
            settings(
                twilio_account_sid="AC" + "1" * 32,
                twilio_auth_token="token",
                twilio_from_number="+15005550006",
                public_base_url="https://yujing.example.gov.cn",
                wecom_robots=json.dumps({"duty-room": "key-1"}),
                dingtalk_robots=json.dumps({"duty": {"access_token": "t", "secret": SECRET}}),
                feishu_bots=json.dumps({"duty": {"hook_id": "h", "secret": SECRET}}),
                webhook_targets=json.dumps(
                    {"gis": {"url": "https://gis.example.gov.cn/hook", "secret": SECRET}}
                ),
                broadcast_base_url="http://broadcast.example.gov.cn",
                broadcast_secret=SECRET,
            ),
            http,
        )
    assert set(channels) == {
        "console", "twilio_sms", "twilio_voice", "wecom", "dingtalk", "feishu", "webhook",
        "broadcast",
    }  # fmt: skip
    assert all(SECRET not in repr(c) for c in channels.values())


async def test_voice_needs_a_public_url_for_its_keypress_acknowledgement() -> None:
    async with httpx.AsyncClient() as http:
        channels = build_channels(
            settings(
                twilio_account_sid="AC" + "1" * 32,
                twilio_auth_token="token",
                twilio_from_number="+15005550006",
            ),
            http,
        )
    assert "twilio_voice" not in channels and "twilio_sms" in channels


def test_malformed_robot_json_is_refused_with_the_settings_but_not_shown() -> None:
    # refused when the settings load (tests/test_settings_json.py), before any channel
    with pytest.raises(ValidationError) as error:
        settings(dingtalk_robots='{"duty": {"access_token": "' + SECRET)
    (problem,) = error.value.errors(include_url=False)
    assert problem["loc"] == ("dingtalk_robots",)
    assert problem["msg"].startswith("not valid JSON")
    assert SECRET not in str(error.value)
