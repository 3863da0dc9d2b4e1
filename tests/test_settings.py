"""Settings come from YUJING_* variables; .env.example documents every one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatcher.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def documented() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^(YUJING_[A-Z0-9_]+)=(.*)$", text, flags=re.M))


def test_every_setting_is_documented_in_env_example() -> None:
    fields = {f"YUJING_{name.upper()}" for name in Settings.model_fields}
    assert fields == set(documented())


def test_every_documented_setting_has_a_comment_above_it() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    undocumented = [
        line.split("=")[0]
        for i, line in enumerate(lines)
        if line.startswith("YUJING_") and not lines[i - 1].startswith("#")
    ]
    assert undocumented == []


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in documented():
        monkeypatch.delenv(key, raising=False)
    defaults = Settings(_env_file=None).model_dump()
    for key, value in documented().items():
        monkeypatch.setenv(key, value)
    assert Settings(_env_file=None).model_dump() == defaults


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_TWILIO_AUTH_TOKEN", "s3cr3t-token-value")
    settings = Settings(_env_file=None)
    assert "s3cr3t-token-value" not in repr(settings)
    assert "s3cr3t-token-value" not in str(settings.model_dump())


def test_channel_auto_picks_twilio_only_when_fully_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YUJING_TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("YUJING_TWILIO_AUTH_TOKEN", "token")
    assert Settings(_env_file=None).default_channel == "console"
    monkeypatch.setenv("YUJING_TWILIO_FROM_NUMBER", "+15005550006")
    assert Settings(_env_file=None).default_channel == "twilio_sms"


def test_the_default_channel_must_send_sms_to_a_phone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_CHANNEL", "wecom")
    with pytest.raises(
        ValueError, match=r"YUJING_CHANNEL='wecom'.*auto or one of console, twilio_sms"
    ):
        Settings(_env_file=None)


def test_a_rate_limit_for_a_channel_nobody_declares_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YUJING_RATE_LIMITS", "twilio_sms=98/s,dingtlak=20/min")
    with pytest.raises(ValueError, match="YUJING_RATE_LIMITS names dingtlak"):
        Settings(_env_file=None)


def test_a_rate_limit_for_a_declared_channel_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_RATE_LIMITS", "twilio_sms=98/s,dingtalk=20/min")
    assert Settings(_env_file=None).rate_limits == "twilio_sms=98/s,dingtalk=20/min"


def test_the_leader_lease_lasts_twice_the_leader_poll_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a frozen leader is then replaced within 2 × the poll interval (< 3 ×)
    monkeypatch.setenv("YUJING_LEADER_POLL_SECONDS", "3")
    assert Settings(_env_file=None).leader_lease == 6.0
    monkeypatch.setenv("YUJING_LEADER_LEASE_SECONDS", "4.5")
    assert Settings(_env_file=None).leader_lease == 4.5


def test_a_leader_lease_shorter_than_the_leader_poll_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the leader renews every half poll interval; a shorter lease lapses between renewals
    monkeypatch.setenv("YUJING_LEADER_POLL_SECONDS", "5")
    monkeypatch.setenv("YUJING_LEADER_LEASE_SECONDS", "2")
    with pytest.raises(ValueError, match="YUJING_LEADER_LEASE_SECONDS=2 is shorter than"):
        Settings(_env_file=None)


def test_every_feed_setting_is_in_the_feeds_doc() -> None:
    feeds = (ROOT / "docs" / "feeds.md").read_text(encoding="utf-8")
    prefixes = ("YUJING_FEED", "YUJING_OPENMETEO_", "YUJING_QWEATHER_", "YUJING_REPLAY_")
    missing = sorted(k for k in documented() if k.startswith(prefixes) and k not in feeds)
    assert missing == []
