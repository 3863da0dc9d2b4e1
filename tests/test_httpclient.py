"""The shared HTTP client's transport: several small pools, least-loaded first.

Against a real HTTP server on 127.0.0.1 that holds every request until told to
answer, so the requests in flight per pool can be seen.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import respx

from dispatcher.httpclient import USER_AGENT, PooledTransport, shared_client


@dataclass
class HeldServer:
    """Answers 200 to every request once `release` is set; counts connections."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0
    waiting: int = 0
    user_agents: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while request_line := await reader.readline():
                assert request_line.startswith(b"GET ")
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "user-agent":
                        self.user_agents.append(value.strip())
                self.waiting += 1
                await self.release.wait()
                self.waiting -= 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def held_server() -> AsyncIterator[tuple[HeldServer, str]]:
    state = HeldServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}/"
    finally:
        server.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def test_pools_split_the_connections_evenly() -> None:
    assert PooledTransport(32).pools == 4
    assert PooledTransport(8).pools == 1
    assert PooledTransport(9).pools == 2
    assert PooledTransport(20, pool_size=8).pools == 3
    with pytest.raises(ValueError, match="at least 1"):
        PooledTransport(0)
    with pytest.raises(ValueError, match="at least 1"):
        PooledTransport(4, pool_size=0)


def test_the_pools_share_one_tls_context_that_verifies_certificates() -> None:
    # building one reads the CA bundle: once per client, not once per pool
    transport = PooledTransport(40)
    contexts = {id(pool._pool._ssl_context) for pool in transport._pools}
    assert transport.pools == 5 and len(contexts) == 1
    context = transport._pools[0]._pool._ssl_context
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_requests_go_to_the_least_loaded_pool_and_release_when_read() -> None:
    transport = PooledTransport(20, pool_size=8)  # three pools of 7
    async with held_server() as (server, url), httpx.AsyncClient(transport=transport) as client:
        sends = [asyncio.create_task(client.get(url)) for _ in range(20)]
        await until(lambda: server.waiting == 20)
        assert transport.in_flight == (7, 7, 6)
        assert server.connections == 20
        server.release.set()
        responses = await asyncio.gather(*sends)
        assert [r.text for r in responses] == ["ok"] * 20
        assert transport.in_flight == (0, 0, 0)


async def test_one_at_a_time_reuses_one_kept_alive_connection() -> None:
    transport = PooledTransport(32)
    async with held_server() as (server, url), httpx.AsyncClient(transport=transport) as client:
        server.release.set()
        for _ in range(10):
            assert (await client.get(url)).status_code == 200
        assert server.connections == 1
        assert transport.in_flight == (0, 0, 0, 0)


async def test_a_streamed_body_holds_its_slot_until_closed_once() -> None:
    transport = PooledTransport(2, pool_size=1)
    async with held_server() as (server, url), httpx.AsyncClient(transport=transport) as client:
        server.release.set()
        async with client.stream("GET", url) as response:
            assert transport.in_flight == (1, 0)
            assert await response.aread() == b"ok"
            await response.aclose()
            await response.aclose()
            assert transport.in_flight == (0, 0)
        # the next request, nothing in flight, goes to the first pool again
        async with client.stream("GET", url):
            assert transport.in_flight == (1, 0)
        assert transport.in_flight == (0, 0)


async def test_a_failed_request_gives_its_slot_back() -> None:
    async with held_server() as (_, url):
        pass  # the server is gone: connections are refused
    transport = PooledTransport(16)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
        assert transport.in_flight == (0, 0)


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    transport = PooledTransport(16)
    async with held_server() as (server, url), httpx.AsyncClient(transport=transport) as client:
        send = asyncio.create_task(client.get(url))
        await until(lambda: server.waiting == 1)
        assert transport.in_flight == (1, 0)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        assert transport.in_flight == (0, 0)
        server.release.set()


async def test_respx_mocks_every_inner_pool() -> None:
    transport = PooledTransport(24)
    async with httpx.AsyncClient(transport=transport) as client:
        with respx.mock(assert_all_called=True) as mock:
            route = mock.post("https://api.example.test/x").respond(201, json={"sid": "SM1"})
            answers = await asyncio.gather(
                *(client.post("https://api.example.test/x") for _ in range(30))
            )
        assert route.call_count == 30
        assert {a.status_code for a in answers} == {201}
        assert transport.in_flight == (0, 0, 0)


async def test_the_shared_client_names_itself_and_times_out() -> None:
    client = shared_client(connections=16, timeout_seconds=0.2)
    async with held_server() as (server, url), client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)
        assert server.user_agents == [USER_AGENT]
        server.release.set()
