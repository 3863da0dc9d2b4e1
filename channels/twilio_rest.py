"""One Twilio account, shared by the SMS and voice channels.

Builds the `twilio` REST client over the daemon's shared ``httpx.AsyncClient``
(see `channels.twilio_http`), runs one ``create_async`` call and classifies
what came back, the same way for Messages and Calls:

- 2xx: OK, provider id = the resource SID (``SM…`` / ``CA…``);
- 408, 425, 429: RETRYABLE, ``retry_after`` from the ``Retry-After`` header;
- 5xx, timeouts, connection errors: RETRYABLE;
- other 4xx — 21211 invalid To number, 21610 unsubscribed, 21614 not a mobile
  number, 21408/21215 region not enabled, 21210 caller id not verified, 20003
  authentication …: PERMANENT, with Twilio's error code and message.

The auth token is a ``SecretStr`` until the twilio client needs it, and every
reason and log line is scrubbed of it (and of its Basic-auth form).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable

import httpx
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from channels.base import OutgoingMessage, SendResult
from channels.http_result import (
    RETRYABLE_STATUSES,
    log_result,
    retry_after_seconds,
    unexpected_error,
)
from channels.redaction import Redactor
from channels.twilio_http import AsyncHttpxTwilioClient

__all__ = ["TwilioAccount"]

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
# twilio's Version.exception prefixes this to Twilio's own message text.
_TWILIO_PREFIX = "Unable to create record: "


class TwilioAccount:
    """The REST client of one Twilio account and the rules for classifying its answers."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: SecretStr,
        http: httpx.AsyncClient,
        api_base: str,
        logger: logging.Logger,
    ) -> None:
        """Raises ValueError, naming the setting to fix, for a malformed SID or an empty token."""
        if not _ACCOUNT_SID.fullmatch(account_sid):
            raise ValueError(
                "YUJING_TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex digits "
                "(Twilio console → Account info)"
            )
        token = auth_token.get_secret_value()
        if not token:
            raise ValueError("YUJING_TWILIO_AUTH_TOKEN is empty (Twilio console → Account info)")
        self.account_sid = account_sid
        self.api_base = api_base
        self._logger = logger
        self._transport = AsyncHttpxTwilioClient(http, api_base=api_base, logger=logger)
        self.client = Client(
            account_sid, token, account_sid=account_sid, http_client=self._transport
        )
        basic = base64.b64encode(f"{account_sid}:{token}".encode()).decode("ascii")
        self.redact = Redactor((token, basic))

    async def create(
        self, channel: str, message: OutgoingMessage, create: Callable[[], Awaitable[object]]
    ) -> SendResult:
        """Run one ``*.create_async`` call and classify the outcome. Never raises for
        provider or network errors (cancellation still propagates)."""
        try:
            created = await create()
        except TwilioRestException as exc:
            result = self._classify_error(exc.status, exc.code, str(exc.msg))
        except TwilioServiceException as exc:  # RFC 9457 errors of newer Twilio APIs
            result = self._classify_error(exc.status, exc.code, exc.detail or exc.title)
        except httpx.TimeoutException as exc:
            # The request may have reached Twilio; a retry can duplicate the
            # message. A duplicate warning is better than a missed one (漏报).
            result = SendResult.retryable(
                f"timeout talking to Twilio ({type(exc).__name__})", error_code="timeout"
            )
        except httpx.TransportError as exc:
            result = SendResult.retryable(
                self.redact(f"connection error talking to Twilio ({type(exc).__name__}: {exc})"),
                error_code="connection_error",
            )
        except Exception as exc:
            result = self._unexpected(channel, message, exc)
        else:
            result = SendResult.ok(provider_id=_optional_str(getattr(created, "sid", None)))
        log_result(self._logger, channel, message, result)
        return result

    def _classify_error(self, status: int, code: int | None, text: str) -> SendResult:
        # twilio defaults `code` to the HTTP status when the body had none;
        # only a real Twilio error code (5 digits) is worth reporting.
        error_code = str(code) if code is not None and code != status else None
        reason = self.redact(text.removeprefix(_TWILIO_PREFIX).strip()) or f"HTTP {status}"
        if status in RETRYABLE_STATUSES:
            return SendResult.retryable(
                f"Twilio HTTP {status}: {reason}",
                error_code=error_code,
                retry_after=self._retry_after(),
            )
        if status >= 500:
            return SendResult.retryable(f"Twilio HTTP {status}: {reason}", error_code=error_code)
        return SendResult.permanent(reason, error_code=error_code)

    def _retry_after(self) -> float | None:
        # twilio's exceptions drop the headers; the transport kept the response.
        response = self._transport.last_response
        if response is None or response.headers is None:
            return None
        return retry_after_seconds(response.headers.get("Retry-After"))

    def _unexpected(self, channel: str, message: OutgoingMessage, exc: Exception) -> SendResult:
        response = self._transport.last_response
        if response is not None and 200 <= response.status_code < 300:
            # Twilio accepted the request but its answer did not parse: the
            # message (or call) is on its way, and sending again would duplicate it.
            self._logger.warning(
                "%s %s: accepted (HTTP %s) but the answer was unreadable: %s",
                channel,
                message.idempotency_key,
                response.status_code,
                type(exc).__name__,
            )
            return SendResult.ok(provider_id=None)
        return unexpected_error(self._logger, channel, message, exc, self.redact)

    def __repr__(self) -> str:
        return f"TwilioAccount(account_sid={self.account_sid!r}, api_base={self.api_base!r})"


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
