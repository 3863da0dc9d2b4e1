"""Shared HTTP plumbing for channels: send one request, classify what came back.

Every HTTP channel follows the same rules, written once here:

- a timeout or connection error is RETRYABLE (the request may or may not have
  reached the provider; a duplicate warning is better than a missed one);
- HTTP 408, 425, 429 and 5xx are RETRYABLE, with ``Retry-After`` honoured
  (delta-seconds or HTTP-date);
- any other non-2xx status is PERMANENT;
- a 2xx is for the channel to judge from the body (IM robots answer 200 with an
  error code inside).

An unexpected exception — a bug here or a surprise from a dependency — is
logged with a scrubbed traceback and returned as RETRYABLE (bounded by the
worker's max attempts) rather than raised or dropped.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from channels.base import TOO_LONG, ChannelLimits, Outcome, OutgoingMessage, SendResult
from channels.redaction import Redactor

_T = TypeVar("_T")

__all__ = [
    "RETRYABLE_STATUSES",
    "addressed",
    "classify_status",
    "json_body",
    "log_result",
    "refuse_if_too_long",
    "retry_after_seconds",
    "send_request",
    "unexpected_error",
]

#: Statuses worth another try besides 5xx: timeout, too early, too many requests.
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_MAX_REASON = 300


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    None when absent or unreadable; never negative (a date in the past means now).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def classify_status(
    response: httpx.Response, provider: str, redact: Redactor, detail: str = ""
) -> SendResult | None:
    """RETRYABLE/PERMANENT for a non-2xx answer, None for a 2xx one.

    `detail` (the provider's own error text, if the caller parsed one) is added
    to the reason.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    text = detail or short_text(response)
    reason = redact(f"{provider} HTTP {status}" + (f": {text}" if text else ""))
    if status in RETRYABLE_STATUSES or status >= 500:
        return SendResult.retryable(
            reason,
            error_code=f"http_{status}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return SendResult.permanent(reason, error_code=f"http_{status}")


def short_text(response: httpx.Response) -> str:
    """The start of a response body, on one line, for a reason."""
    try:
        text = response.text
    except Exception:  # undecodable body: the status says enough
        return ""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "…"


def json_body(response: httpx.Response) -> Mapping[str, Any] | None:
    """The response body as a JSON object, or None when it is not one."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def send_request(
    http: httpx.AsyncClient, request: httpx.Request, provider: str, redact: Redactor
) -> httpx.Response | SendResult:
    """Send `request` on the shared client; network failures come back as RETRYABLE."""
    try:
        return await http.send(request)
    except httpx.TimeoutException as exc:
        # The request may have reached the provider; a retry can duplicate the
        # message. A duplicate warning is better than a missed one (漏报).
        return SendResult.retryable(
            f"timeout talking to {provider} ({type(exc).__name__})", error_code="timeout"
        )
    except httpx.TransportError as exc:
        return SendResult.retryable(
            redact(f"connection error talking to {provider} ({type(exc).__name__}: {exc})"),
            error_code="connection_error",
        )


def refuse_if_too_long(limits: ChannelLimits, body: str) -> SendResult | None:
    """PERMANENT ``too_long`` when `body` is over `limits`; channels never cut a warning."""
    why = limits.refusal(body)
    return None if why is None else SendResult.permanent(why, error_code=TOO_LONG)


def addressed(
    known: Mapping[str, _T],
    message: OutgoingMessage,
    what: str,
    error_code: str,
    limits: ChannelLimits,
) -> _T | SendResult:
    """What is configured for the message's address (a robot, a bot, a target), or
    the PERMANENT result that refuses the message: an address that is not
    configured (`error_code`), or a body over `limits` (``too_long``)."""
    found = known.get(message.address)
    if found is None:
        return SendResult.permanent(
            f"{what} {message.address!r} is not configured "
            f"(configured: {', '.join(sorted(known))})",
            error_code=error_code,
        )
    too_long = refuse_if_too_long(limits, message.body)
    return found if too_long is None else too_long


def unexpected_error(
    logger: logging.Logger, channel: str, message: OutgoingMessage, exc: Exception, redact: Redactor
) -> SendResult:
    """Log a scrubbed traceback and return RETRYABLE: never raise, never drop."""
    logger.error(
        "%s %s: unexpected error\n%s",
        channel,
        message.idempotency_key,
        redact("".join(traceback.format_exception(exc))),
    )
    return SendResult.retryable(
        redact(f"unexpected {type(exc).__name__}: {exc}"), error_code="unexpected"
    )


def log_result(
    logger: logging.Logger, channel: str, message: OutgoingMessage, result: SendResult
) -> None:
    """One line per send, keyed by the idempotency key.

    Address and body stay out of log lines (personal data, kept in the outbox
    row); reasons are already redacted by the channel.
    """
    if result.outcome is Outcome.OK:
        logger.debug("%s %s: sent as %s", channel, message.idempotency_key, result.provider_id)
    else:
        logger.warning(
            "%s %s: %s (code %s): %s",
            channel,
            message.idempotency_key,
            result.outcome.value,
            result.error_code,
            result.reason,
        )


async def guarded_send(
    logger: logging.Logger,
    channel: str,
    message: OutgoingMessage,
    redact: Redactor,
    send: Callable[[OutgoingMessage], Awaitable[SendResult]],
) -> SendResult:
    """Run one channel's `send`: classify any unexpected error, log one line, never raise."""
    try:
        result = await send(message)
    except Exception as exc:
        result = unexpected_error(logger, channel, message, exc, redact)
    log_result(logger, channel, message, result)
    return result
