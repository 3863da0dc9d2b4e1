"""The console channel: prints each message instead of sending it.

The default when no provider is configured, and the channel drills and
development runs use. It declares the same limit as SMS so a message that would
be cut short on a phone is caught on the console too.
"""

from __future__ import annotations

import sys
from typing import TextIO

from channels.base import (
    Addressing,
    ChannelDeclaration,
    ChannelLimits,
    Medium,
    OutgoingMessage,
    SendResult,
)
from channels.sms_text import MAX_UCS2_CHARS, sms_segments

_RULE = "─" * 40

#: The console stands in for a person's phone in drills and development runs: it
#: gets what an SMS would say, acknowledgement link and all, within the SMS length.
DECLARATION = ChannelDeclaration(
    name="console",
    label="控制台",
    medium=Medium.SMS,
    addressing=Addressing.PHONE,
    carries_links=True,
    limits=ChannelLimits(max_chars=MAX_UCS2_CHARS),
    stand_in=True,
)


class ConsoleChannel:
    """Writes one clearly delimited block per message to a text stream."""

    name: str = DECLARATION.name
    limits: ChannelLimits = DECLARATION.limits
    declaration: ChannelDeclaration = DECLARATION

    def __init__(self, stream: TextIO | None = None) -> None:
        """`stream` defaults to whatever `sys.stdout` is at send time."""
        self._stream = stream
        self._sent = 0

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Print the message and report it delivered as `console-<n>`."""
        self._sent += 1
        provider_id = f"console-{self._sent}"
        # Resolved per send, not at construction, so a redirected stdout
        # (pytest's capsys, a daemon's log capture) is honoured.
        stream = self._stream if self._stream is not None else sys.stdout
        recipient = message.recipient_name or "(unnamed)"
        stream.write(
            f"{_RULE}\n"
            f"{provider_id}  to {recipient} <{message.address}>\n"
            f"key: {message.idempotency_key}\n"
            f"{len(message.body)} chars, {sms_segments(message.body)} SMS segment(s)\n"
            f"{_RULE}\n"
            f"{message.body}\n"
            f"{_RULE}\n"
        )
        stream.flush()
        return SendResult.ok(provider_id=provider_id)

    def __repr__(self) -> str:
        return f"ConsoleChannel(sent={self._sent})"
