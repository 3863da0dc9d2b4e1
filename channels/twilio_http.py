"""httpx-backed HTTP clients for the `twilio` package.

The `twilio` REST client does its I/O through a pluggable ``http_client``:
``twilio.http.HttpClient`` for the synchronous calls (``messages.create``) and
``twilio.http.AsyncHttpClient`` — the same interface with ``is_async=True`` and
an ``async def request`` — for the ``*_async`` calls (``messages.create_async``).
``Client.request_async`` refuses any client whose ``is_async`` is false. Its own
implementations use requests and aiohttp; these use httpx instead, so that:

- every request goes through the one shared ``httpx.AsyncClient`` the daemon
  owns (connection pool, timeouts and proxy configured once, never a client per
  request);
- tests mock the network edge with respx like every other HTTP call;
- ``api_base`` can point the whole Twilio API at a local test double.

The twilio package still does what it is good at: resource URLs, form-field
names, Basic auth, headers and error parsing (``TwilioRestException``).
"""

from __future__ import annotations

import functools
import logging
from contextvars import ContextVar
from typing import Any

import httpx
from twilio.http import AsyncHttpClient, HttpClient
from twilio.http.response import Response

__all__ = ["AsyncHttpxTwilioClient", "HttpxTwilioClient", "rebase_url"]

_logger = logging.getLogger(__name__)


def _parse_api_base(api_base: str | None) -> httpx.URL | None:
    if api_base is None:
        return None
    base = httpx.URL(api_base)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(
            f"Twilio API base {api_base!r} is not an http(s) URL with a host; "
            "expected something like https://api.twilio.com or http://127.0.0.1:8099"
        )
    return base


def rebase_url(url: str, base: httpx.URL | None) -> str:
    """Move `url` onto `base`: scheme, host and port replaced, `base`'s path prefixed.

    ``rebase_url("https://api.twilio.com/2010-04-01/x.json", URL("http://127.0.0.1:8099"))``
    is ``"http://127.0.0.1:8099/2010-04-01/x.json"``. With no base, `url` is unchanged.
    """
    if base is None:
        return url
    return _rebased_prefix(base) + _path_and_query(url)


@functools.lru_cache(maxsize=8)
def _rebased_prefix(base: httpx.URL) -> str:
    """`base` without its trailing slash: what every rebased URL starts with."""
    return str(base.copy_with(path=base.path.rstrip("/") or "/", query=None)).rstrip("/")


def _path_and_query(url: str) -> str:
    """The path (and query) of an absolute URL, from its first slash after the host."""
    _, separator, rest = url.partition("://")
    if not separator:
        return str(httpx.URL(url).raw_path.decode("ascii"))
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def _build_request(
    http: httpx.Client | httpx.AsyncClient,
    base: httpx.URL | None,
    method: str,
    uri: str,
    params: dict[str, object] | None,
    data: dict[str, object] | None,
    headers: dict[str, str] | None,
    timeout: float | None,
) -> httpx.Request:
    """Translate the arguments twilio passes to `HttpClient.request` into an httpx request."""
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    body: dict[str, Any] = {}
    content_type = (headers or {}).get("Content-Type", "")
    # Mirrors twilio's own clients: a few endpoints take JSON, the rest forms.
    if content_type in ("application/json", "application/scim+json"):
        body["json"] = data
    else:
        body["data"] = data
    return http.build_request(
        method.upper(),
        rebase_url(uri, base),
        params=params,  # type: ignore[arg-type]  # twilio types values as object
        headers=headers,
        # None from twilio means "no preference": keep the shared client's
        # timeouts rather than disabling them.
        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        **body,
    )


def _twilio_response(response: httpx.Response) -> Response:
    # httpx.Headers stays case-insensitive, which `Retry-After` lookups rely on.
    return Response(response.status_code, response.text, response.headers)


class HttpxTwilioClient(HttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """Synchronous twilio HTTP client over an ``httpx.Client`` (for CLI tools and scripts).

    Pass it as ``twilio.rest.Client(sid, token, http_client=HttpxTwilioClient(http))``.
    The caller owns and closes `http`.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_base: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(logger or _logger, is_async=False, timeout=None)
        self._http = http
        self._base = _parse_api_base(api_base)

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; httpx errors (timeouts, connection errors) propagate."""
        request = _build_request(
            self._http, self._base, method, uri, params, data, headers, timeout
        )
        response = self._http.send(
            request,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=allow_redirects,
        )
        # Not twilio's log_request: it logs every header at INFO. URL and status
        # only, at DEBUG; the URL carries the account SID, never the token.
        self.logger.debug("twilio %s %s -> %s", request.method, request.url, response.status_code)
        return _twilio_response(response)

    def __repr__(self) -> str:
        return f"HttpxTwilioClient(api_base={str(self._base) if self._base else None!r})"


class AsyncHttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """Asynchronous twilio HTTP client over a shared ``httpx.AsyncClient``.

    Pass it as ``twilio.rest.Client(sid, token, http_client=AsyncHttpxTwilioClient(http))``
    and use the ``*_async`` resource methods. The caller owns and closes `http`.

    Twilio's exceptions keep status, code and message but drop the response
    headers (``Retry-After`` among them), so the last response is also kept, per
    asyncio task, in `last_response`.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(logger or _logger, is_async=True, timeout=None)
        self._http = http
        self._base = _parse_api_base(api_base)
        # A ContextVar, not an attribute: concurrent sends share this client,
        # and each asyncio task must see its own response.
        self._last_response: ContextVar[Response | None] = ContextVar(
            f"twilio_last_response_{id(self):x}", default=None
        )

    @property
    def last_response(self) -> Response | None:
        """The response to the latest request made by the current asyncio task.

        None before any request, and while one is in flight or after it failed
        without a response (timeout, connection error).
        """
        return self._last_response.get()

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; httpx errors (timeouts, connection errors) propagate."""
        self._last_response.set(None)
        request = _build_request(
            self._http, self._base, method, uri, params, data, headers, timeout
        )
        response = await self._http.send(
            request,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=allow_redirects,
        )
        self.logger.debug("twilio %s %s -> %s", request.method, request.url, response.status_code)
        result = _twilio_response(response)
        self._last_response.set(result)
        return result

    def __repr__(self) -> str:
        return f"AsyncHttpxTwilioClient(api_base={str(self._base) if self._base else None!r})"
