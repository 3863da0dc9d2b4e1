"""DingTalk (钉钉) custom robot: ``POST https://oapi.dingtalk.com/robot/send``.

`OutgoingMessage.address` names a robot configured here. Each robot has an
``access_token`` (from its webhook URL) and, with the "加签" security setting,
a signing secret; both are ``SecretStr``. A signed request carries, in the
query string (DOMAIN.md)::

    timestamp = current time in milliseconds
    sign      = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))

DingTalk rejects a timestamp more than an hour off, so the clock is injectable
for tests only. Body: ``{"msgtype": "text", "text": {"content": …},
"at": {"atMobiles": […], "isAtAll": false}}`` — the message's `mentions` are
mobile numbers (``"all"`` sets isAtAll).

Limits: 20 messages per minute per robot; over it DingTalk answers errcode
130101 and **blocks the robot for 10 minutes**, so 130101 (and 410100, "sending
too fast") is RETRYABLE after 600 s — the worker's rate limiter should never
let it happen. DingTalk documents no length limit for text; 20,000 bytes
UTF-8 is this channel's conservative bound (unconfirmed against DingTalk's own
text — warnings are far shorter). Longer is refused PERMANENT ``too_long``,
never cut.

Other answers: errcode 0 ok; -1 (system busy) RETRYABLE; 310000 (bad
signature, missing keyword or IP not allowed) and any other code — bad token,
robot disabled, quota used up — PERMANENT, so the worker fails over to SMS at
once. A 200 whose body is not DingTalk's JSON is RETRYABLE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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

__all__ = ["DECLARATION", "DINGTALK_API", "DingTalkChannel", "DingTalkRobot"]

_logger = logging.getLogger(__name__)

DINGTALK_API = "https://oapi.dingtalk.com"
_SEND_PATH = "/robot/send"

MAX_BYTES = 20_000
PER_MINUTE = 20
#: How long DingTalk blocks a robot that went over its limit.
BLOCK_SECONDS = 600.0

_BLOCKED = frozenset({130101, 410100})
_BUSY = -1


DECLARATION = ChannelDeclaration(
    name="dingtalk",
    label="钉钉",
    medium=Medium.IM,
    addressing=Addressing.ROBOT,
    carries_links=True,
    limits=ChannelLimits(max_bytes=MAX_BYTES, per_minute=PER_MINUTE, rate_scope="address"),
)


@dataclass(frozen=True)
class DingTalkRobot:
    """One custom robot: its access token and, when it signs, its secret (SEC…)."""

    access_token: SecretStr
    secret: SecretStr | None = None


class DingTalkChannel:
    """Posts each message to one DingTalk group robot, @-mentioning the people on duty."""

    name: str
    limits: ChannelLimits = DECLARATION.limits
    declaration: ChannelDeclaration

    def __init__(
        self,
        *,
        robots: Mapping[str, DingTalkRobot],
        http: httpx.AsyncClient,
        api_base: str = DINGTALK_API,
        clock: Callable[[], float] = time.time,
        name: str = DECLARATION.name,
    ) -> None:
        """`robots` maps each robot id (the messages' address) to its credentials.

        Raises ValueError, naming YUJING_DINGTALK_ROBOTS, when none is given or a
        token is empty.
        """
        if not robots:
            raise ValueError(
                "DingTalk needs at least one robot: set YUJING_DINGTALK_ROBOTS, e.g. "
                '{"duty-room": {"access_token": "…", "secret": "SEC…"}}'
            )
        empty = sorted(r for r, c in robots.items() if not c.access_token.get_secret_value())
        if empty:
            raise ValueError(f"YUJING_DINGTALK_ROBOTS: empty access_token for {', '.join(empty)}")
        self.name = name
        self.declaration = DECLARATION.named(name)
        self._robots = dict(robots)
        self._http = http
        self._clock = clock
        self._url = f"{api_base.rstrip('/')}{_SEND_PATH}"
        secrets = [c.access_token.get_secret_value() for c in robots.values()] + [
            c.secret.get_secret_value() for c in robots.values() if c.secret is not None
        ]
        self._redact = redactor_in_urls(*secrets)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post one robot message; classify DingTalk's answer. Never raises."""
        return await guarded_send(_logger, self.name, message, self._redact, self._send)

    async def _send(self, message: OutgoingMessage) -> SendResult:
        robot = addressed(self._robots, message, "DingTalk robot", "unknown_robot", self.limits)
        if isinstance(robot, SendResult):
            return robot
        params = {"access_token": robot.access_token.get_secret_value()}
        if robot.secret is not None:
            timestamp = str(int(self._clock() * 1000))
            params["timestamp"] = timestamp
            # httpx percent-encodes the query value: that is the "urlencode" step.
            params["sign"] = _signature(timestamp, robot.secret.get_secret_value())
        request = self._http.build_request(
            "POST",
            self._url,
            params=params,
            content=json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        response = await send_request(self._http, request, "DingTalk", self._redact)
        if isinstance(response, SendResult):
            return response
        return self._classify(response)

    @staticmethod
    def payload(message: OutgoingMessage) -> dict[str, Any]:
        """The JSON body DingTalk receives for `message`."""
        mobiles = [m for m in message.mentions if m != "all"]
        return {
            "msgtype": "text",
            "text": {"content": message.body},
            "at": {"atMobiles": mobiles, "isAtAll": "all" in message.mentions},
        }

    def _classify(self, response: httpx.Response) -> SendResult:
        data = json_body(response)
        code = data.get("errcode") if data is not None else None
        if not isinstance(code, int):
            return classify_status(response, "DingTalk", self._redact) or SendResult.retryable(
                self._redact(f"DingTalk answered without an errcode: {short_text(response)}"),
                error_code="unreadable",
            )
        if code == 0:
            return SendResult.ok()
        assert data is not None
        reason = self._redact(f"DingTalk errcode {code}: {str(data.get('errmsg', ''))[:300]}")
        if code in _BLOCKED:
            return SendResult.retryable(reason, error_code=str(code), retry_after=BLOCK_SECONDS)
        if code == _BUSY:
            return SendResult.retryable(reason, error_code=str(code))
        return SendResult.permanent(reason, error_code=str(code))

    def __repr__(self) -> str:
        return f"DingTalkChannel(name={self.name!r}, robots={sorted(self._robots)!r})"


def _signature(timestamp: str, secret: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")
