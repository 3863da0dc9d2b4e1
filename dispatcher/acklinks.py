"""Signed, expiring acknowledgement links: one per recipient and alert.

A link is `{public_base_url}/ack/{token}` with

    token   = base64url(payload) "." base64url(mac)
    payload = "{alert id}:{person id}:{expiry, Unix seconds}"   (UTF-8)
    mac     = HMAC-SHA256(secret key, "yujing-ack-link:v1:" + payload), first 16 bytes

(base64url without padding). The purpose prefix keeps these MACs apart from
anything else the same key signs (console sessions). The MAC is cut to 128
bits, the length RFC 2104 recommends as a minimum for truncation, so the link
still fits in an SMS; forging one still means guessing 2^128 values online.

The link only *identifies* recipient and alert: opening it (GET) shows the
alert; only the form's POST acknowledges, so link-preview bots that fetch
URLs in chats never acknowledge anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from channels.base import Addressing
from channels.registry import declaration
from dispatcher.settings import Settings

__all__ = [
    "AckClaim",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "ack_link",
    "carries_personal_link",
    "ensure_secret_key",
    "make_token",
    "read_token",
]

log = logging.getLogger("yujing.acklinks")


_PURPOSE = b"yujing-ack-link:v1:"
_MAC_BYTES = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def carries_personal_link(channel: str) -> bool:
    """Whether a message on `channel` may carry a recipient's own acknowledgement link.

    Only a channel that shows links *and* reaches one person's own phone: a link
    in a group chat or on a loudspeaker would let anyone acknowledge in that
    person's name. A channel no module declares carries none.
    """
    declared = declaration(channel)
    return (
        declared is not None and declared.carries_links and declared.addressing is Addressing.PHONE
    )


class LinkError(Exception):
    """The token cannot be used; `str()` is a message for the person holding it."""


class LinkInvalid(LinkError):
    """Not a token we signed: altered, truncated or signed with another key."""


class LinkExpired(LinkError):
    """A genuine token whose time is up."""


@dataclass(frozen=True)
class AckClaim:
    """What a valid token says: this person may acknowledge this alert until then."""

    alert_id: int
    person_id: str
    expires_at: datetime


def ensure_secret_key(settings: Settings) -> SecretStr:
    """The key that signs ack links and console sessions.

    When YUJING_SECRET_KEY is unset, a random key is generated once and stored
    on `settings` (so every part sharing these settings signs and verifies with
    the same key), with a warning: links and sessions then die with the process.
    """
    if settings.secret_key is None:
        log.warning(
            "YUJING_SECRET_KEY is not set: using a random key for this process; "
            "acknowledgement links and console sessions will not survive a restart"
        )
        settings.secret_key = SecretStr(secrets.token_urlsafe(32))
    return settings.secret_key


def make_token(key: SecretStr, alert_id: int, person_id: str, expires_at: datetime) -> str:
    """Sign a claim: `person_id` may acknowledge alert `alert_id` until `expires_at`."""
    payload = f"{alert_id}:{person_id}:{int(expires_at.timestamp())}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def read_token(key: SecretStr, token: str, now: datetime) -> AckClaim:
    """Check a token's signature, then its expiry; raise LinkInvalid or LinkExpired."""
    head, dot, tail = token.partition(".")
    try:
        payload = _unb64(head)
        mac = _unb64(tail)
    except (ValueError, binascii.Error):
        raise LinkInvalid("链接无效：链接不完整或已被改动。") from None
    if not dot or not hmac.compare_digest(mac, _mac(key, payload)):
        raise LinkInvalid("链接无效：链接不完整或已被改动。")
    try:
        alert_text, rest = payload.decode().split(":", 1)
        person_id, expiry_text = rest.rsplit(":", 1)
        claim = AckClaim(
            alert_id=int(alert_text),
            person_id=person_id,
            expires_at=datetime.fromtimestamp(int(expiry_text), tz=UTC),
        )
    except ValueError:  # signed by us but not by this version: treat as invalid
        raise LinkInvalid("链接无效：无法识别的链接格式。") from None
    if now >= claim.expires_at:
        raise LinkExpired("链接已过期，请回复短信或联系值班室确认。")
    return claim


def ack_link(settings: Settings, alert_id: int, person_id: str, now: datetime) -> str | None:
    """The acknowledgement URL for one recipient of one alert, valid for the configured TTL.

    None when YUJING_PUBLIC_BASE_URL is unset: there is no address a phone could open.
    """
    if not settings.public_base_url:
        return None
    expires = now + timedelta(seconds=settings.ack_link_ttl_seconds)
    token = make_token(ensure_secret_key(settings), alert_id, person_id, expires)
    return f"{settings.public_base_url.rstrip('/')}/ack/{token}"


def _mac(key: SecretStr, payload: bytes) -> bytes:
    secret = key.get_secret_value().encode()
    return hmac.new(secret, _PURPOSE + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # strict: only the canonical encoding of some bytes is accepted, so no two
    # spellings of one token exist (the decoder would ignore stray characters
    # and the unused low bits of the last character)
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data
