"""WeCom (企业微信) group robot: ``POST …/cgi-bin/webhook/send?key=KEY``.

`OutgoingMessage.address` names a robot configured here (e.g. ``duty-room``);
its webhook key is a secret — anyone holding it can post to the group — so it
is a ``SecretStr``, kept out of reasons, reprs and (via
`channels.redaction.protect_in_http_logs`) httpx's request log lines.

Body: ``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": […]}}``
— the message's `mentions` are the mobile numbers of the people on duty, whom
the robot @-mentions. ``markdown`` is available for bulletins, but WeCom
markdown cannot mention by mobile number: a markdown channel sends the
message without them (and logs it); use text for warnings.

Limits (DOMAIN.md): text ≤ 2048 bytes UTF-8, markdown ≤ 4096; 20 messages per
minute per robot. A longer body is refused PERMANENT ``too_long`` before
sending (never cut: the acknowledgement instruction sits at the end).

WeCom answers HTTP 200 with ``errcode``: 0 ok; 45009 (rate limit) and -1
(system busy) RETRYABLE — 45009 after 60 s, the length of WeCom's window;
40058 (content too long), 93000 (invalid webhook key), 93004/93008 (robot
disabled / not in group) and any other code PERMANENT, so the worker fails
over to SMS at once. A 200 whose body is not WeCom's JSON is RETRYABLE.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

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
from channels.http_result import (
    addressed,
    classify_status,
    guarded_send,
    json_body,
    send_request,
    short_text,
)
from channels.redaction import redactor_in_urls

__all__ = ["DECLARATION", "WECOM_API", "WeComChannel"]

_logger = logging.getLogger(__name__)

WECOM_API = "https://qyapi.weixin.qq.com"
_SEND_PATH = "/cgi-bin/webhook/send"

TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 4096
PER_MINUTE = 20

# The limits of a text robot message; a markdown robot allows MARKDOWN_MAX_BYTES.
DECLARATION = ChannelDeclaration(
    name="wecom",
    label="企业微信",
    medium=Medium.IM,
    addressing=Addressing.ROBOT,
    carries_links=True,
    limits=ChannelLimits(max_bytes=TEXT_MAX_BYTES, per_minute=PER_MINUTE, rate_scope="address"),
)

_RATE_LIMITED = 45009
_BUSY = -1
# WeCom counts its 20 per minute per robot; after 45009 the window must pass.
_RATE_LIMIT_WAIT = 60.0


class WeComChannel:
    """Posts each message to one WeCom group robot, @-mentioning the people on duty."""

    name: str
    limits: ChannelLimits
    declaration: ChannelDeclaration

    def __init__(
        self,
        *,
        robots: Mapping[str, SecretStr],
        http: httpx.AsyncClient,
        msgtype: Literal["text", "markdown"] = "text",
        api_base: str = WECOM_API,
        name: str = DECLARATION.name,
    ) -> None:
        """`robots` maps each robot id (the messages' address) to its webhook key.

        Raises ValueError, naming YUJING_WECOM_ROBOTS, when none is given or a key is empty.
        """
        if not robots:
            raise ValueError(
                'WeCom needs at least one robot: set YUJING_WECOM_ROBOTS, e.g. {"duty-room": "KEY"}'
            )
        empty = sorted(robot for robot, key in robots.items() if not key.get_secret_value())
        if empty:
            raise ValueError(f"YUJING_WECOM_ROBOTS: empty webhook key for {', '.join(empty)}")
        if msgtype not in ("text", "markdown"):
            raise ValueError(f"WeCom msgtype must be 'text' or 'markdown', not {msgtype!r}")
        self.name = name
        self.declaration = DECLARATION.named(name)
        self.limits = ChannelLimits(
            max_bytes=TEXT_MAX_BYTES if msgtype == "text" else MARKDOWN_MAX_BYTES,
            per_minute=PER_MINUTE,
            rate_scope="address",
        )
        self._robots = dict(robots)
        self._http = http
        self._msgtype = msgtype
        self._url = f"{api_base.rstrip('/')}{_SEND_PATH}"
        keys = [key.get_secret_value() for key in robots.values()]
        self._redact = redactor_in_urls(*keys)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post one robot message; classify WeCom's answer. Never raises."""
        return await guarded_send(_logger, self.name, message, self._redact, self._send)

    async def _send(self, message: OutgoingMessage) -> SendResult:
        key = addressed(self._robots, message, "WeCom robot", "unknown_robot", self.limits)
        if isinstance(key, SendResult):
            return key
        request = self._http.build_request(
            "POST",
            self._url,
            params={"key": key.get_secret_value()},
            content=json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        response = await send_request(self._http, request, "WeCom", self._redact)
        if isinstance(response, SendResult):
            return response
        return self._classify(response)

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        """The JSON body WeCom receives for `message`."""
        if self._msgtype == "markdown":
            if message.mentions:
                _logger.info(
                    "%s %s: WeCom markdown cannot @-mention by mobile; mentions dropped",
                    self.name,
                    message.idempotency_key,
                )
            return {"msgtype": "markdown", "markdown": {"content": message.body}}
        text: dict[str, Any] = {"content": message.body}
        if message.mentions:
            text["mentioned_mobile_list"] = list(message.mentions)
        return {"msgtype": "text", "text": text}

    def _classify(self, response: httpx.Response) -> SendResult:
        data = json_body(response)
        code = data.get("errcode") if data is not None else None
        if not isinstance(code, int):
            return classify_status(response, "WeCom", self._redact) or SendResult.retryable(
                self._redact(f"WeCom answered without an errcode: {short_text(response)}"),
                error_code="unreadable",
            )
        if code == 0:
            return SendResult.ok()
        assert data is not None
        reason = self._redact(f"WeCom errcode {code}: {str(data.get('errmsg', ''))[:300]}")
        if code == _RATE_LIMITED:
            return SendResult.retryable(reason, error_code=str(code), retry_after=_RATE_LIMIT_WAIT)
        if code == _BUSY:
            return SendResult.retryable(reason, error_code=str(code))
        return SendResult.permanent(reason, error_code=str(code))

    def __repr__(self) -> str:
        return (
            f"WeComChannel(name={self.name!r}, robots={sorted(self._robots)!r}, "
            f"msgtype={self._msgtype!r})"
        )
