"""Fixtures shared by the channel tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """One TLS context for the session: loading the CA bundle per client is slow."""
    return ssl.create_default_context()


@pytest.fixture
async def http(tls: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """The shared client a channel is given (requests are mocked with respx)."""
    async with httpx.AsyncClient(timeout=5.0, verify=tls) as client:
        yield client
