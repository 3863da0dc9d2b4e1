"""Feishu (飞书) custom bot: ``POST https://open.feishu.cn/open-apis/bot/v2/hook/{hook id}``.

`OutgoingMessage.address` names a bot configured here. The hook id in the
webhook URL is itself a credential (anyone holding it can post), and a bot
with "签名校验" has a signing secret; both are ``SecretStr``. A signed body
carries (DOMAIN.md)::

    timestamp = current time in seconds, as a string
    sign      = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))

(the unusual way round — the key is the string, the message empty — is
Feishu's). Feishu rejects a timestamp more than an hour off. Body:
``{"timestamp", "sign", "msg_type": "text", "content": {"text": …}}``; the
message's `mentions` are Feishu open_id/user_id values (mobile numbers cannot
be mentioned by a custom bot), appended as ``<at user_id="…"></at>`` —
``"all"`` mentions everyone.

Limits: 5 requests per second and 100 per minute per bot; the request body at
most 20 KB. The body text is declared at 19 KB to leave room for the envelope,
and a request body over 20 KB is refused PERMANENT ``too_long`` — never cut.

Answers carry ``code`` (or, from older deployments, ``StatusCode``): 0 ok;
11232 (frequency limited) RETRYABLE after 60 s — which of the two windows
tripped is not said, and a minute clears both; 19021 (bad signature or
timestamp), 19022 (IP not allowed), 19024 (keyword missing), 19001 (bad hook)
and any other code PERMANENT. A 2xx without a code is RETRYABLE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from channels.base import (
    TOO_LONG,
    Addressing,
    ChannelDeclaration,
    ChannelLimits,
    Medium,
    OutgoingMessage,
    SendResult,
)
from channels.http_result import (
    addressed,
    classify_status,
    guarded_send,
    json_body,
    send_request,
    short_text,
)
from channels.redaction import redactor_in_urls

__all__ = ["DECLARATION", "FEISHU_API", "FeishuBot", "FeishuChannel"]

_logger = logging.getLogger(__name__)

FEISHU_API = "https://open.feishu.cn"
_HOOK_PATH = "/open-apis/bot/v2/hook/"

MAX_REQUEST_BYTES = 20 * 1024
MAX_TEXT_BYTES = 19 * 1024
PER_SECOND = 5.0
PER_MINUTE = 100

_RATE_LIMITED = 11232
_RATE_LIMIT_WAIT = 60.0


DECLARATION = ChannelDeclaration(
    name="feishu",
    label="飞书",
    medium=Medium.IM,
    addressing=Addressing.ROBOT,
    carries_links=True,
    limits=ChannelLimits(
        max_bytes=MAX_TEXT_BYTES, per_second=PER_SECOND, per_minute=PER_MINUTE, rate_scope="address"
    ),
)


@dataclass(frozen=True)
class FeishuBot:
    """One custom bot: the hook id from its webhook URL and, when it signs, its secret."""

    hook_id: SecretStr
    secret: SecretStr | None = None


class FeishuChannel:
    """Posts each message to one Feishu group bot."""

    name: str
    limits: ChannelLimits = DECLARATION.limits
    declaration: ChannelDeclaration

    def __init__(
        self,
        *,
        bots: Mapping[str, FeishuBot],
        http: httpx.AsyncClient,
        api_base: str = FEISHU_API,
        clock: Callable[[], float] = time.time,
        name: str = DECLARATION.name,
    ) -> None:
        """`bots` maps each bot id (the messages' address) to its credentials.

        Raises ValueError, naming YUJING_FEISHU_BOTS, when none is given or a
        hook id is empty.
        """
        if not bots:
            raise ValueError(
                "Feishu needs at least one bot: set YUJING_FEISHU_BOTS, e.g. "
                '{"duty-room": {"hook_id": "…", "secret": "…"}}'
            )
        empty = sorted(b for b, c in bots.items() if not c.hook_id.get_secret_value())
        if empty:
            raise ValueError(f"YUJING_FEISHU_BOTS: empty hook_id for {', '.join(empty)}")
        self.name = name
        self.declaration = DECLARATION.named(name)
        self._bots = dict(bots)
        self._http = http
        self._clock = clock
        self._base = f"{api_base.rstrip('/')}{_HOOK_PATH}"
        secrets = [c.hook_id.get_secret_value() for c in bots.values()] + [
            c.secret.get_secret_value() for c in bots.values() if c.secret is not None
        ]
        self._redact = redactor_in_urls(*secrets)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post one bot message; classify Feishu's answer. Never raises."""
        return await guarded_send(_logger, self.name, message, self._redact, self._send)

    async def _send(self, message: OutgoingMessage) -> SendResult:
        bot = addressed(self._bots, message, "Feishu bot", "unknown_bot", self.limits)
        if isinstance(bot, SendResult):
            return bot
        body = json.dumps(self.payload(message, bot), ensure_ascii=False).encode("utf-8")
        if len(body) > MAX_REQUEST_BYTES:
            return SendResult.permanent(
                f"request body is {len(body)} bytes, Feishu accepts {MAX_REQUEST_BYTES}",
                error_code=TOO_LONG,
            )
        request = self._http.build_request(
            "POST",
            self._base + bot.hook_id.get_secret_value(),
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        response = await send_request(self._http, request, "Feishu", self._redact)
        if isinstance(response, SendResult):
            return response
        return self._classify(response)

    def payload(self, message: OutgoingMessage, bot: FeishuBot) -> dict[str, Any]:
        """The JSON body Feishu receives for `message` (signed when the bot has a secret)."""
        text = message.body
        if message.mentions:
            text += "\n" + " ".join(_mention(m) for m in message.mentions)
        payload: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if bot.secret is not None:
            timestamp = str(int(self._clock()))
            payload = {
                "timestamp": timestamp,
                "sign": _signature(timestamp, bot.secret.get_secret_value()),
                **payload,
            }
        return payload

    def _classify(self, response: httpx.Response) -> SendResult:
        data = json_body(response)
        code = None
        if data is not None:
            code = data.get("code", data.get("StatusCode"))
        if not isinstance(code, int):
            return classify_status(response, "Feishu", self._redact) or SendResult.retryable(
                self._redact(f"Feishu answered without a code: {short_text(response)}"),
                error_code="unreadable",
            )
        if code == 0:
            return SendResult.ok()
        assert data is not None
        text = data.get("msg", data.get("StatusMessage", ""))
        reason = self._redact(f"Feishu code {code}: {str(text)[:300]}")
        if code == _RATE_LIMITED:
            return SendResult.retryable(reason, error_code=str(code), retry_after=_RATE_LIMIT_WAIT)
        return SendResult.permanent(reason, error_code=str(code))

    def __repr__(self) -> str:
        return f"FeishuChannel(name={self.name!r}, bots={sorted(self._bots)!r})"


def _mention(user_id: str) -> str:
    if user_id == "all":
        return '<at user_id="all">所有人</at>'
    return f'<at user_id="{html.escape(user_id, quote=True)}"></at>'


def _signature(timestamp: str, secret: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")
