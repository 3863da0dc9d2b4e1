"""The console channel prints each message as a block and reports it delivered."""

from __future__ import annotations

import io

import pytest

from channels.base import Channel, Outcome, OutgoingMessage
from channels.console import ConsoleChannel

WARNING = OutgoingMessage(
    idempotency_key="alert:17:new:person:zhang-wei:console",
    address="+8613800138000",
    body="【柳林县自然资源局】寒潮黄色预警：三交镇王家沟滑坡隐患点今夜降温12℃。回复1确认。编号Y7K2",
    recipient_name="张伟",
)


async def test_prints_recipient_address_key_and_body() -> None:
    stream = io.StringIO()

    await ConsoleChannel(stream).send(WARNING)

    printed = stream.getvalue()
    assert "张伟" in printed
    assert "+8613800138000" in printed
    assert "alert:17:new:person:zhang-wei:console" in printed
    assert WARNING.body in printed


async def test_reports_each_message_delivered_with_a_numbered_console_id() -> None:
    channel = ConsoleChannel(io.StringIO())

    first = await channel.send(WARNING)
    second = await channel.send(WARNING)

    assert (first.outcome, first.provider_id) == (Outcome.OK, "console-1")
    assert (second.outcome, second.provider_id) == (Outcome.OK, "console-2")


async def test_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    await ConsoleChannel().send(WARNING)

    assert WARNING.body in capsys.readouterr().out


async def test_flushes_after_each_message() -> None:
    class CountingFlushes(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    stream = CountingFlushes()

    await ConsoleChannel(stream).send(WARNING)

    assert stream.flushes == 1


async def test_an_unnamed_recipient_is_still_shown_by_address() -> None:
    stream = io.StringIO()

    await ConsoleChannel(stream).send(
        OutgoingMessage(idempotency_key="k", address="+8613900000000", body="测试")
    )

    assert "+8613900000000" in stream.getvalue()


def test_is_a_channel_named_console_with_the_three_segment_sms_limit() -> None:
    channel = ConsoleChannel()

    assert isinstance(channel, Channel)
    assert channel.name == "console"
    assert channel.limits.max_chars == 201
