"""How httpx clients hold up as requests in flight grow: the table in the README.

    .venv/bin/python bench/http_pool_bench.py [--delay 0.15] [--in-flight 32 48 96 128]

Starts `bench/fake_twilio.py` (a real HTTP server on 127.0.0.1, its own
process) answering after `--delay` seconds, and for each number of requests in
flight runs a bare loop of POSTs through three clients: httpx's defaults, one
pool that keeps every connection alive, and the client `yujing run` builds
(`dispatcher.httpclient`, several small pools). Prints requests/s and the
ideal (in flight ÷ delay).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dispatch_bench import bare_httpx, daemons_client, fake_twilio, one_pool  # noqa: E402


def httpx_defaults(_: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0))


CLIENTS: dict[str, Callable[[int], httpx.AsyncClient]] = {
    "AsyncClient() defaults": httpx_defaults,
    "one pool, all kept alive": one_pool,
    "the daemon's client": daemons_client,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="httpx clients against requests in flight")
    parser.add_argument("--delay", type=float, default=0.15, help="server answer delay (s)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[32, 48, 96, 128])
    args = parser.parse_args()
    record = Path(tempfile.mkdtemp(prefix="yujing-bench-")) / "received.jsonl"
    print(f"requests/s with the server answering after {args.delay * 1000:.0f} ms")
    print(f"{'in flight':>9}  " + "  ".join(f"{name:>24}" for name in CLIENTS) + "      ideal")
    with fake_twilio(record, delay=args.delay, rate=None) as base:
        for in_flight in args.in_flight:
            rates = []
            for client in CLIENTS.values():
                count = max(1500, 20 * in_flight)
                try:
                    rate = f"{asyncio.run(bare_httpx(base, count, in_flight, client)):.0f}"
                except httpx.HTTPError as exc:
                    rate = type(exc).__name__
                rates.append(f"{rate:>24}")
            print(f"{in_flight:>9}  " + "  ".join(rates) + f"  {in_flight / args.delay:>9.0f}")


if __name__ == "__main__":
    main()
