"""What a request may cost (issue 13): bodies bounded before parsing, slow clients cut off.

The body limits are checked through the application (TestClient) and, where
the point is what happens on the wire (an answer before the body is sent, a
connection closed), against the daemon's own uvicorn configuration on
127.0.0.1 with real sockets.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.settings import Settings
from dispatcher.storage.db import make_engine, session_factory
from dispatcher.storage.models import Base
from dispatcher.web.app import create_app
from dispatcher.web.limits import body_limit
from dispatcher.web.state import AppState
from tests.support import LIULIN
from tests.web.serving import serving

NOW = datetime(2026, 1, 7, 1, 0, tzinfo=UTC)
READ_TIMEOUT = 1.0
IDLE_TIMEOUT = 1


def settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "config_dir": LIULIN,
        "twilio_auth_token": SecretStr("0123456789abcdef0123456789abcdef"),
        "public_base_url": "https://yujing.example.gov.cn",
        "secret_key": SecretStr("test-secret-key-for-limits-0123456789"),
        "http_read_timeout_seconds": READ_TIMEOUT,
        "http_idle_timeout_seconds": IDLE_TIMEOUT,
    }
    return Settings(_env_file=None, **(values | changes))


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    # what is measured here is HTTP; one database is enough
    engine = make_engine(f"sqlite:///{tmp_path / 'yujing.db'}")
    Base.metadata.create_all(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def app(sessions: sessionmaker[Session]) -> FastAPI:
    state = AppState(
        sessions=sessions,
        settings=settings(),
        clock=lambda: NOW,
        feed_source="open-meteo",
        started_at=NOW,
    )
    return create_app(state)


WEBHOOKS = ["/webhooks/twilio/sms", "/webhooks/twilio/status", "/webhooks/twilio/voice/ack?n=1"]


# --- through the application


@pytest.mark.parametrize("path", WEBHOOKS)
def test_an_oversized_webhook_body_is_refused_before_any_route_reads_it(
    app: FastAPI, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = "Body=" + "1" * (body_limit(path) + 1)
    with caplog.at_level(logging.INFO, logger="yujing.web"):
        response = TestClient(app).post(
            path, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert response.status_code == 413
    assert response.text.startswith("request body too large: at most 64 KiB")
    assert response.headers["connection"] == "close"
    assert not caplog.records, "the webhook (and its signature check) was never entered"


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/console/login", 4 * 1024),
        ("/console/alerts/K7Q2/ack", 32 * 1024),
        ("/ack/sometoken", 8 * 1024),
        ("/healthz", 8 * 1024),
    ],
)
def test_each_route_family_has_its_own_limit(app: FastAPI, path: str, limit: int) -> None:
    client = TestClient(app, follow_redirects=False)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post(path, content="a=" + "x" * limit, headers=form).status_code == 413
    within = client.post(path, content="a=" + "x" * (limit - 100), headers=form)
    assert within.status_code not in (413, 500), "a body within the limit reaches the route"


def test_nul_characters_are_refused_in_the_path_the_query_and_the_body(app: FastAPI) -> None:
    client = TestClient(app, follow_redirects=False)
    assert client.get("/console/alerts/K7%00Q2").status_code == 400
    assert client.get("/console/?q=a%00b").status_code == 400
    login = client.post(
        "/console/login",
        content="username=zh%00ang&password=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 400
    assert "NUL" in login.text


# --- on the wire


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or `timeout` passes without a byte)."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            message = f"no answer and no close within {timeout} s: {received!r}"
            raise AssertionError(message) from None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_a_declared_length_over_the_limit_is_answered_before_the_body_is_sent(
    app: FastAPI,
) -> None:
    with serving(app, settings()) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 104857600\r\n\r\n"
        )
        answer = _read_all(sock, timeout=3)
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def test_a_chunked_body_is_cut_off_at_the_limit_without_being_held(app: FastAPI) -> None:
    limit = body_limit("/webhooks/twilio/sms")
    with serving(app, settings()) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 8192
        sent = 0
        try:
            while sent < 100 * limit:  # a 6 MiB upload, unless the server stops it
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock, timeout=3)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < 100 * limit, "the server closed the connection instead of reading on"


def test_a_body_that_trickles_in_is_cut_off(app: FastAPI) -> None:
    with serving(app, settings()) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\nBody=1"
        )
        started = time.monotonic()
        answer = _read_all(sock, timeout=READ_TIMEOUT + 3)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < READ_TIMEOUT + 2


def test_slow_connections_do_not_block_a_request_and_are_closed_in_time(app: FastAPI) -> None:
    # a head deadline long enough that a normal request answered well within it
    # shows the slow ones held nobody up, even on a busy machine
    deadline = 4.0
    with serving(app, settings(http_read_timeout_seconds=deadline)) as port:
        slow = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
            slow.append(sock)
        opened = time.monotonic()

        started = time.monotonic()
        normal = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert normal.status_code == 200
        assert time.monotonic() - started < deadline / 2, "the slow clients held up others"

        # one that keeps sending a header line now and then: the deadline is for the
        # whole head, not for each byte
        trickler = slow[0]
        for _ in range(3):
            time.sleep(deadline / 4)
            try:
                trickler.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break

        for sock in slow:
            remaining = max(0.1, opened + deadline + 3 - time.monotonic())
            assert _read_all(sock, timeout=remaining) == b"", "closed without an answer"
            sock.close()
        assert time.monotonic() - opened < deadline + 3


def test_an_idle_keep_alive_connection_is_closed(app: FastAPI) -> None:
    with serving(app, settings()) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = _read_all(sock, timeout=IDLE_TIMEOUT + 3)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - started < IDLE_TIMEOUT + 2
