"""The one small interface every delivery channel implements.

A channel only *sends* one message and *classifies* the result. Retries,
backoff, rate limits and failover live in the dispatcher's outbox worker, in one
place, so every channel behaves the same under failure.

Each channel declares its limits as data (`ChannelLimits`): how long a message
may be and how fast the provider lets us send. The renderer keeps messages
within the length, the worker paces sends within the rate, and a channel handed
a message over its length refuses it as PERMANENT (error code ``too_long``)
rather than cutting a warning short — the worker then fails over to the
recipient's next contact method.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable


class Outcome(enum.Enum):
    OK = "ok"
    RETRYABLE = "retryable"  # 429, 5xx, timeouts, connection errors: try again later
    PERMANENT = "permanent"  # bad number, rejected content, auth: retrying cannot help


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one recipient, as stored in the outbox row."""

    idempotency_key: str
    address: str  # phone number in E.164, robot id, village …
    body: str
    recipient_name: str = ""
    status_callback_url: str | None = None
    # The outbox row's id: voice calls put it into the keypress-acknowledgement
    # URL, webhooks into the payload. None outside the outbox (tests, tools).
    notification_id: int | None = None
    # Whom an IM robot should @-mention, in the platform's own terms: mobile
    # numbers for WeCom and DingTalk, open_id/user_id for Feishu ("all" = everyone).
    # Channels that cannot mention ignore it.
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    error_code: str | None = None
    reason: str = ""
    retry_after: float | None = None  # seconds, when the provider said so

    @classmethod
    def ok(cls, provider_id: str | None = None) -> SendResult:
        return cls(Outcome.OK, provider_id=provider_id)

    @classmethod
    def retryable(
        cls, reason: str, error_code: str | None = None, retry_after: float | None = None
    ) -> SendResult:
        return cls(Outcome.RETRYABLE, error_code=error_code, reason=reason, retry_after=retry_after)

    @classmethod
    def permanent(cls, reason: str, error_code: str | None = None) -> SendResult:
        return cls(Outcome.PERMANENT, error_code=error_code, reason=reason)


#: error_code of the PERMANENT result a channel gives a message over its length.
TOO_LONG = "too_long"


@dataclass(frozen=True)
class ChannelLimits:
    """Limits a channel declares as data (the worker and renderer honour them).

    Lengths apply to `OutgoingMessage.body`. Rates are the provider's own rules:
    `per_second` and `per_minute` both hold when both are set, `per_minute`
    meaning at most that many sends in *any* 60-second window (DingTalk blocks a
    robot for 10 minutes when that is broken, so a bucket that refills per
    second must not let a minute's budget through twice). `rate_scope` says
    whose budget it is: the whole channel (one account), or each address
    separately (each IM robot has its own 20 per minute).
    """

    max_chars: int | None = None  # e.g. SMS: 3 segments × 67 UCS-2 characters
    max_bytes: int | None = None  # UTF-8 bytes, e.g. WeCom text: 2048
    per_second: float | None = None
    per_minute: int | None = None
    rate_scope: Literal["channel", "address"] = "channel"

    def refusal(self, body: str) -> str | None:
        """Why `body` is over these limits (a reason for the audit log), or None."""
        if self.max_chars is not None and len(body) > self.max_chars:
            return f"message is {len(body)} characters, the limit is {self.max_chars}"
        if self.max_bytes is not None:
            size = len(body.encode("utf-8"))
            if size > self.max_bytes:
                return f"message is {size} bytes in UTF-8, the limit is {self.max_bytes}"
        return None


class Medium(StrEnum):
    """How a text is worded for a channel: read on a phone, heard on a call or a
    loudspeaker, or posted to a messaging-app group."""

    SMS = "sms"
    VOICE = "voice"
    BROADCAST = "broadcast"
    IM = "im"


class Addressing(StrEnum):
    """What `OutgoingMessage.address` holds for a channel."""

    PHONE = "phone"  # a person's phone number, E.164
    ROBOT = "robot"  # the name of a configured IM robot/bot (e.g. duty-room)
    VILLAGE = "village"  # a village's loudspeakers: "township/village"
    TARGET = "target"  # the name of a configured webhook target


@dataclass(frozen=True)
class ChannelDeclaration:
    """The facts about a channel that the rest of Yujing reads, as data on the channel.

    Messages render for `medium`, routing addresses by `addressing`, acknowledgement
    links are added only where `carries_links`, people read `label`. `limits` are
    the channel's defaults (a configured instance may narrow them).
    """

    name: str  # the key stored in outbox rows and named in escalation.yaml
    label: str  # what people read, e.g. 短信
    medium: Medium
    addressing: Addressing
    carries_links: bool
    limits: ChannelLimits = ChannelLimits()
    # A stand-in reaches nobody (the console prints): failover never picks it as
    # the other way to reach a person, or a warning would look delivered.
    stand_in: bool = False

    def named(self, name: str) -> ChannelDeclaration:
        """The same facts under another instance name (a second account of one channel)."""
        return self if name == self.name else replace(self, name=name)


@runtime_checkable
class Channel(Protocol):
    """A delivery channel: `name` is the key stored in outbox rows.

    `declaration` is its module's `DECLARATION` (under the instance's name);
    `limits` are this instance's, which its configuration may have narrowed.
    """

    name: str
    limits: ChannelLimits
    declaration: ChannelDeclaration

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message; never raises for provider or network errors."""
        ...
