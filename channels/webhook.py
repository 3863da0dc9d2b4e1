"""Generic signed webhook: a JSON POST for the bureau's other systems.

`OutgoingMessage.address` names a target configured here (its URL and shared
secret). Each message is one ``POST`` with a JSON body::

    {"idempotency_key": "alert:17:new:…", "notification_id": 42,
     "address": "emergency-office", "recipient_name": "…", "body": "…",
     "mentions": [], "timestamp": 1767657600}

and the headers

- ``X-Yujing-Timestamp``: the same Unix time in seconds as in the body;
- ``X-Yujing-Signature: sha256=<hex HMAC-SHA256(key=secret, msg=raw body)>``;
- ``Idempotency-Key``: the outbox idempotency key — the same on every retry of
  one notification, so a receiver can drop a repeat.

The receiver recomputes the HMAC over the raw body bytes, compares in constant
time, and rejects a timestamp far from its clock (a replay). The timestamp is
inside the signed body, so it cannot be altered without breaking the signature.

Answers: 2xx OK (a JSON ``"id"`` string in the answer becomes the provider id);
409 (the receiver is still processing this idempotency key), 408, 425, 429 and
5xx RETRYABLE with ``Retry-After`` honoured; timeouts and connection errors
RETRYABLE; any other status PERMANENT. Limits are the receiver's, given to the
constructor (none by default); a body over them is refused PERMANENT
``too_long``.
"""

from __future__ import annotations

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
    retry_after_seconds,
    send_request,
)
from channels.redaction import Redactor

__all__ = [
    "DECLARATION",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "WebhookTarget",
]

_logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Yujing-Signature"
TIMESTAMP_HEADER = "X-Yujing-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# The receiving system shows the text to its own users (an IM-like text with the
# link); it has no limits of its own that we know of: a deployment sets them.
DECLARATION = ChannelDeclaration(
    name="webhook",
    label="业务系统推送",
    medium=Medium.IM,
    addressing=Addressing.TARGET,
    carries_links=True,
)


@dataclass(frozen=True)
class WebhookTarget:
    """One receiving system: where to post and the secret both sides sign with."""

    url: str
    secret: SecretStr


class WebhookChannel:
    """Posts each message as signed JSON to one configured receiver."""

    name: str
    limits: ChannelLimits
    declaration: ChannelDeclaration

    def __init__(
        self,
        *,
        targets: Mapping[str, WebhookTarget],
        http: httpx.AsyncClient,
        limits: ChannelLimits | None = None,
        clock: Callable[[], float] = time.time,
        name: str = DECLARATION.name,
    ) -> None:
        """`targets` maps each target id (the messages' address) to its URL and secret.

        Raises ValueError, naming YUJING_WEBHOOK_TARGETS, for no target, a URL
        that is not http(s), or an empty secret.
        """
        if not targets:
            raise ValueError(
                "the webhook channel needs a target: set YUJING_WEBHOOK_TARGETS, e.g. "
                '{"emergency-office": {"url": "https://…", "secret": "…"}}'
            )
        for target_id, target in targets.items():
            url = httpx.URL(target.url)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(
                    f"YUJING_WEBHOOK_TARGETS: {target_id}: {target.url!r} is not an http(s) URL"
                )
            if not target.secret.get_secret_value():
                raise ValueError(f"YUJING_WEBHOOK_TARGETS: {target_id}: the secret is empty")
        self.name = name
        self.declaration = DECLARATION.named(name)
        self.limits = limits or DECLARATION.limits
        self._targets = dict(targets)
        self._http = http
        self._clock = clock
        self._redact = Redactor(t.secret.get_secret_value() for t in targets.values())

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post one signed message; classify the receiver's answer. Never raises."""
        return await guarded_send(_logger, self.name, message, self._redact, self._send)

    async def _send(self, message: OutgoingMessage) -> SendResult:
        target = addressed(self._targets, message, "webhook target", "unknown_target", self.limits)
        if isinstance(target, SendResult):
            return target
        timestamp = int(self._clock())
        body = json.dumps(
            self.payload(message, timestamp), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        signature = hmac.new(
            target.secret.get_secret_value().encode("utf-8"), body, hashlib.sha256
        ).hexdigest()
        request = self._http.build_request(
            "POST",
            target.url,
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: f"sha256={signature}",
                IDEMPOTENCY_HEADER: message.idempotency_key,
            },
        )
        response = await send_request(
            self._http, request, f"webhook {message.address}", self._redact
        )
        if isinstance(response, SendResult):
            return response
        return self._classify(message, response)

    @staticmethod
    def payload(message: OutgoingMessage, timestamp: int) -> dict[str, Any]:
        """The JSON document the receiver gets for `message`."""
        return {
            "idempotency_key": message.idempotency_key,
            "notification_id": message.notification_id,
            "address": message.address,
            "recipient_name": message.recipient_name,
            "body": message.body,
            "mentions": list(message.mentions),
            "timestamp": timestamp,
        }

    def _classify(self, message: OutgoingMessage, response: httpx.Response) -> SendResult:
        provider = f"webhook {message.address}"
        if response.status_code == 409:
            # The receiver is still working on this idempotency key.
            return SendResult.retryable(
                f"{provider} HTTP 409: a request with this idempotency key is in progress",
                error_code="http_409",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        failed = classify_status(response, provider, self._redact)
        if failed is not None:
            return failed
        data = json_body(response)
        provider_id = data.get("id") if data is not None else None
        return SendResult.ok(provider_id=provider_id if isinstance(provider_id, str) else None)

    def __repr__(self) -> str:
        # Hosts only: a URL's path or query may carry a receiver's token.
        hosts = {t: httpx.URL(target.url).host for t, target in sorted(self._targets.items())}
        return f"WebhookChannel(name={self.name!r}, targets={hosts!r})"
