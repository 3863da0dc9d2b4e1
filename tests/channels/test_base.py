"""The channel interface: outgoing-message defaults and limits as data."""

from __future__ import annotations

import pytest

from channels.base import ChannelLimits, OutgoingMessage


def test_an_outgoing_message_has_no_notification_id_or_mentions_by_default() -> None:
    message = OutgoingMessage("key", "+8613800138000", "测试")

    assert (message.notification_id, message.mentions) == (None, ())


def test_no_limits_refuse_nothing() -> None:
    assert ChannelLimits().refusal("预" * 100_000) is None


@pytest.mark.parametrize(("length", "refused"), [(10, False), (11, True)])
def test_max_chars_counts_characters(length: int, refused: bool) -> None:
    refusal = ChannelLimits(max_chars=10).refusal("预" * length)

    assert (refusal is not None) is refused


@pytest.mark.parametrize(("body", "refused"), [("预" * 2 + "ab", False), ("预" * 3, True)])
def test_max_bytes_counts_utf8_bytes(body: str, refused: bool) -> None:
    # 预 is 3 bytes in UTF-8: 2 × 3 + 2 = 8 fits, 3 × 3 = 9 does not.
    refusal = ChannelLimits(max_bytes=8).refusal(body)

    assert (refusal is not None) is refused


def test_the_refusal_says_the_size_and_the_limit() -> None:
    assert ChannelLimits(max_bytes=8).refusal("预" * 3) == (
        "message is 9 bytes in UTF-8, the limit is 8"
    )


def test_rates_apply_to_the_whole_channel_unless_declared_per_address() -> None:
    assert ChannelLimits(per_minute=20).rate_scope == "channel"
