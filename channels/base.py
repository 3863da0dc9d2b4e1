"""The one small interface every delivery channel implements.

A channel only *sends* one message and *classifies* the result. Retries,
backoff, rate limits and failover live in the dispatcher's outbox worker, in one
place, so every channel behaves the same under failure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Outcome(enum.Enum):
    OK = "ok"
    RETRYABLE = "retryable"  # 429, 5xx, timeouts, connection errors: try again later
    PERMANENT = "permanent"  # bad number, rejected content, auth: retrying cannot help


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one recipient, as stored in the outbox row."""

    idempotency_key: str
    address: str  # phone number in E.164, robot id, terminal group …
    body: str
    recipient_name: str = ""
    status_callback_url: str | None = None


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


@dataclass(frozen=True)
class ChannelLimits:
    """Limits a channel declares as data (the worker and renderer honour them)."""

    max_chars: int | None = None  # e.g. SMS: 3 segments × 67 UCS-2 characters
    max_bytes: int | None = None
    per_second: float | None = None


@runtime_checkable
class Channel(Protocol):
    """A delivery channel: `name` is the key stored in outbox rows."""

    name: str
    limits: ChannelLimits

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message; never raises for provider or network errors."""
        ...
