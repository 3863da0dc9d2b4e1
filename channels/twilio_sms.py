"""SMS through Twilio's Programmable Messaging API.

One ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` per message, made by
the `twilio` package's ``messages.create_async`` over the daemon's shared
``httpx.AsyncClient`` (see `channels.twilio_http`). The channel only classifies
what came back; retries and backoff belong to the outbox worker.

- 2xx: OK, provider id = the message SID (``SM…``);
- 429 (and 408): RETRYABLE, ``retry_after`` from the ``Retry-After`` header;
- 5xx, timeouts, connection errors: RETRYABLE;
- other 4xx — 21211 invalid To number, 21610 unsubscribed, 21614 not a mobile
  number, 21408 region not enabled, 20003 authentication …: PERMANENT, with
  Twilio's error code and message.

The auth token is a ``SecretStr`` until the moment the twilio client needs it,
and every reason and log line is scrubbed of it (and of its Basic-auth form).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import math
import re
import traceback
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from channels.base import ChannelLimits, Outcome, OutgoingMessage, SendResult
from channels.sms_text import MAX_UCS2_CHARS
from channels.twilio_http import AsyncHttpxTwilioClient

__all__ = ["TwilioSmsChannel"]

_logger = logging.getLogger(__name__)

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
# twilio's Version.exception prefixes this to Twilio's own message text.
_TWILIO_PREFIX = "Unable to create record: "


class TwilioSmsChannel:
    """Sends each message as one Twilio SMS (concatenated by the carrier when long)."""

    name: str = "twilio_sms"
    # Twilio accepts 1600 characters, but a warning must arrive whole on old
    # handsets: 3 concatenated UCS-2 segments. No send rate yet: Twilio queues
    # per sender and answers 429 when it will not.
    limits: ChannelLimits = ChannelLimits(max_chars=MAX_UCS2_CHARS, per_second=None)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str | None,
        messaging_service_sid: str | None,
        http: httpx.AsyncClient,
        api_base: str = "https://api.twilio.com",
    ) -> None:
        """Bind to one Twilio account; `http` is the shared client (owned by the caller).

        Raises ValueError, naming the setting to fix, when the account SID is
        malformed, the token is empty, or neither sender is given.
        """
        if not _ACCOUNT_SID.fullmatch(account_sid):
            raise ValueError(
                "YUJING_TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex digits "
                "(Twilio console → Account info)"
            )
        token = auth_token.get_secret_value()
        if not token:
            raise ValueError("YUJING_TWILIO_AUTH_TOKEN is empty (Twilio console → Account info)")
        if not (from_number or messaging_service_sid):
            raise ValueError(
                "Twilio SMS needs a sender: set YUJING_TWILIO_MESSAGING_SERVICE_SID "
                "or YUJING_TWILIO_FROM_NUMBER"
            )
        self._account_sid = account_sid
        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid
        self._api_base = api_base
        self._transport = AsyncHttpxTwilioClient(http, api_base=api_base, logger=_logger)
        self._client = Client(
            account_sid, token, account_sid=account_sid, http_client=self._transport
        )
        basic = base64.b64encode(f"{account_sid}:{token}".encode()).decode("ascii")
        self._secrets = (token, basic)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Create one Twilio Message; classify the answer. Never raises for provider
        or network errors (cancellation still propagates)."""
        try:
            created = await self._client.messages.create_async(**self._create_args(message))
        except TwilioRestException as exc:
            result = self._classify_error(exc.status, exc.code, str(exc.msg))
        except TwilioServiceException as exc:  # RFC 9457 errors of newer Twilio APIs
            result = self._classify_error(exc.status, exc.code, exc.detail or exc.title)
        except httpx.TimeoutException as exc:
            # The request may have reached Twilio; a retry can duplicate the SMS.
            # A duplicate warning is better than a missed one (漏报).
            result = SendResult.retryable(f"timeout talking to Twilio ({type(exc).__name__})")
        except httpx.TransportError as exc:
            result = SendResult.retryable(
                self._redact(f"connection error talking to Twilio ({type(exc).__name__}: {exc})")
            )
        except Exception as exc:
            result = self._unexpected(message, exc)
        else:
            result = SendResult.ok(provider_id=_optional_str(created.sid))
        self._log(message, result)
        return result

    def _create_args(self, message: OutgoingMessage) -> dict[str, str]:
        args = {"to": message.address, "body": message.body}
        # A Messaging Service picks the best sender from its pool (and handles
        # sticky senders, fallbacks); a fixed From number is the simple setup.
        if self._messaging_service_sid:
            args["messaging_service_sid"] = self._messaging_service_sid
        elif self._from_number:
            args["from_"] = self._from_number
        if message.status_callback_url:
            args["status_callback"] = message.status_callback_url
        return args

    def _classify_error(self, status: int, code: int | None, text: str) -> SendResult:
        # twilio defaults `code` to the HTTP status when the body had none;
        # only a real Twilio error code (5 digits) is worth reporting.
        error_code = str(code) if code is not None and code != status else None
        reason = self._redact(text.removeprefix(_TWILIO_PREFIX).strip()) or f"HTTP {status}"
        if status in (408, 429):
            return SendResult.retryable(
                f"Twilio HTTP {status}: {reason}",
                error_code=error_code,
                retry_after=self._retry_after(),
            )
        if status >= 500:
            return SendResult.retryable(f"Twilio HTTP {status}: {reason}", error_code=error_code)
        return SendResult.permanent(reason, error_code=error_code)

    def _retry_after(self) -> float | None:
        response = self._transport.last_response
        if response is None or response.headers is None:
            return None
        return _retry_after_seconds(response.headers.get("Retry-After"))

    def _unexpected(self, message: OutgoingMessage, exc: Exception) -> SendResult:
        response = self._transport.last_response
        if response is not None and 200 <= response.status_code < 300:
            # Twilio accepted the message but its answer did not parse: it is on
            # its way, and sending again would duplicate it.
            _logger.warning(
                "twilio_sms %s: accepted (HTTP %s) but the answer was unreadable: %s",
                message.idempotency_key,
                response.status_code,
                type(exc).__name__,
            )
            return SendResult.ok(provider_id=None)
        # A bug or a surprise from a dependency: retry (bounded by the worker's
        # max attempts) rather than silently drop a warning. The traceback is
        # logged scrubbed, never with the token.
        _logger.error(
            "twilio_sms %s: unexpected error\n%s",
            message.idempotency_key,
            self._redact("".join(traceback.format_exception(exc))),
        )
        return SendResult.retryable(self._redact(f"unexpected {type(exc).__name__}: {exc}"))

    def _log(self, message: OutgoingMessage, result: SendResult) -> None:
        # The idempotency key identifies the row; address and body stay out of
        # our log lines (personal data, kept in the outbox row).
        if result.outcome is Outcome.OK:
            _logger.debug("twilio_sms %s: sent as %s", message.idempotency_key, result.provider_id)
        else:
            _logger.warning(
                "twilio_sms %s: %s (code %s): %s",
                message.idempotency_key,
                result.outcome.value,
                result.error_code,
                result.reason,
            )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text

    def __repr__(self) -> str:
        sender = (
            f"messaging_service_sid={self._messaging_service_sid!r}"
            if self._messaging_service_sid
            else f"from_number={self._from_number!r}"
        )
        return (
            f"TwilioSmsChannel(account_sid={self._account_sid!r}, {sender}, "
            f"api_base={self._api_base!r})"
        )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
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
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
