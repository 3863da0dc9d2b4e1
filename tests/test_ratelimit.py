"""Token buckets keep each channel under its provider's limit."""

from __future__ import annotations

import pytest

from channels.base import ChannelLimits
from dispatcher.ratelimit import ChannelPacer, Rate, TokenBucket, declared_rate, parse_rates
from dispatcher.settings import Settings
from tests.support import MonotonicClock, ScriptedChannel


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
    clock = MonotonicClock()
    bucket = TokenBucket(Rate(20 / 60), clock)  # DingTalk: 20 a minute
    waits = [bucket.delay() for _ in range(4)]  # four sends asked for at once
    assert waits == pytest.approx([0.0, 3.0, 6.0, 9.0])


def test_an_idle_bucket_does_not_save_up_a_burst() -> None:
    clock = MonotonicClock()
    bucket = TokenBucket(Rate(100.0), clock)
    clock.now += 3600
    assert [bucket.delay() for _ in range(3)] == pytest.approx([0.0, 0.01, 0.02])


def test_late_sends_catch_up_but_never_beyond_the_rate_in_any_second() -> None:
    clock = MonotonicClock()
    start = clock.now
    bucket = TokenBucket(Rate(4.0), clock)
    assert [bucket.delay() for _ in range(6)] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25])

    def at(t: float) -> float:
        clock.now = start + t
        return bucket.send_wait()

    # the first goes at 0; a pause makes the second late, at 0.3; the next three
    # go at their slots (0.5, 0.75, 1.0)
    assert [at(0), at(0.3), at(0.5), at(0.75), at(1.0)] == [0.0] * 5
    # the sixth's slot, 1.25, would be a fifth send in the second from 0.3
    assert at(1.25) == pytest.approx(0.05)
    assert at(1.25) == pytest.approx(0.05)  # asking again takes nothing
    assert at(1.3) == 0.0


def test_a_slow_rate_keeps_its_spacing_between_actual_sends() -> None:
    clock = MonotonicClock()
    bucket = TokenBucket(Rate(20 / 60), clock)  # DingTalk: one in any 3 s
    assert bucket.send_wait() == 0.0
    clock.now += 2.0
    assert bucket.send_wait() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.send_wait() == 0.0


def test_a_per_minute_limit_is_kept_in_any_window_by_even_spacing() -> None:
    assert declared_rate(ChannelLimits(per_minute=20)) == Rate(20 / 60)
    assert declared_rate(ChannelLimits(per_second=5, per_minute=100)) == Rate(100 / 60)
    assert declared_rate(ChannelLimits()) is None


def test_robots_limited_per_address_do_not_share_a_budget() -> None:
    robot = ScriptedChannel(
        name="dingtalk", limits=ChannelLimits(per_minute=20, rate_scope="address")
    )
    pacer = ChannelPacer({"dingtalk": robot}, {}, clock=MonotonicClock())
    assert pacer.reserve("dingtalk", "robot-a", within=10) == 0.0
    assert pacer.reserve("dingtalk", "robot-a", within=10) == pytest.approx(3.0, abs=0.01)
    assert pacer.reserve("dingtalk", "robot-b", within=10) == 0.0  # another robot: no wait


def test_a_slot_too_far_ahead_is_not_taken_and_its_budget_is_busy() -> None:
    sms = ScriptedChannel(name="sms", limits=ChannelLimits(per_second=1))
    robot = ScriptedChannel(
        name="dingtalk", limits=ChannelLimits(per_minute=20, rate_scope="address")
    )
    pacer = ChannelPacer(
        {"sms": sms, "dingtalk": robot, "console": ScriptedChannel()}, {}, clock=MonotonicClock()
    )
    assert pacer.reserve("dingtalk", "robot-a", within=2) == 0.0
    assert pacer.reserve("sms", "+8613800000001", within=2) == 0.0
    assert pacer.reserve("sms", "+8613800000002", within=2) == pytest.approx(1.0, abs=0.01)
    # the robot's next slot is 3 s away: not taken, and asking again still says so
    assert pacer.reserve("dingtalk", "robot-a", within=2) is None
    assert pacer.reserve("dingtalk", "robot-a", within=2) is None
    assert pacer.busy(within=2) == [("dingtalk", "robot-a")]
    # the SMS account's next slot is 2 s away: busy for anything sooner
    assert set(pacer.busy(within=1.5)) == {("dingtalk", "robot-a"), ("sms", None)}
    # a channel without limits is never busy and never waits
    assert pacer.reserve("console", "x", within=0) == 0.0


def test_settings_override_what_a_channel_declares() -> None:
    sms = ScriptedChannel(name="twilio_sms")
    feishu = ScriptedChannel(name="feishu", limits=ChannelLimits(per_second=5))
    pacer = ChannelPacer(
        {"twilio_sms": sms, "feishu": feishu, "console": ScriptedChannel(name="console")},
        parse_rates("twilio_sms=100/s"),
        clock=MonotonicClock(),
    )
    assert (pacer.rate("twilio_sms"), pacer.rate("feishu"), pacer.rate("console")) == (
        Rate(100.0),
        Rate(5.0),
        None,
    )
