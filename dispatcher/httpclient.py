"""The daemon's one shared HTTP client, over several small connection pools.

Why not one pool: httpcore's pool (httpcore 1.0, under httpx 0.28) does work
proportional to connections × waiting requests every time a request starts or
ends — it re-scans every connection, probes each idle socket with `poll()` to
see whether the server closed it, and hands a freed connection to every
waiting request, all but one of which wake up, fail and queue again
(encode/httpcore#1035; fixed only in forks). At 32 requests in flight on one
client that costs more CPU than the requests themselves: a bare loop of POSTs
to a local server reaches ~600/s with one pool of 32 connections and ~1,700/s
with four pools of 8 (`bench/dispatch_bench.py` prints both), and at 96 in
flight the single pool falls behind far enough for reads to time out.

`PooledTransport` keeps each pool small and sends every request to the pool
with the fewest requests in flight, so no pool ever has requests waiting while
another has room, and a lightly loaded client reuses the first pool's
kept-alive connections. respx still mocks it: it patches httpcore's pool class,
which every inner pool is.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

POOL_SIZE = 8  # connections per inner pool: past ~8, a pool's scans cost more than its sends
USER_AGENT = "yujing/0.1 (+county early-warning dispatcher)"


class PooledTransport(httpx.AsyncBaseTransport):
    """An httpx transport over `ceil(connections / pool_size)` small pools."""

    def __init__(self, connections: int, *, pool_size: int = POOL_SIZE, **transport: Any) -> None:
        if connections < 1 or pool_size < 1:
            raise ValueError(
                f"connections and pool_size must be at least 1, got {connections} and {pool_size}"
            )
        count = math.ceil(connections / pool_size)
        per_pool = math.ceil(connections / count)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        if "verify" not in transport:
            # one TLS context for every pool, as one pool would have: each costs
            # ~25 ms to build (the CA bundle read and parsed), 0.13 s at every start
            trust_env = transport.get("trust_env", True)
            transport["verify"] = httpx.create_ssl_context(trust_env=trust_env)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, **transport) for _ in range(count)]
        self._in_flight = [0] * count

    @property
    def pools(self) -> int:
        return len(self._pools)

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Requests in flight per pool (sent, response body not yet closed)."""
        return tuple(self._in_flight)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loads = self._in_flight
        index = loads.index(min(loads))
        loads[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            loads[index] -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # what an async pool returns
        response.stream = _Releasing(stream, lambda: self._release(index))
        return response

    def _release(self, index: int) -> None:
        self._in_flight[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that tells its pool's counter when it is closed (once)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def shared_client(connections: int, timeout_seconds: float) -> httpx.AsyncClient:
    """The client the feeds and channels share: `connections` kept alive at most."""
    return httpx.AsyncClient(
        transport=PooledTransport(connections),
        timeout=httpx.Timeout(timeout_seconds),
        headers={"User-Agent": USER_AGENT},
    )
