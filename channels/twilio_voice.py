"""Voice calls through Twilio's Programmable Voice API: the warning, read aloud.

One ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` per message, made by
the `twilio` package's ``calls.create_async`` over the shared
``httpx.AsyncClient``, with the call's TwiML passed inline (``Twiml``) — no
round trip to our server before the phone rings. The TwiML (`warning_twiml`):

1. ``<Gather numDigits="1">`` around ``<Say language="zh-CN" loop="2">`` — the
   warning read twice — and a prompt: 确认收到请按1，重听请按其他键。
   A key posts ``Digits`` to the Gather's action,
   ``{public_base_url}/webhooks/twilio/voice/ack?n={notification id}``: 1
   acknowledges; for any other key that route answers with `warning_twiml`
   again, which repeats the message.
2. No key at all falls through to a second Gather that reads it once more,
   then a closing sentence, and the call ends.

A message without a notification id (outside the outbox) has no
acknowledgement URL: the warning is still called and read twice, without the
keypress prompt. Call status (answered, completed / busy / no-answer / failed)
goes to the message's status callback URL when it has one.

Classification is Twilio's (`channels.twilio_rest`). Limits: Twilio accepts at
most 4,000 characters of inline TwiML, which holds a body of 1,000 characters
read as above; Twilio places 1 call per second per account unless raised.
A longer body is refused as PERMANENT ``too_long``, never cut.
"""

from __future__ import annotations

import logging

import httpx
from pydantic import SecretStr
from twilio.twiml.voice_response import VoiceResponse

from channels.base import (
    TOO_LONG,
    Addressing,
    ChannelDeclaration,
    ChannelLimits,
    Medium,
    OutgoingMessage,
    SendResult,
)
from channels.http_result import log_result, refuse_if_too_long
from channels.twilio_rest import TwilioAccount

__all__ = [
    "ACK_PATH",
    "DECLARATION",
    "MAX_TWIML_CHARS",
    "TwilioVoiceChannel",
    "ack_url",
    "warning_twiml",
]

_logger = logging.getLogger(__name__)

#: Route (written by the acknowledgement service) that receives the keypress.
ACK_PATH = "/webhooks/twilio/voice/ack"

# `<Say voice="alice">` is retired upstream; Twilio's <Say> takes "any of the
# Twilio-supported Amazon Polly voices" (https://www.twilio.com/docs/voice/twiml/say),
# and Amazon Polly's Mandarin voice is Zhiyu (知语), language code cmn-CN
# (Polly developer guide, "Available voices": cmn-CN, Zhiyu, standard and neural). Settings
# YUJING_TWILIO_VOICE_NAME / YUJING_TWILIO_VOICE_LANGUAGE choose another, e.g.
# Google.cmn-CN-Standard-A with cmn-CN.
DEFAULT_VOICE = "Polly.Zhiyu"
DEFAULT_LANGUAGE = "cmn-CN"
#: Twilio's limit on the inline ``Twiml`` parameter of a Call.
MAX_TWIML_CHARS = 4000
#: Body characters that still fit in MAX_TWIML_CHARS as `warning_twiml` lays them out.
MAX_VOICE_CHARS = 1000

# A call is heard, not read: no link in it (the keypress acknowledges).
DECLARATION = ChannelDeclaration(
    name="twilio_voice",
    label="语音电话",
    medium=Medium.VOICE,
    addressing=Addressing.PHONE,
    carries_links=False,
    limits=ChannelLimits(max_chars=MAX_VOICE_CHARS, per_second=1.0),
)

PROMPT = "确认收到请按1，重听请按其他键。"
GOODBYE = "没有收到您的按键确认，本次通话结束。"
GATHER_TIMEOUT_SECONDS = 8


def ack_url(public_base_url: str, notification_id: int) -> str:
    """The Gather action URL for one notification."""
    return f"{public_base_url.rstrip('/')}{ACK_PATH}?n={notification_id}"


def warning_twiml(
    body: str,
    *,
    ack_url: str | None,
    voice: str | None = DEFAULT_VOICE,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """The TwiML document of a warning call (also what the ack route answers to
    a key other than 1, so the message repeats)."""
    response = VoiceResponse()

    def say(target: VoiceResponse, text: str, loop: int | None = None) -> None:
        target.say(text, language=language, voice=voice, loop=loop)

    if ack_url is None:
        say(response, body, loop=2)
        return str(response)
    first = response.gather(
        num_digits=1, action=ack_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS
    )
    say(first, body, loop=2)
    say(first, PROMPT)
    # Gather falls through to the next verb when no key is pressed: once more.
    again = response.gather(
        num_digits=1, action=ack_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS
    )
    say(again, body)
    say(again, PROMPT)
    say(response, GOODBYE)
    return str(response)


class TwilioVoiceChannel:
    """Calls the recipient and reads the warning; one digit acknowledges."""

    name: str = DECLARATION.name
    limits: ChannelLimits = DECLARATION.limits
    declaration: ChannelDeclaration = DECLARATION

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str,
        public_base_url: str,
        http: httpx.AsyncClient,
        api_base: str = "https://api.twilio.com",
        voice: str | None = DEFAULT_VOICE,
        language: str = DEFAULT_LANGUAGE,
        max_call_seconds: int = 300,
    ) -> None:
        """Bind to one Twilio account and a voice-capable caller id.

        `public_base_url` is where Twilio reaches this server (keypress
        acknowledgements). `voice`/`language` must be a combination Twilio's
        TTS supports (Polly.Zhiyu + cmn-CN, the default; or e.g.
        Google.cmn-CN-Standard-A + cmn-CN).
        `max_call_seconds` ends a call that keeps repeating. Raises ValueError,
        naming the setting, for bad configuration.
        """
        account = TwilioAccount(
            account_sid=account_sid,
            auth_token=auth_token,
            http=http,
            api_base=api_base,
            logger=_logger,
        )
        if not from_number:
            raise ValueError(
                "Twilio voice needs a caller id: set YUJING_TWILIO_VOICE_FROM_NUMBER "
                "(a voice-capable Twilio number)"
            )
        base = httpx.URL(public_base_url) if public_base_url else None
        if base is None or base.scheme not in ("http", "https") or not base.host:
            raise ValueError(
                f"YUJING_PUBLIC_BASE_URL {public_base_url!r} is not an http(s) URL with a host; "
                "Twilio posts voice keypresses there (e.g. https://yujing.example.cn)"
            )
        if max_call_seconds < 30:
            raise ValueError(f"max_call_seconds must be at least 30, got {max_call_seconds}")
        self._account = account
        self._from_number = from_number
        self._public_base_url = public_base_url
        self._voice = voice
        self._language = language
        self._max_call_seconds = max_call_seconds

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Create one Twilio Call reading `message.body`; classify the answer."""
        too_long = refuse_if_too_long(self.limits, message.body)
        if too_long is None:
            too_long = self._refuse_large_twiml(self.twiml(message))
        if too_long is not None:
            log_result(_logger, self.name, message, too_long)
            return too_long
        if message.notification_id is None:
            _logger.warning(
                "%s %s: no notification id, calling without the keypress acknowledgement",
                self.name,
                message.idempotency_key,
            )
        args = self._create_args(message)
        return await self._account.create(
            self.name, message, lambda: self._account.client.calls.create_async(**args)
        )

    def twiml(self, message: OutgoingMessage) -> str:
        """The TwiML this channel sends for `message`."""
        url = (
            None
            if message.notification_id is None
            else ack_url(self._public_base_url, message.notification_id)
        )
        return warning_twiml(message.body, ack_url=url, voice=self._voice, language=self._language)

    @staticmethod
    def _refuse_large_twiml(twiml: str) -> SendResult | None:
        if len(twiml) <= MAX_TWIML_CHARS:
            return None
        return SendResult.permanent(
            f"call script is {len(twiml)} characters of TwiML, Twilio accepts {MAX_TWIML_CHARS}",
            error_code=TOO_LONG,
        )

    def _create_args(self, message: OutgoingMessage) -> dict[str, object]:
        args: dict[str, object] = {
            "to": message.address,
            "from_": self._from_number,
            "twiml": self.twiml(message),
            "time_limit": self._max_call_seconds,
        }
        if message.status_callback_url:
            args["status_callback"] = message.status_callback_url
            args["status_callback_method"] = "POST"
            args["status_callback_event"] = ["answered", "completed"]
        return args

    def __repr__(self) -> str:
        return (
            f"TwilioVoiceChannel(account_sid={self._account.account_sid!r}, "
            f"from_number={self._from_number!r}, public_base_url={self._public_base_url!r}, "
            f"api_base={self._account.api_base!r})"
        )
