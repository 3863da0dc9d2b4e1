"""SMS through Twilio's Programmable Messaging API.

One ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` per message, made by
the `twilio` package's ``messages.create_async`` over the daemon's shared
``httpx.AsyncClient`` (see `channels.twilio_http`). The channel only classifies
what came back (rules in `channels.twilio_rest`); retries and backoff belong to
the outbox worker.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import SecretStr

from channels.base import (
    Addressing,
    ChannelDeclaration,
    ChannelLimits,
    Medium,
    OutgoingMessage,
    SendResult,
)
from channels.sms_text import MAX_UCS2_CHARS
from channels.twilio_rest import TwilioAccount

__all__ = ["DECLARATION", "TwilioSmsChannel"]

_logger = logging.getLogger(__name__)

# Twilio accepts 1600 characters, but a warning must arrive whole on old
# handsets: 3 concatenated UCS-2 segments. No send rate yet: Twilio queues
# per sender and answers 429 when it will not.
DECLARATION = ChannelDeclaration(
    name="twilio_sms",
    label="短信",
    medium=Medium.SMS,
    addressing=Addressing.PHONE,
    carries_links=True,
    limits=ChannelLimits(max_chars=MAX_UCS2_CHARS, per_second=None),
)


class TwilioSmsChannel:
    """Sends each message as one Twilio SMS (concatenated by the carrier when long)."""

    name: str = DECLARATION.name
    limits: ChannelLimits = DECLARATION.limits
    declaration: ChannelDeclaration = DECLARATION

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
        account = TwilioAccount(
            account_sid=account_sid,
            auth_token=auth_token,
            http=http,
            api_base=api_base,
            logger=_logger,
        )
        if not (from_number or messaging_service_sid):
            raise ValueError(
                "Twilio SMS needs a sender: set YUJING_TWILIO_MESSAGING_SERVICE_SID "
                "or YUJING_TWILIO_FROM_NUMBER"
            )
        self._account = account
        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Create one Twilio Message; classify the answer. Never raises for provider
        or network errors (cancellation still propagates)."""
        args = self._create_args(message)
        return await self._account.create(
            self.name, message, lambda: self._account.client.messages.create_async(**args)
        )

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

    def __repr__(self) -> str:
        sender = (
            f"messaging_service_sid={self._messaging_service_sid!r}"
            if self._messaging_service_sid
            else f"from_number={self._from_number!r}"
        )
        return (
            f"TwilioSmsChannel(account_sid={self._account.account_sid!r}, {sender}, "
            f"api_base={self._account.api_base!r})"
        )
