"""Dispatch benchmark: 10,000 notifications through the outbox to a fake Twilio.

    .venv/bin/python bench/dispatch_bench.py [--messages 10000]
        [--mode realistic|overhead|both|mixed] [--concurrency 32] [--database URL]

Starts `bench/fake_twilio.py` (a real HTTP server on 127.0.0.1, its own
process), commits N outbox rows at once, runs the real `DeliveryWorker` with
the real `twilio_sms` channel until every row is `sent`, and prints
messages/s, p50/p99 latency from commit to the provider receiving the request,
CPU seconds per 1,000 messages and peak RSS. Three modes (`both` runs the
first two):

- realistic: the fake answers after 150 ms and allows 100 requests/s (429
  beyond). Target: all sent within 110% of the cap-bound minimum, and ≥ 15×
  a sequential loop with the `twilio` package's default client (timed on a
  few hundred messages, scaled).
- overhead: no delay, no cap. Target: ≥ 80% of a bare `httpx` loop with the
  same concurrency against the same server in the same run (timed before and
  after the outbox, averaged). Printed twice: for a loop on one plain
  `httpx.AsyncClient` (the target's baseline) and for one on the client the
  daemon builds (`dispatcher.httpclient`, several small pools), which is the
  outbox's own HTTP cost.
- mixed: the realistic fake and pace, and a burst of yellow messages with one
  red in every 20 (500 of 10,000) spread through them, each row about an event
  alert of its level. Prints the time from the commit to the last red message
  reaching the provider (target ≤ 7 s: 500 at the cap take 5 s) and to the last
  message, and how long the claim query takes on the full outbox, ordered by
  priority and (as before priority) by due time alone. `--no-priority` runs
  the same burst in due-time order (every row counted as aged), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import and_, func, insert, make_url, select
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fake_twilio import running  # noqa: E402
from channels.twilio_sms import TwilioSmsChannel  # noqa: E402
from dispatcher.httpclient import shared_client  # noqa: E402
from dispatcher.outbox import DeliveryWorker  # noqa: E402
from dispatcher.outbox.claim import _CLAIM_COLUMNS, pending_rows  # noqa: E402
from dispatcher.ratelimit import Rate  # noqa: E402
from dispatcher.states import AlertKind, AlertState, NotificationStatus, priority_of  # noqa: E402
from dispatcher.storage.db import make_engine, session_factory  # noqa: E402
from dispatcher.storage.migrate import upgrade  # noqa: E402
from dispatcher.storage.models import Alert, Notification  # noqa: E402

ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-token-not-a-secret"
OUTBOX_CODE = "BNCH"  # the code in the outbox's messages (the other loops use others)
BODY = (
    "【柳林县自然资源局】寒潮黄色预警：穆村镇冯家沟村黄土滑坡，预计1月7日08时起。"
    "加强巡查。回复1确认（编码{code}）#{index}"
)
RED_BODY = (
    "【柳林县自然资源局】寒潮红色预警：穆村镇冯家沟村黄土滑坡，立即组织转移。"
    "回复1确认（编码{code}）#{index}"
)
RED_EVERY = 20  # mixed mode: one red in every 20 messages (500 of 10,000)


@dataclass
class Figures:
    mode: str
    messages: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]
    maxrss_mb: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def show(self) -> str:
        q = statistics.quantiles(self.latencies, n=100)
        return (
            f"{self.mode:>10}: {self.messages} messages in {self.seconds:.1f} s = "
            f"{self.rate:.0f}/s; commit→provider p50 {q[49]:.2f} s, p99 {q[98]:.2f} s; "
            f"CPU {1000 * self.cpu_seconds / self.messages:.2f} s per 1,000; "
            f"peak RSS {self.maxrss_mb:.0f} MB"
        )


def fake_twilio(record: Path, delay: float, rate: float | None) -> AbstractContextManager[str]:
    flags = ["--delay", str(delay)] + (["--rate", str(rate)] if rate else [])
    return running(record, *flags)


def refused_for_rate(record: Path) -> int:
    """How many of the outbox's requests the provider refused for its rate (429)."""
    return sum(
        1
        for line in record.read_text(encoding="utf-8").splitlines()
        if '"over_rate"' in line and OUTBOX_CODE in json.loads(line)["body"]
    )


def received_at(record: Path) -> dict[int, float]:
    """Message index → when the provider received it (epoch seconds)."""
    out: dict[int, float] = {}
    for line in record.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        # only the outbox's messages (the bare loop's carry another code)
        if entry.get("outcome", "ok") == "ok" and OUTBOX_CODE in entry["body"]:
            out.setdefault(int(entry["body"].rsplit("#", 1)[1]), entry["t"])
    return out


def one_pool(concurrency: int) -> httpx.AsyncClient:
    """A plain `httpx.AsyncClient`: one connection pool, one kept-alive connection per
    request in flight (httpx's default keeps 20, and every send beyond 20 would open
    and close its own connection)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0))


def daemons_client(concurrency: int) -> httpx.AsyncClient:
    """The client `yujing run` builds: small pools (`dispatcher.httpclient`)."""
    return shared_client(concurrency, timeout_seconds=30.0)


def is_red(index: int) -> bool:
    """Mixed mode: whether message `index` is a red one (spread evenly through the burst)."""
    return index % RED_EVERY == RED_EVERY // 2


def add_events(session: Session, now: datetime) -> dict[str, int]:
    """Mixed mode: a red and a yellow event alert; level → alert id."""
    ids: dict[str, int] = {}
    for code, level in (("BNRD", "red"), ("BNYL", "yellow")):
        alert = Alert(
            code=code,
            kind=AlertKind.EVENT,
            zone_id=None,
            hazard="cold_wave",
            rule_id="bench",
            title="寒潮",
            level=level,
            state=AlertState.FIRING,
            opened_at=now,
            updated_at=now,
        )
        session.add(alert)
        session.flush()
        ids[level] = alert.id
    return ids


def claim_query_ms(sessions: sessionmaker[Session], *, by_priority: bool, limit: int = 64) -> float:
    """Median ms of the claim's query for `limit` due rows (rolled back: nothing leased)."""
    now = datetime.now(UTC)
    due = and_(
        Notification.status == NotificationStatus.PENDING, Notification.next_attempt_at <= now
    )
    # as before priority: due time alone, read in the index's order
    before = (
        select(*_CLAIM_COLUMNS, Alert.level)
        .outerjoin(Alert, Alert.id == Notification.alert_id)
        .where(due)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Notification)
    )
    times = []
    for _ in range(15):
        with sessions() as session:
            started = time.perf_counter()
            if by_priority:
                got = pending_rows(session, now, now - timedelta(seconds=300), limit)
            else:
                got = list(session.execute(before))
            times.append(time.perf_counter() - started)
            assert len(got) == limit
            session.rollback()
    return 1000 * statistics.median(times)


async def run_outbox(
    mode: str,
    base: str,
    record: Path,
    messages: int,
    concurrency: int,
    database: str,
    rate: float | None,
    *,
    mixed: bool = False,
    priority: bool = True,
    queries: dict[str, float] | None = None,
) -> Figures:
    engine = make_engine(database)
    upgrade(database)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        events = add_events(session, now) if mixed else {}
    rows = [
        {
            "idempotency_key": f"bench:{mode}:{i}",
            "alert_id": events.get("red" if is_red(i) else "yellow"),
            # as outbox.rows.enqueue sets it from the alert's level
            "priority": priority_of(("red" if is_red(i) else "yellow") if mixed else None),
            "transition": "new",
            "recipient_name": "测试",
            "address": f"+86170{i:08d}",
            "channel": "twilio_sms",
            "body": (RED_BODY if mixed and is_red(i) else BODY).format(code=OUTBOX_CODE, index=i),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for i in range(messages)
    ]
    with sessions.begin() as session:
        session.execute(insert(Notification), rows)
    committed = time.time()
    if queries is not None:
        # timed before the worker starts: on the whole burst, due
        queries["priority"] = claim_query_ms(sessions, by_priority=True)
        queries["due time"] = claim_query_ms(sessions, by_priority=False)
        committed = time.time()  # (the clock starts once the queries are done)

    http = daemons_client(concurrency)
    channel = TwilioSmsChannel(
        account_sid=ACCOUNT,
        auth_token=SecretStr(TOKEN),
        from_number="+15005550006",
        messaging_service_sid=None,
        http=http,
        api_base=base,
    )
    worker = DeliveryWorker(
        sessions,
        {"twilio_sms": channel},
        lambda: datetime.now(UTC),
        concurrency=concurrency,
        poll_seconds=0.05,
        backoff_seconds=1.0,
        rates={"twilio_sms": Rate(rate)} if rate else None,
        # without priority: every row counts as aged (rank red), so due time alone orders
        priority_aging_seconds=300.0 if priority else 1e-9,
    )
    stop = asyncio.Event()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while True:
        await asyncio.sleep(0.25)
        with sessions() as session:
            sent = session.scalar(select(func.count()).where(Notification.status == "sent"))
        if sent == messages:
            break
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await task
    await http.aclose()
    engine.dispose()
    got = received_at(record)
    return Figures(
        mode,
        messages,
        elapsed,
        (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        [got[i] - committed for i in range(messages)],
        cpu1.ru_maxrss / 1024,
    )


def sequential_twilio(base: str, count: int) -> float:
    """Messages/s of a plain loop with the twilio package's default (requests) client."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    class Rebased(TwilioHttpClient):  # type: ignore[misc]
        def request(self, method: str, url: str, *args: object, **kwargs: object) -> object:
            return super().request(
                method, url.replace("https://api.twilio.com", base), *args, **kwargs
            )

    client = Client(ACCOUNT, TOKEN, http_client=Rebased())
    started = time.perf_counter()
    for i in range(count):
        client.messages.create(
            to=f"+86170{i:08d}", from_="+15005550006", body=BODY.format(code="SEQ", index=i)
        )
    return count / (time.perf_counter() - started)


async def bare_httpx(
    base: str, count: int, concurrency: int, client: Callable[[int], httpx.AsyncClient]
) -> float:
    """Messages/s of bare httpx POSTs with the same concurrency: the ceiling."""
    url = f"{base}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    queue = iter(range(count))
    async with client(concurrency) as http:

        async def one() -> None:
            for i in queue:
                response = await http.post(
                    url,
                    data={
                        "To": f"+86170{i:08d}",
                        "From": "+15005550006",
                        "Body": BODY.format(code="RAW", index=i),
                    },
                    auth=(ACCOUNT, TOKEN),
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description="Outbox dispatch benchmark")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--mode", choices=["realistic", "overhead", "both", "mixed"], default="both"
    )
    parser.add_argument(
        "--no-priority",
        action="store_true",
        help="mixed mode: claim in due-time order only (every row counted as aged)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--pace",
        type=float,
        default=98.0,
        help="realistic mode: sends a second the outbox allows itself (YUJING_RATE_LIMITS); "
        "a hair under the provider's 100: it counts in one-second windows, and each 429 "
        "costs that message a second",
    )
    parser.add_argument(
        "--baseline", type=int, default=200, help="messages for the sequential loop"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # retries are counted, not printed
    tmp = Path(tempfile.mkdtemp(prefix="yujing-bench-"))
    print(
        f"dispatch bench: {args.messages} messages, concurrency {args.concurrency}, "
        f"database {shown(args.database) if args.database else 'SQLite (temporary)'}"
    )

    if args.mode in ("realistic", "both"):
        record = tmp / "realistic.jsonl"
        with fake_twilio(record, delay=0.15, rate=100) as base:
            database = args.database or f"sqlite:///{tmp / 'realistic.db'}"
            figures = asyncio.run(
                run_outbox(
                    "realistic",
                    base,
                    record,
                    args.messages,
                    args.concurrency,
                    database,
                    rate=args.pace,
                )
            )
            print(figures.show())
            floor = args.messages / 100
            print(
                f"{'':>10}  cap-bound minimum {floor:.0f} s; took {figures.seconds / floor:.0%} "
                f"of it (target ≤ 110%); requests the provider refused for going over "
                f"its rate (each sent again a second later): {refused_for_rate(record)}"
            )
            seq = sequential_twilio(base, args.baseline)
            print(
                f"{'':>10}  sequential twilio client: {seq:.1f}/s → would take "
                f"{args.messages / seq:.0f} s; outbox is {figures.rate / seq:.1f}× faster "
                f"(target ≥ 15×)"
            )

    if args.mode == "mixed":
        record = tmp / "mixed.jsonl"
        with fake_twilio(record, delay=0.15, rate=100) as base:
            database = args.database or f"sqlite:///{tmp / 'mixed.db'}"
            queries: dict[str, float] = {}
            figures = asyncio.run(
                run_outbox(
                    "mixed",
                    base,
                    record,
                    args.messages,
                    args.concurrency,
                    database,
                    rate=args.pace,
                    mixed=True,
                    priority=not args.no_priority,
                    queries=queries,
                )
            )
            print(figures.show())
            reds = [t for i, t in enumerate(figures.latencies) if is_red(i)]
            order = "by priority" if not args.no_priority else "by due time only (--no-priority)"
            print(
                f"{'':>10}  {len(reds)} red among {args.messages}, claimed {order}: "
                f"commit→last red at the provider {max(reds):.1f} s (target ≤ 7 s; "
                f"{len(reds) / 100:.1f} s at the cap), red p50 {statistics.median(reds):.1f} s; "
                f"commit→last message {max(figures.latencies):.1f} s; "
                f"refused for rate: {refused_for_rate(record)}"
            )
            print(
                f"{'':>10}  claim query for 64 of {args.messages} due rows: "
                f"{queries['priority']:.1f} ms by priority, {queries['due time']:.1f} ms "
                f"by due time alone (median of 15)"
            )

    if args.mode in ("overhead", "both"):
        record = tmp / "overhead.jsonl"
        with fake_twilio(record, delay=0.0, rate=None) as base:
            database = args.database or f"sqlite:///{tmp / 'overhead.db'}"
            # the ceilings are measured before and after the outbox, and averaged:
            # on two cores they move by ±10% from run to run
            loops = {"one pool": one_pool, "the daemon's pools": daemons_client}
            before = {name: bare(base, args, client) for name, client in loops.items()}
            figures = asyncio.run(
                run_outbox(
                    "overhead",
                    base,
                    record,
                    args.messages,
                    args.concurrency,
                    database,
                    rate=None,
                )
            )
            after = {name: bare(base, args, client) for name, client in loops.items()}
            print(figures.show())
            for name, client in loops.items():
                ceiling = (before[name] + after[name]) / 2
                print(
                    f"{'':>10}  bare httpx loop over {name}, same concurrency: {ceiling:.0f}/s "
                    f"(mean of {before[name]:.0f} before and {after[name]:.0f} after); "
                    f"outbox reaches {figures.rate / ceiling:.0%} of it"
                    + (" (target ≥ 80%)" if client is one_pool else "")
                )


def shown(url: str) -> str:
    """A database URL as printed: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def bare(base: str, args: argparse.Namespace, client: Callable[[int], httpx.AsyncClient]) -> float:
    return asyncio.run(bare_httpx(base, args.messages, args.concurrency, client))


if __name__ == "__main__":
    main()
