"""`yujing run`: scheduler, delivery worker and HTTP server in one process.

Shutdown (SIGTERM from systemd, or Ctrl-C): stop scheduling, let in-flight
sends finish and record their outcome, stop the HTTP server. Nothing is lost
even on SIGKILL: every message is an outbox row committed before it is sent,
and rows a dead process had claimed are claimed again when their lease expires.

On PostgreSQL the scheduler runs only while this instance holds the leader
lease (`dispatcher.leader`), and every job's commits are fenced by its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from dispatcher import logs
from dispatcher.feeds.chain import members_of
from dispatcher.leader import Leadership, NotLeader, install_fence, lead, leader_work
from dispatcher.official.watch import OfficialWatch
from dispatcher.runtime import Runtime, open_runtime, utc_now
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.server import server_config
from dispatcher.web.state import AppState

log = logging.getLogger("yujing.daemon")


class InstanceLockError(RuntimeError):
    """A second instance on the same SQLite database."""


class PortInUseError(RuntimeError):
    """The HTTP port is taken: said in one line before anything starts."""


class _Server(uvicorn.Server):
    # the daemon owns SIGTERM/SIGINT and stops the server itself
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def sqlite_instance_lock(database_url: str) -> Iterator[None]:
    """Refuse a second `yujing run` on one SQLite file: SQLite has no SKIP LOCKED."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    path = Path(url.database + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise InstanceLockError(
                f"another yujing instance (pid {holder}) is already running on {url.database}. "
                "SQLite supports one instance; to run several, use PostgreSQL "
                "(YUJING_DATABASE_URL=postgresql+psycopg://…)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def bind_http(host: str, port: int) -> socket.socket:
    """The listening socket for the HTTP server, bound before anything else starts.

    A taken port is then one line (PortInUseError) and no poll has run; the
    server is handed this socket, so no other program can take the port between
    the check and the start.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address[:2], family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (another yujing, or another program); "
                "stop it, or choose another port with --port or YUJING_HTTP_PORT"
            ) from None
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT."""
    with sqlite_instance_lock(settings.database_url):
        listener = bind_http(settings.http_host, settings.http_port)
        try:
            runtime = open_runtime(settings, console=logs.console_stream())
            try:
                await _serve(runtime, listener)
            finally:
                await runtime.aclose()
        finally:
            listener.close()


async def _serve(runtime: Runtime, listener: socket.socket) -> None:
    settings = runtime.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # every job below writes as the leader: its commits are fenced by the lease
    # epoch (PostgreSQL), so a leader that lost the lead while frozen or wedged
    # cannot write once another instance leads
    leadership = Leadership(
        runtime.engine,
        lease_seconds=settings.leader_lease,
        job_seconds=settings.leader_job_seconds,
    )
    if leadership.exclusive:
        install_fence(runtime.sessions)
        bound_idle_transactions(runtime.engine, settings.delivery_lease_seconds)

    def logged(job: Callable[[], Awaitable[object]], name: str) -> Callable[[], Awaitable[None]]:
        return _logged(job, name, leadership)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        logged(runtime.pipeline.poll, "poll"),
        "interval",
        seconds=settings.poll_interval_seconds,
        jitter=settings.poll_jitter_seconds or None,
        id="poll",
        name="poll",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=settings.poll_interval_seconds,
    )
    scheduler.add_job(
        logged(_check_feed(runtime), "watch_feed"),
        "interval",
        seconds=min(60, settings.poll_interval_seconds),
        id="watch_feed",
        name="watch_feed",
        max_instances=1,
        coalesce=True,
    )
    # edited county and rule files take effect without a restart, and `yujing
    # evaluate-now` is answered (on the leader, which polls)
    scheduler.add_job(
        logged(runtime.watch, "watch_rules"),
        "interval",
        seconds=settings.rules_watch_seconds,
        id="watch_rules",
        name="watch_rules",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        logged(_escalate(runtime), "escalate"),
        "interval",
        seconds=settings.escalation_poll_seconds,
        id="escalate",
        name="escalate",
        max_instances=1,
        coalesce=True,
    )

    # given-up messages: re-sent when their channel recovers; the undelivered alert
    scheduler.add_job(
        logged(_check_delivery(runtime), "watch_delivery"),
        "interval",
        seconds=min(10.0, settings.delivery_probe_seconds),
        id="watch_delivery",
        name="watch_delivery",
        max_instances=1,
        coalesce=True,
    )

    if runtime.official is not None:
        # official warnings on their own schedule; a change brings the next poll forward
        # (the poll job itself, so two polls never run at once)
        def poll_now() -> None:
            scheduler.modify_job("poll", next_run_time=datetime.now(UTC))

        async def changed() -> None:
            poll_now()

        runtime.official.on_change = changed
        scheduler.add_job(
            logged(_poll_official(runtime, runtime.official), "official"),
            "interval",
            seconds=settings.cap_poll_seconds,
            id="official",
            name="official",
            max_instances=1,
            coalesce=True,
        )
    state = AppState(
        sessions=runtime.sessions,
        settings=settings,
        clock=utc_now,
        feed_source=runtime.feed.source,
        feed_members=members_of(runtime.feed),
        started_at=runtime.pipeline.started_at,
        rules=runtime.rules.status,
        roster=runtime.escalation.roster if runtime.escalation else None,
        on_failed=runtime.failover,
        metrics=runtime.metrics,
        leadership=leadership,
    )
    runtime.on_swap.append(lambda config: setattr(state, "roster", config.roster))
    server = _Server(server_config(create_app(state), settings))
    # the scheduler runs only while this instance leads (always, on SQLite)
    scheduler.start(paused=True)

    def gain() -> None:
        scheduler.resume()
        scheduler.modify_job("poll", next_run_time=datetime.now(UTC))

    leader_task = asyncio.create_task(
        lead(
            leadership,
            on_gain=gain,
            on_loss=scheduler.pause,
            stop=stop,
            every=settings.leader_poll_seconds,
        ),
        name="leadership",
    )
    worker_task = asyncio.create_task(runtime.worker.run(stop), name="delivery")
    server_task = asyncio.create_task(server.serve(sockets=[listener]), name="http")
    port = listener.getsockname()[1]
    log.info("yujing running: http://%s:%d/healthz", settings.http_host, port)

    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(
        {stopped, worker_task, server_task}, return_when=asyncio.FIRST_COMPLETED
    )
    if not stop.is_set():
        # a part died on its own: report it and stop the rest cleanly
        for task in done:
            if task is not stopped and task.exception():
                log.error("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
        stop.set()
    log.info("stopping: finishing in-flight deliveries")
    scheduler.shutdown(wait=False)
    server.should_exit = True
    await asyncio.gather(worker_task, server_task, leader_task, return_exceptions=True)
    stopped.cancel()
    log.info("stopped")


def bound_idle_transactions(engine: Engine, seconds: float) -> None:
    """PostgreSQL ends a transaction of this daemon left idle for `seconds`.

    Only a frozen or wedged process leaves one idle that long (every
    transaction here is a few milliseconds of statements); its row locks would
    otherwise keep other instances from the outbox rows it was claiming or
    recording until it resumed. One outbox lease is long enough for any honest
    transaction. Connections opened from now on get it (the pool is emptied).
    """

    def limit(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}")
        dbapi_connection.commit()

    event.listen(engine, "connect", limit)
    engine.dispose()


def _check_feed(runtime: Runtime) -> Callable[[], Awaitable[object]]:
    async def check() -> None:
        runtime.pipeline.check_feed()

    return check


def _poll_official(runtime: Runtime, official: OfficialWatch) -> Callable[[], Awaitable[object]]:
    """Poll the official-warning sources, then watch them for silence: a source that
    stops answering raises the feed-down alert like a forecast feed."""
    interval = timedelta(seconds=runtime.settings.cap_poll_seconds)

    async def poll() -> None:
        try:
            await official.poll()
        finally:
            runtime.pipeline.check_official(official.sources, interval)

    return poll


def _check_delivery(runtime: Runtime) -> Callable[[], Awaitable[object]]:
    async def check() -> None:
        runtime.check_delivery()

    return check


def _escalate(runtime: Runtime) -> Callable[[], Awaitable[object]]:
    async def escalate() -> None:
        runtime.pipeline.escalate()

    return escalate


def _logged(
    job: Callable[[], Awaitable[object]], name: str, leadership: Leadership | None = None
) -> Callable[[], Awaitable[None]]:
    """Run a scheduler job as the leader's work (its commits fenced), log its
    failures plainly and keep the schedule going.

    An operational fault (database unreachable) is one warning for the whole
    episode and one line when the job works again; a write refused because
    this instance no longer leads is one warning (the scheduler pauses);
    anything else is a bug and keeps its traceback.
    """
    episode = logs.Episode(log, f"job {name}")

    async def run() -> None:
        try:
            if leadership is None:
                await job()
            else:
                with leader_work(leadership):
                    await job()
        except NotLeader as exc:
            log.warning("%s: %s", name, exc)
        except asyncio.CancelledError:
            # the scheduler cancels a running job when the daemon stops; the poll's
            # transaction either committed or rolled back, so nothing is half-done
            log.info("%s interrupted by shutdown", name)
        except Exception as exc:
            if not logs.is_operational(exc):
                log.exception("%s failed unexpectedly; will try again at the next interval", name)
            else:
                episode.failed(logs.fault_summary(exc))
        else:
            episode.succeeded()

    run.__name__ = run.__qualname__ = name
    return run
