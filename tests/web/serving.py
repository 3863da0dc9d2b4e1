"""A real HTTP server for tests that need real sockets: the daemon's uvicorn configuration
(`dispatcher.web.server.server_config`) on 127.0.0.1, in a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from dispatcher.settings import Settings
from dispatcher.web.server import server_config


@contextmanager
def serving(app: ASGIApp, settings: Settings, **overrides: Any) -> Iterator[int]:
    """Serve `app` as `yujing run` does, on a free port of 127.0.0.1; yields the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port, **overrides))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[listener])), name="http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()
