"""Build the configured channels from settings (the console is always there).

Each channel is configured by its own `YUJING_*` settings; a channel whose
settings are absent is simply not built. Robot and target maps are JSON in a
secret setting, e.g. `YUJING_DINGTALK_ROBOTS={"duty-room": {"access_token":
"…", "secret": "SEC…"}}`; the key (`duty-room`) is the address that routing
and escalation policies use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import httpx
from pydantic import SecretStr, ValidationError

from channels.base import Channel
from channels.broadcast import (
    BroadcastChannel,
    builtin_profile_path,
    load_broadcast_directory,
    load_broadcast_profile,
)
from channels.console import ConsoleChannel
from channels.dingtalk import DingTalkChannel, DingTalkRobot
from channels.feishu import FeishuBot, FeishuChannel
from channels.twilio_sms import TwilioSmsChannel
from channels.twilio_voice import TwilioVoiceChannel
from channels.webhook import WebhookChannel, WebhookTarget
from channels.wecom import WeComChannel
from dispatcher.settings import Settings
from dispatcher.settingsjson import (
    DingTalkRobotConfig,
    FeishuBotConfig,
    WebhookTargetConfig,
    json_setting,
)
from rules.config import ConfigError, load_yaml, problems_from_validation


def build_channels(
    settings: Settings, http: httpx.AsyncClient, console: TextIO | None = None
) -> dict[str, Channel]:
    """Every channel the settings configure, by name (each instance's own `name`)."""
    built: list[Channel] = [ConsoleChannel(console)]
    if settings.twilio_configured:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        built.append(
            TwilioSmsChannel(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token,
                from_number=settings.twilio_from_number,
                messaging_service_sid=settings.twilio_messaging_service_sid,
                http=http,
                api_base=settings.twilio_api_base,
            )
        )
        voice_from = settings.twilio_voice_from_number or settings.twilio_from_number
        if voice_from and settings.public_base_url:
            built.append(
                TwilioVoiceChannel(
                    account_sid=settings.twilio_account_sid,
                    auth_token=settings.twilio_auth_token,
                    from_number=voice_from,
                    public_base_url=settings.public_base_url,
                    http=http,
                    api_base=settings.twilio_api_base,
                    voice=settings.twilio_voice_name,
                    language=settings.twilio_voice_language,
                )
            )
    elif settings.default_channel == "twilio_sms":
        raise ValueError(
            "YUJING_CHANNEL=twilio_sms but Twilio is not configured: set "
            "YUJING_TWILIO_ACCOUNT_SID, YUJING_TWILIO_AUTH_TOKEN and "
            "YUJING_TWILIO_FROM_NUMBER (or YUJING_TWILIO_MESSAGING_SERVICE_SID)"
        )

    # the settings checked these maps when they loaded (dispatcher.settingsjson)
    wecom: dict[str, SecretStr] = json_setting("wecom_robots", settings.wecom_robots)
    if wecom:
        built.append(WeComChannel(robots=wecom, http=http))
    dingtalk: dict[str, DingTalkRobotConfig] = json_setting(
        "dingtalk_robots", settings.dingtalk_robots
    )
    if dingtalk:
        robots = {k: DingTalkRobot(v.access_token, v.secret) for k, v in dingtalk.items()}
        built.append(DingTalkChannel(robots=robots, http=http))
    feishu: dict[str, FeishuBotConfig] = json_setting("feishu_bots", settings.feishu_bots)
    if feishu:
        bots = {k: FeishuBot(v.hook_id, v.secret) for k, v in feishu.items()}
        built.append(FeishuChannel(bots=bots, http=http))
    targets: dict[str, WebhookTargetConfig] = json_setting(
        "webhook_targets", settings.webhook_targets
    )
    if targets:
        receivers = {k: WebhookTarget(v.url, v.secret) for k, v in targets.items()}
        built.append(WebhookChannel(targets=receivers, http=http))
    if settings.broadcast_base_url:
        built.append(_broadcast(settings, http))
    return {channel.name: channel for channel in built}


def _broadcast(settings: Settings, http: httpx.AsyncClient) -> BroadcastChannel:
    name = settings.broadcast_profile
    path = Path(name) if name.endswith((".yaml", ".yml")) else builtin_profile_path(name)
    profile_doc = load_yaml(path)
    directory_doc = load_yaml(settings.config_dir / "broadcast.yaml")
    try:
        profile = load_broadcast_profile(profile_doc.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(profile_doc, exc)) from None
    try:
        directory = load_broadcast_directory(directory_doc.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(directory_doc, exc)) from None
    assert settings.broadcast_base_url is not None
    return BroadcastChannel(
        profile=profile,
        directory=directory,
        base_url=settings.broadcast_base_url,
        http=http,
        username=settings.broadcast_username,
        secret=settings.broadcast_secret,
    )
