"""The HTTP server: uvicorn on h11, with deadlines for slow clients.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but
only once a first response has been sent, and it has no deadline for reading
a request's head: a client that connects and sends nothing, or sends a header
line every few seconds (slow loris), holds its connection for ever. Two
hundred of them were held for a minute on the version this replaced.

`HeadDeadlineProtocol` adds that deadline: from the moment a connection opens
(or its previous response ends), the whole request head must arrive within
`http_read_timeout_seconds`, however it trickles in; otherwise the connection
is closed. The body then has the same time again (`dispatcher.web.limits`).
`http_idle_timeout_seconds` is uvicorn's keep-alive timeout, and
`http_max_connections` bounds open connections (uvicorn answers 503 beyond it).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from dispatcher.settings import Settings

__all__ = ["HeadDeadlineProtocol", "server_config"]


class HeadDeadlineProtocol(H11Protocol):
    """h11 with a deadline for each request head (see the module docstring)."""

    head_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaited: object = None  # the cycle that was current when the head was awaited

    @classmethod
    def with_timeout(cls, seconds: float) -> type[HeadDeadlineProtocol]:
        """This protocol with its own head deadline (uvicorn instantiates the class)."""
        return type(cls.__name__, (cls,), {"head_timeout": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self.cycle is not self._awaited:
            self._cancel()  # a new request's head has been read: it has its deadline no more

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()  # the next request's head, on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel()
        self._awaited = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _cancel(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's configuration for the application, with the settings' limits and deadlines."""
    values: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "http": HeadDeadlineProtocol.with_timeout(settings.http_read_timeout_seconds),
        "timeout_keep_alive": settings.http_idle_timeout_seconds,
        "limit_concurrency": settings.http_max_connections,
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        **overrides,
    }
    return uvicorn.Config(app, **values)
