"""Village broadcast (村村响 / IP broadcast) through a vendor's HTTP gateway.

County IP-broadcast platforms expose ad-hoc HTTP APIs: terminal or group ids,
TTS text, repeat count, volume. So this channel is driven by data, in two
parts, both validated here by pydantic models from plain dicts (the dispatcher
loads the YAML with line numbers and turns a `pydantic.ValidationError` into
file:line:column messages — this module does no file I/O of its own):

**The vendor profile** (`BroadcastProfile`, shipped in
``channels/broadcast_profiles/*.yaml``: ``generic`` and the worked example
``ip-broadcast-v2``) says how to talk to the gateway:

- ``request``: ``method`` and ``path`` (appended to the gateway base URL, which
  is a setting), extra ``headers`` (templates);
- ``auth``: ``none``; ``basic`` (username + secret); ``bearer`` (the secret in
  a header, ``Authorization: Bearer …`` by default); ``query`` (the secret as
  a query parameter); ``hmac`` (a signature header over a ``string_to_sign``
  template, with timestamp and app-id headers). The credentials themselves are
  settings, never in the profile;
- ``addressing.targets``: whether the gateway is addressed by ``groups`` or by
  ``terminals`` (ids from the county's broadcast.yaml, below);
- ``body``: ``format`` ``json`` or ``form`` and a ``template`` — a YAML
  mapping whose string leaves are Jinja2 templates (sandboxed). A leaf that is
  exactly one ``{{ expression }}`` keeps the expression's type (a list of ids
  stays a JSON array, a repeat count a number); any other string renders as
  text. Values are never pasted into JSON text, so a quote in a warning cannot
  break or inject into the request;
- ``success``: the HTTP statuses that mean accepted, and optionally a JSON path
  (``code``, ``data.result``, ``data.0.id``) with the values meaning success
  (``values``) or "busy, try again" (``retry_values``), where to find the
  vendor's task id (``provider_id_path``) and its error text (``message_path``);
- ``defaults`` (``repeat``, ``volume`` 0–100) and ``limits`` (``max_chars``,
  ``per_second``, ``per_minute`` of the whole gateway).

Template variables: ``text`` (the warning), ``targets`` (the village's group
or terminal ids, per ``addressing``), ``groups``, ``terminals``, ``repeat``,
``volume``, ``address``, ``township``, ``village``, ``idempotency_key``,
``notification_id``, ``timestamp`` (s), ``timestamp_ms``, ``app_id``. The HMAC
``string_to_sign`` also gets ``method``, ``path``, ``query`` and ``body`` (the
exact request body) — and ``timestamp`` in the profile's unit. Templates are
checked when the profile is validated: a syntax error or an unknown variable
is a validation error at that field.

**The county's terminals** (`BroadcastDirectory`, the county's
``broadcast.yaml``; see examples/liulin/broadcast.yaml) map each village to its
group and terminal ids, with optional per-village repeat/volume::

    broadcast:
      defaults: {repeat: 3, volume: 90}      # optional, over the profile's
      villages:
        - township: 三交镇
          village: 三交村
          groups: [G-SJ-01]
          terminals: [T-SJ-0101, T-SJ-0102]
          volume: 100                         # optional

A zone reaches the loudspeakers of its village: its broadcast address, the
`OutgoingMessage.address`, is ``"{township}/{village}"`` (`village_address`).

Classification: an unknown village or a body over ``max_chars`` is PERMANENT
(``unknown_village`` / ``too_long`` — never cut), so the worker fails over to
SMS to the village's 防灾责任人; timeouts, connection errors, 408/425/429/5xx
(``Retry-After`` honoured) and ``retry_values`` are RETRYABLE; another status,
or a JSON value not in ``values``, is PERMANENT; an accepted status whose body
lacks the JSON path is RETRYABLE (it may not have played).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import httpx
from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, SecretStr, field_validator, model_validator

from channels.base import Addressing as ChannelAddressing
from channels.base import ChannelDeclaration, ChannelLimits, Medium, OutgoingMessage, SendResult
from channels.http_result import (
    classify_status,
    guarded_send,
    json_body,
    refuse_if_too_long,
    send_request,
    short_text,
)
from channels.redaction import Redactor, protect_in_http_logs
from rules.config import Strict

__all__ = [
    "BUILTIN_PROFILES",
    "DECLARATION",
    "BroadcastChannel",
    "BroadcastDirectory",
    "BroadcastProfile",
    "VillageTerminals",
    "builtin_profile_path",
    "load_broadcast_directory",
    "load_broadcast_profile",
    "village_address",
]

_logger = logging.getLogger(__name__)

#: Vendor profiles shipped in channels/broadcast_profiles/.
BUILTIN_PROFILES = ("generic", "ip-broadcast-v2")

# Heard on a loudspeaker by anyone nearby: no link. The limits are the vendor
# profile's (`ProfileLimits`), so the declaration has none of its own.
DECLARATION = ChannelDeclaration(
    name="broadcast",
    label="村村响广播",
    medium=Medium.BROADCAST,
    addressing=ChannelAddressing.VILLAGE,
    carries_links=False,
)

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SINGLE_EXPRESSION = re.compile(r"\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}", re.DOTALL)

# Sample values every template is rendered with when a profile is validated.
_SAMPLE: dict[str, Any] = {
    "text": "【柳林县自然资源局】寒潮黄色预警：测试。",
    "targets": ["G-1", "G-2"],
    "groups": ["G-1", "G-2"],
    "terminals": ["T-1"],
    "repeat": 2,
    "volume": 80,
    "address": "三交镇/三交村",
    "township": "三交镇",
    "village": "三交村",
    "idempotency_key": "alert:1:new:village:broadcast",
    "notification_id": 1,
    "timestamp": 1767657600,
    "timestamp_ms": 1767657600000,
    "app_id": "app",
}
_SIGNING_SAMPLE: dict[str, Any] = {
    **_SAMPLE,
    "method": "POST",
    "path": "/api",
    "query": "",
    "body": "{}",
}


def village_address(township: str, village: str) -> str:
    """The broadcast address of a village: what `OutgoingMessage.address` holds."""
    return f"{township}/{village}"


# --- templates -----------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _compiled_expression(source: str) -> Callable[..., Any]:
    return _ENV.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=256)
def _compiled_template(source: str) -> Any:
    return _ENV.from_string(source)


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """Render one text template (headers, string_to_sign) in the sandbox."""
    return str(_compiled_template(source).render(context))


def render_structure(node: Any, context: Mapping[str, Any]) -> Any:
    """Render a structured template: string leaves are templates, the rest kept.

    A leaf that is exactly one ``{{ expression }}`` keeps the expression's
    native type; other strings render as text. Raises jinja2 errors (syntax,
    undefined variable, sandbox violation).
    """
    if isinstance(node, str):
        match = _SINGLE_EXPRESSION.fullmatch(node.strip())
        if match is not None:
            value = _compiled_expression(match["expr"])(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return value
        return render_text(node, context)
    if isinstance(node, Mapping):
        return {str(key): render_structure(value, context) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [render_structure(item, context) for item in node]
    return node


def _check_structure(template: Any) -> Any:
    try:
        rendered = render_structure(template, _SAMPLE)
        json.dumps(rendered)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from None
    except TypeError as exc:
        raise ValueError(f"template renders a value that is not JSON data: {exc}") from None
    return template


def _check_text(source: str, context: Mapping[str, Any]) -> str:
    try:
        render_text(source, context)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from None
    return source


# --- the vendor profile -------------------------------------------------------------


class NoAuth(Strict):
    type: Literal["none"] = "none"


class BasicAuth(Strict):
    """HTTP Basic: the username and the secret from the settings."""

    type: Literal["basic"]


class BearerAuth(Strict):
    """The secret in a header: ``{header}: {prefix}{secret}``."""

    type: Literal["bearer"]
    header: str = "Authorization"
    prefix: str = "Bearer "


class QueryTokenAuth(Strict):
    """The secret as a query parameter (kept out of logs like the IM robots' keys)."""

    type: Literal["query"]
    param: str = Field(min_length=1)


class HmacAuth(Strict):
    """A signature header: ``{prefix}{encoding(HMAC-SHA256(secret, string_to_sign))}``."""

    type: Literal["hmac"]
    signature_header: str = Field(min_length=1)
    string_to_sign: str = "{{ timestamp }}\n{{ body }}"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    timestamp_unit: Literal["s", "ms"] = "s"
    app_id_header: str | None = None

    @field_validator("string_to_sign")
    @classmethod
    def _renders(cls, value: str) -> str:
        return _check_text(value, _SIGNING_SAMPLE)


Auth = Annotated[
    NoAuth | BasicAuth | BearerAuth | QueryTokenAuth | HmacAuth, Field(discriminator="type")
]


class RequestSpec(Strict):
    method: Literal["POST", "PUT"] = "POST"
    path: str = Field(pattern=r"^/", description="appended to the gateway base URL")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers_render(cls, value: dict[str, str]) -> dict[str, str]:
        for source in value.values():
            _check_text(source, _SAMPLE)
        return value


class Addressing(Strict):
    targets: Literal["groups", "terminals"]


class BodySpec(Strict):
    format: Literal["json", "form"] = "json"
    template: dict[str, Any]

    @field_validator("template")
    @classmethod
    def _template_renders(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_structure(value)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _form_is_flat(self) -> BodySpec:
        if self.format == "form":
            rendered = render_structure(self.template, _SAMPLE)
            for key, value in rendered.items():
                if not _form_value(value):
                    raise ValueError(
                        f"form field {key!r} renders to {type(value).__name__}; a form body "
                        "takes text, numbers or lists of them (use a json body for nesting)"
                    )
        return self


_JSON_PATH = r"^[^.\s]+(\.[^.\s]+)*$"


class SuccessSpec(Strict):
    status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    json_path: str | None = Field(None, pattern=_JSON_PATH)
    values: list[Any] = Field(default_factory=lambda: [0])
    retry_values: list[Any] = Field(default_factory=list)
    provider_id_path: str | None = Field(None, pattern=_JSON_PATH)
    message_path: str | None = Field(None, pattern=_JSON_PATH)

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 200 <= s < 300]
        if bad:
            raise ValueError(f"success statuses must be 2xx, got {bad}")
        return value


class PlayDefaults(Strict):
    repeat: int = Field(2, ge=1, le=10)
    volume: int = Field(80, ge=0, le=100)


class ProfileLimits(Strict):
    max_chars: int | None = Field(None, gt=0)
    per_second: float | None = Field(None, gt=0)
    per_minute: int | None = Field(None, gt=0)


class BroadcastProfile(Strict):
    """How to talk to one vendor's broadcast gateway (see the module docstring)."""

    vendor: str = Field(min_length=1)
    description: str = ""
    request: RequestSpec
    auth: Auth = NoAuth()
    addressing: Addressing
    body: BodySpec
    success: SuccessSpec = SuccessSpec()
    defaults: PlayDefaults = PlayDefaults()
    limits: ProfileLimits = ProfileLimits()


def load_broadcast_profile(document: Mapping[str, Any]) -> BroadcastProfile:
    """Validate a vendor profile (the parsed YAML). Raises pydantic.ValidationError."""
    return BroadcastProfile.model_validate(document)


def builtin_profile_path(vendor: str) -> Path:
    """Path of a profile shipped with the package (`BUILTIN_PROFILES`)."""
    if vendor not in BUILTIN_PROFILES:
        raise ValueError(
            f"no built-in broadcast profile {vendor!r}; built-in: {', '.join(BUILTIN_PROFILES)} "
            "(or give the path of your own profile YAML)"
        )
    return Path(str(resources.files("channels") / "broadcast_profiles" / f"{vendor}.yaml"))


# --- the county's terminals -----------------------------------------------------------


class VillageTerminals(Strict):
    """The loudspeakers of one village: gateway group ids and/or terminal ids."""

    township: str = Field(min_length=1)
    village: str = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)
    terminals: list[str] = Field(default_factory=list)
    repeat: int | None = Field(None, ge=1, le=10)
    volume: int | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _has_a_target(self) -> VillageTerminals:
        if not self.groups and not self.terminals:
            raise ValueError(f"{self.address}: give at least one of groups or terminals")
        return self

    @property
    def address(self) -> str:
        return village_address(self.township, self.village)


class PlayOverrides(Strict):
    repeat: int | None = Field(None, ge=1, le=10)
    volume: int | None = Field(None, ge=0, le=100)


class BroadcastDirectory(Strict):
    """Which terminals play a village's warnings (the county's broadcast.yaml)."""

    defaults: PlayOverrides = PlayOverrides()
    villages: list[VillageTerminals] = Field(default_factory=list)

    @field_validator("villages")
    @classmethod
    def _unique(cls, value: list[VillageTerminals]) -> list[VillageTerminals]:
        seen: set[str] = set()
        for entry in value:
            if entry.address in seen:
                raise ValueError(f"village {entry.address} is listed twice")
            seen.add(entry.address)
        return value

    def village(self, address: str) -> VillageTerminals | None:
        """The village at a broadcast address, or None."""
        return next((v for v in self.villages if v.address == address), None)

    def missing(self, addresses: Iterable[str]) -> list[str]:
        """Those of `addresses` with no terminals here (zones nobody will hear)."""
        known = {v.address for v in self.villages}
        return sorted({a for a in addresses if a not in known})


class _BroadcastFile(Strict):
    broadcast: BroadcastDirectory


def load_broadcast_directory(document: Mapping[str, Any]) -> BroadcastDirectory:
    """Validate a county's broadcast.yaml (the parsed YAML, top key ``broadcast``).

    Raises pydantic.ValidationError; its locations start with ``broadcast``, as
    in the file.
    """
    return _BroadcastFile.model_validate(document).broadcast


# --- the channel -------------------------------------------------------------------------


class BroadcastChannel:
    """Plays each warning, as TTS, on the loudspeakers of one village."""

    name: str
    limits: ChannelLimits
    declaration: ChannelDeclaration

    def __init__(
        self,
        *,
        profile: BroadcastProfile,
        directory: BroadcastDirectory,
        base_url: str,
        http: httpx.AsyncClient,
        username: str | None = None,
        secret: SecretStr | None = None,
        clock: Callable[[], float] = time.time,
        name: str = DECLARATION.name,
    ) -> None:
        """One gateway (`base_url`), spoken to as `profile` says.

        `username` (basic auth; app id for hmac) and `secret` (password, token
        or signing key) are the gateway credentials. Raises ValueError, naming
        the setting, when the URL is not http(s), the profile's auth needs a
        credential that is missing, or a village lacks the ids the profile
        addresses.
        """
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"YUJING_BROADCAST_BASE_URL {base_url!r} is not an http(s) URL with a host "
                "(e.g. http://10.20.0.5:8080)"
            )
        auth = profile.auth
        if not isinstance(auth, NoAuth) and (secret is None or not secret.get_secret_value()):
            raise ValueError(
                f"broadcast profile {profile.vendor!r} uses {auth.type} auth: "
                "set YUJING_BROADCAST_SECRET"
            )
        if isinstance(auth, BasicAuth) and not username:
            raise ValueError(
                f"broadcast profile {profile.vendor!r} uses basic auth: "
                "set YUJING_BROADCAST_USERNAME"
            )
        kind = profile.addressing.targets
        lacking = [v.address for v in directory.villages if not getattr(v, kind)]
        if lacking:
            raise ValueError(
                f"broadcast profile {profile.vendor!r} addresses {kind}, but these villages "
                f"in broadcast.yaml have none: {', '.join(lacking)}"
            )
        self.name = name
        self.declaration = DECLARATION.named(name)
        self.limits = ChannelLimits(
            max_chars=profile.limits.max_chars,
            per_second=profile.limits.per_second,
            per_minute=profile.limits.per_minute,
        )
        self._profile = profile
        self._directory = directory
        self._base_url = base_url.rstrip("/")
        self._http = http
        self._username = username
        self._secret = secret
        self._clock = clock
        secrets = [secret.get_secret_value()] if secret is not None else []
        self._redact = Redactor(secrets)
        if isinstance(auth, QueryTokenAuth):
            protect_in_http_logs(*secrets)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Ask the gateway to play one warning in one village. Never raises."""
        return await guarded_send(_logger, self.name, message, self._redact, self._send)

    async def _send(self, message: OutgoingMessage) -> SendResult:
        village = self._directory.village(message.address)
        if village is None:
            return SendResult.permanent(
                f"no broadcast terminals for {message.address!r} in broadcast.yaml",
                error_code="unknown_village",
            )
        too_long = refuse_if_too_long(self.limits, message.body)
        if too_long is not None:
            return too_long
        response = await send_request(
            self._http, self.build_request(message, village), "broadcast gateway", self._redact
        )
        if isinstance(response, SendResult):
            return response
        return self._classify(response)

    def context(self, message: OutgoingMessage, village: VillageTerminals) -> dict[str, Any]:
        """The template variables for `message` played in `village`."""
        now = self._clock()
        defaults = self._directory.defaults
        return {
            "text": message.body,
            "targets": list(getattr(village, self._profile.addressing.targets)),
            "groups": list(village.groups),
            "terminals": list(village.terminals),
            "repeat": _first(village.repeat, defaults.repeat, self._profile.defaults.repeat),
            "volume": _first(village.volume, defaults.volume, self._profile.defaults.volume),
            "address": village.address,
            "township": village.township,
            "village": village.village,
            "idempotency_key": message.idempotency_key,
            "notification_id": message.notification_id,
            "timestamp": int(now),
            "timestamp_ms": int(now * 1000),
            "app_id": self._username or "",
        }

    def build_request(self, message: OutgoingMessage, village: VillageTerminals) -> httpx.Request:
        """The exact request the gateway receives."""
        profile = self._profile
        context = self.context(message, village)
        document = render_structure(profile.body.template, context)
        headers = {
            k: _header_value(render_text(v, context)) for k, v in profile.request.headers.items()
        }
        if profile.body.format == "json":
            body = json.dumps(document, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        else:
            body = urlencode(_form_fields(document), doseq=True).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        params: dict[str, str] = {}
        auth = profile.auth
        secret = self._secret.get_secret_value() if self._secret is not None else ""
        if isinstance(auth, BasicAuth):
            credential = base64.b64encode(f"{self._username}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {credential}"
        elif isinstance(auth, BearerAuth):
            headers[auth.header] = f"{auth.prefix}{secret}"
        elif isinstance(auth, QueryTokenAuth):
            params[auth.param] = secret
        url = httpx.URL(self._base_url + profile.request.path)
        if params:
            url = url.copy_merge_params(params)
        if isinstance(auth, HmacAuth):
            headers.update(self._hmac_headers(auth, url, body, context, secret))
        return self._http.build_request(profile.request.method, url, content=body, headers=headers)

    def _hmac_headers(
        self,
        auth: HmacAuth,
        url: httpx.URL,
        body: bytes,
        context: Mapping[str, Any],
        secret: str,
    ) -> dict[str, str]:
        timestamp = str(
            context["timestamp"] if auth.timestamp_unit == "s" else context["timestamp_ms"]
        )
        to_sign = render_text(
            auth.string_to_sign,
            {
                **context,
                "timestamp": timestamp,
                "method": self._profile.request.method,
                "path": url.path,
                "query": url.query.decode("ascii"),
                "body": body.decode("utf-8"),
            },
        )
        digest = hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).digest()
        signature = digest.hex() if auth.encoding == "hex" else base64.b64encode(digest).decode()
        headers = {auth.signature_header: f"{auth.prefix}{signature}"}
        if auth.timestamp_header:
            headers[auth.timestamp_header] = timestamp
        if auth.app_id_header:
            headers[auth.app_id_header] = self._username or ""
        return headers

    def _classify(self, response: httpx.Response) -> SendResult:
        success = self._profile.success
        if response.status_code not in success.status:
            return classify_status(response, "broadcast gateway", self._redact) or (
                SendResult.permanent(
                    self._redact(
                        f"broadcast gateway HTTP {response.status_code}, expected "
                        f"{success.status}: {short_text(response)}"
                    ),
                    error_code=f"http_{response.status_code}",
                )
            )
        data = json_body(response)
        found = _lookup(data, success.provider_id_path) if data is not None else _MISSING
        provider_id = None if found is _MISSING or found in (None, "") else str(found)
        if success.json_path is None:
            return SendResult.ok(provider_id=provider_id)
        value = _lookup(data, success.json_path) if data is not None else _MISSING
        if value is _MISSING:
            return SendResult.retryable(
                self._redact(
                    f"broadcast gateway answer has no {success.json_path!r}: {short_text(response)}"
                ),
                error_code="unreadable",
            )
        if value in success.values:
            return SendResult.ok(provider_id=provider_id)
        detail = _lookup(data, success.message_path) if success.message_path else None
        reason = self._redact(
            f"broadcast gateway {success.json_path}={value!r}"
            + (f": {str(detail)[:300]}" if detail not in (None, _MISSING) else "")
        )
        if value in success.retry_values:
            return SendResult.retryable(reason, error_code=str(value))
        return SendResult.permanent(reason, error_code=str(value))

    def __repr__(self) -> str:
        return (
            f"BroadcastChannel(name={self.name!r}, vendor={self._profile.vendor!r}, "
            f"base_url={self._base_url!r}, villages={len(self._directory.villages)})"
        )


_MISSING: Any = object()


# printable ASCII but the space: what a header value keeps as it is
_HEADER_SAFE = "".join(map(chr, range(0x21, 0x7F)))


def _header_value(value: str) -> str:
    """`value` fit for an HTTP header, which holds ASCII only.

    The outbox key of a village names it in Chinese (``…:village:三交镇/三交村:…``),
    and profiles put the key in a header: its other characters are percent-encoded (UTF-8).
    """
    return value if value.isascii() else quote(value, safe=_HEADER_SAFE + " ")


def _lookup(data: Any, path: str | None) -> Any:
    """Follow a dotted path (``data.items.0.id``) through dicts and lists."""
    if path is None:
        return _MISSING
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def _form_value(value: Any) -> bool:
    scalar = (str, int, float, bool)
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(item, scalar) for item in value)
    )


def _form_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {
        key: [text(v) for v in value] if isinstance(value, list) else text(value)
        for key, value in document.items()
    }
