"""What a request may cost before any route sees it: body size, body time, NUL characters.

`RequestLimits` is the outermost ASGI middleware. For every HTTP request it

- refuses a declared `Content-Length` above the route's limit at once (413),
  without reading a byte of the body;
- otherwise reads the body itself, counting the bytes as they stream in
  (chunked uploads declare no length), and refuses it (413) as soon as it
  passes the limit — so at most `limit` bytes are ever held, and the route
  (form parsing, Twilio's signature check) is never entered;
- gives the body `read_timeout` seconds to arrive (408): a client trickling a
  body byte by byte does not hold a connection and a buffer for ever (the
  request head has its own deadline in `dispatcher.web.server`);
- refuses NUL characters in the path, the query and the body (400):
  PostgreSQL text cannot hold them, and no form or webhook of ours needs them.

Refusals are short plain text and close the connection (the rest of an
oversized body is not worth reading). Limits are per route prefix
(`BODY_LIMITS`): Twilio's webhooks post a few KiB, console forms less.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BODY_LIMITS", "DEFAULT_BODY_LIMIT", "RequestLimits", "body_limit"]

KIB: Final = 1024

#: (path prefix, most bytes of a request body), the first matching prefix wins.
BODY_LIMITS: Final[Sequence[tuple[str, int]]] = (
    ("/webhooks/", 64 * KIB),  # Twilio: a few hundred bytes of form, an SMS of 1600 chars
    ("/console/login", 4 * KIB),  # a name, a password, a token
    ("/console/", 32 * KIB),  # a note of 500 characters and up to 1000 ticked zone codes
    ("/ack/", 8 * KIB),  # the confirm button and a note
)
#: Every other route answers GET and takes no body worth the name.
DEFAULT_BODY_LIMIT: Final = 8 * KIB

_PERCENT_NUL: Final = re.compile(rb"%00")


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY_LIMIT


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class RequestLimits:
    """ASGI middleware enforcing `BODY_LIMITS`, a body deadline and no NUL characters."""

    def __init__(self, app: ASGIApp, *, read_timeout: float) -> None:
        self.app = app
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = bytes(scope.get("raw_path") or scope["path"].encode()) + scope["query_string"]
        if b"\x00" in target or _PERCENT_NUL.search(target):
            await _refuse(send, 400, "NUL characters are not accepted in a request")
            return
        limit = body_limit(scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await _refuse(send, 413, f"request body too large: at most {limit // KIB} KiB here")
            return
        try:
            body = await asyncio.wait_for(_read_body(receive, limit), self.read_timeout)
        except _TooLarge:
            await _refuse(send, 413, f"request body too large: at most {limit // KIB} KiB here")
            return
        except TimeoutError:
            await _refuse(send, 408, "request body not received in time")
            return
        except _ClientGone:
            return
        if b"\x00" in body or _PERCENT_NUL.search(body):
            await _refuse(send, 400, "NUL characters are not accepted in a request")
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when not declared; -1 when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 19 else -1
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
