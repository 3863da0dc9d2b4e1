"""QWeather authentication (https://dev.qweather.com/docs/configuration/authentication/).

A JWT signed with the project's Ed25519 key, sent as `Authorization: Bearer …`:
header `alg: EdDSA` (RFC 8037) and `kid` the credential id; payload `sub` the
project id, `iat` 30 s in the past (against clock skew), `exp` one hour on
(QWeather allows up to 24 h). Or the legacy API key in the `X-QW-Api-Key`
header. Both are secrets: never logged, and `secrets()` lets the feed redact
them from every message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

TOKEN_LIFETIME = timedelta(hours=1)  # QWeather allows up to 24 h
_TOKEN_MARGIN = timedelta(minutes=5)  # sign a fresh token this long before the old expires


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws_compact(header: Mapping[str, object], payload: bytes, key: Ed25519PrivateKey) -> str:
    """A JWS in compact serialisation signed with Ed25519 (RFC 8037 §3.1: alg EdDSA)."""
    protected = json.dumps(dict(header), separators=(",", ":")).encode("utf-8")
    signing_input = f"{b64url(protected)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"


def qweather_jwt(
    key: Ed25519PrivateKey, *, key_id: str, project_id: str, now: datetime, lifetime: timedelta
) -> str:
    """The token QWeather expects: header {alg: EdDSA, kid}, payload {sub, iat, exp}.

    `iat` is 30 s before `now`, as QWeather advises against clock skew.
    """
    issued = int(now.timestamp())
    claims = {"sub": project_id, "iat": issued - 30, "exp": issued + int(lifetime.total_seconds())}
    payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
    return jws_compact({"alg": "EdDSA", "kid": key_id}, payload, key)


def load_private_key(value: SecretStr) -> Ed25519PrivateKey:
    """The Ed25519 private key from PEM text or the path of a PEM file.

    ValueError (one line naming YUJING_QWEATHER_PRIVATE_KEY) when it is neither.
    """
    text = value.get_secret_value().strip()
    if "-----BEGIN" not in text:
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"YUJING_QWEATHER_PRIVATE_KEY: cannot read {path} ({error.strerror}); give the "
                "PEM text or the path of ed25519-private.pem"
            ) from None
    try:
        key = load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(
            "YUJING_QWEATHER_PRIVATE_KEY is not an unencrypted PEM private key (make one with "
            "`openssl genpkey -algorithm ED25519 -out ed25519-private.pem`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(
            f"YUJING_QWEATHER_PRIVATE_KEY is a {type(key).__name__.removeprefix('_')}, "
            "not an Ed25519 key: QWeather signs with Ed25519"
        )
    return key


@dataclass(frozen=True)
class JwtCredential:
    """A QWeather JWT credential: the credential id (kid), project id (sub) and key."""

    key_id: str
    project_id: str
    key: Ed25519PrivateKey


class QWeatherAuth:
    """The request headers that authenticate: a cached JWT (re-signed before it
    expires) or the legacy API key."""

    def __init__(
        self,
        *,
        jwt: JwtCredential | None = None,
        api_key: SecretStr | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        if jwt is None and (api_key is None or not api_key.get_secret_value()):
            raise ValueError(
                "QWeather needs credentials: set YUJING_QWEATHER_KEY_ID, "
                "YUJING_QWEATHER_PROJECT_ID and YUJING_QWEATHER_PRIVATE_KEY (JWT), or "
                "YUJING_QWEATHER_API_KEY"
            )
        self._jwt = jwt
        self._api_key = api_key
        self._clock = clock
        self._token: str | None = None
        self._expires: datetime | None = None

    def headers(self) -> dict[str, str]:
        if self._jwt is None:
            assert self._api_key is not None
            return {"X-QW-Api-Key": self._api_key.get_secret_value()}
        now = self._clock()
        if self._token is None or self._expires is None or now >= self._expires - _TOKEN_MARGIN:
            self._token = qweather_jwt(
                self._jwt.key,
                key_id=self._jwt.key_id,
                project_id=self._jwt.project_id,
                now=now,
                lifetime=TOKEN_LIFETIME,
            )
            self._expires = now + TOKEN_LIFETIME
        return {"Authorization": f"Bearer {self._token}"}

    def secrets(self) -> list[str]:
        """What must never appear in a message."""
        found = [self._token] if self._token else []
        if self._api_key is not None and self._api_key.get_secret_value():
            found.append(self._api_key.get_secret_value())
        return found
