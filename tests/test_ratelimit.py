"""Token buckets keep each channel under its provider's limit."""

from __future__ import annotations

import pytest

from dispatcher.ratelimit import Rate, TokenBucket, buckets, parse_rates
from dispatcher.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_are_read_per_second_minute_and_hour() -> None:
    assert parse_rates("twilio_sms=100/s, dingtalk=20/min,feishu=5/s,x=36/h") == {
        "twilio_sms": Rate(100.0),
        "dingtalk": Rate(20 / 60),
        "feishu": Rate(5.0),
        "x": Rate(0.01),
    }
    assert parse_rates("") == {}


@pytest.mark.parametrize("text", ["twilio_sms=100", "dingtalk=20/week", "=5/s", "x=0/s"])
def test_a_malformed_rate_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match=r"CHANNEL=COUNT/UNIT|must be positive"):
        parse_rates(text)


def test_a_malformed_rate_setting_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_RATE_LIMITS", "dingtalk=20 per minute")
    with pytest.raises(ValueError, match="dingtalk=20 per minute"):
        Settings(_env_file=None)


def test_sends_are_spaced_evenly_never_more_than_the_rate_in_any_window() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(20 / 60), clock)  # DingTalk: 20 a minute
    waits = [bucket.delay() for _ in range(4)]  # four sends asked for at once
    assert waits == pytest.approx([0.0, 3.0, 6.0, 9.0])


def test_an_idle_bucket_does_not_save_up_a_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(100.0), clock)
    clock.now += 3600
    assert [bucket.delay() for _ in range(3)] == pytest.approx([0.0, 0.01, 0.02])


def test_settings_override_what_a_channel_declares_and_unlimited_channels_get_no_bucket() -> None:
    made = buckets(
        {"twilio_sms": None, "feishu": 5.0, "console": None}, parse_rates("twilio_sms=100/s")
    )
    assert {name: b.rate.per_second for name, b in made.items()} == {
        "twilio_sms": 100.0,
        "feishu": 5.0,
    }
