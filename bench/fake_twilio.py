"""A Twilio-compatible fake Messages API: a real HTTP server on 127.0.0.1.

Used by the kill-and-restart test and the dispatch benchmark. It answers
`POST /2010-04-01/Accounts/{sid}/Messages.json` like Twilio (201 + JSON with a
message SID), optionally after a delay and under a request-rate cap (429 with
Retry-After beyond it), and appends every accepted message to a JSON-lines file.

    python -m bench.fake_twilio --port 0 --record received.jsonl [--delay 0.15] [--rate 100]
        [--fail-rate 0.3 --seed 1 --hang 3] [--down-while FILE]

With `--fail-rate`, that share of requests fails at random, evenly among HTTP
500, HTTP 429 with `Retry-After: 1`, and a hang of `--hang` seconds after which
the connection is closed without an answer (a timeout for the client). Failed
requests are not accepted (no SID); every request is logged with its outcome.

It answers `POST …/Calls.json` (a voice call) the same way, with a call SID
(`CA…`) and the call's TwiML as the recorded body. With `--down-while FILE`,
every request is answered HTTP 503 (logged as `down`) while FILE exists: a
provider outage that a test starts and ends by creating and removing the file.

prints `listening on PORT` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl


class FakeTwilio:
    def __init__(
        self,
        record: Path | None,
        delay: float,
        rate: float | None,
        fail_rate: float = 0.0,
        seed: int | None = None,
        hang: float = 3.0,
        down_while: Path | None = None,
    ) -> None:
        self.record = record.open("a", encoding="utf-8") if record else None
        self.delay = delay
        self.rate = rate
        self.fail_rate = fail_rate
        self.hang = hang
        self.down_while = down_while
        self.random = random.Random(seed)
        self.window_start = time.monotonic()
        self.window_count = 0

    def over_rate(self) -> bool:
        if self.rate is None:
            return False
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        return self.window_count > self.rate

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, payload, extra = await self.respond(method, path, body)
                if status == "hang":
                    return  # close without answering: the client times out
                data = json.dumps(payload).encode()
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n{extra}\r\n"
                )
                writer.write(head.encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    async def respond(self, method: str, path: str, body: bytes) -> tuple[str, object, str]:
        call = path.endswith("/Calls.json")
        if method != "POST" or not (call or path.endswith("/Messages.json")):
            return "404 Not Found", {"code": 20404, "message": "not found", "status": 404}, ""
        form = dict(parse_qsl(body.decode("utf-8")))
        if call:
            form.setdefault("Body", form.get("Twiml", ""))
        if self.down_while is not None and self.down_while.exists():
            self.log(form, None, "down")
            return (
                "503 Service Unavailable",
                {"code": 20503, "message": "Service Unavailable", "status": 503},
                "",
            )
        if self.over_rate():
            self.log(form, None, "over_rate")
            return (
                "429 Too Many Requests",
                {"code": 20429, "message": "Too Many Requests", "status": 429},
                "Retry-After: 1\r\n",
            )
        if self.delay:
            await asyncio.sleep(self.delay)
        failure = (
            self.random.choice(("500", "429", "hang"))
            if (self.random.random() < self.fail_rate)
            else None
        )
        if failure == "hang":
            self.log(form, None, "hang")
            await asyncio.sleep(self.hang)
            return "hang", None, ""
        if failure == "500":
            self.log(form, None, "500")
            return (
                "500 Internal Server Error",
                {"code": 20500, "message": "Internal error", "status": 500},
                "",
            )
        if failure == "429":
            self.log(form, None, "429")
            return (
                "429 Too Many Requests",
                {"code": 20429, "message": "Too Many Requests", "status": 429},
                "Retry-After: 1\r\n",
            )
        sid = ("CA" if call else "SM") + uuid.uuid4().hex
        self.log(form, sid, "ok")
        return "201 Created", {"sid": sid, "status": "queued", "to": form.get("To")}, ""

    def log(self, form: dict[str, str], sid: str | None, outcome: str) -> None:
        if self.record:
            entry = {
                "sid": sid,
                "to": form.get("To"),
                "body": form.get("Body"),
                "t": time.time(),
                "outcome": outcome,
            }
            self.record.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.record.flush()


async def serve(fake: FakeTwilio, port: int) -> None:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port, backlog=1024)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def running(record: Path, *flags: str) -> Iterator[str]:
    """Run the fake in its own process (flags as on the command line); yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_twilio", "--record", str(record), *flags],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[-1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--rate", type=float, help="requests per second before 429")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of failed requests")
    parser.add_argument("--seed", type=int, help="seed of the failure draw")
    parser.add_argument("--hang", type=float, default=3.0, help="seconds a 'timeout' hangs")
    parser.add_argument("--down-while", type=Path, help="answer 503 while this file exists")
    args = parser.parse_args()
    fake = FakeTwilio(
        args.record, args.delay, args.rate, args.fail_rate, args.seed, args.hang, args.down_while
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(fake, args.port))


if __name__ == "__main__":
    main()
