"""The HTTP application: health, provider webhooks, and the acks, CAP and console routers.

Provider webhooks are accepted only with a valid signature: Twilio signs the
full public URL and the form parameters with the account's auth token
(`X-Twilio-Signature`); anything else gets 403 and changes nothing.

`/healthz` is public but terse: statuses, times and numbers. Error texts, paths
and host names are shown only with the metrics token or a console login.

`/metrics` is the Prometheus text exposition (docs/monitoring.md). On a
loopback address it is open unless `YUJING_METRICS_TOKEN` is set; beyond
loopback it needs that token as `Authorization: Bearer …` (no token
configured: 401 always).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from dispatcher.acklinks import ensure_secret_key
from dispatcher.alerts.blind import open_blind_alert
from dispatcher.alerts.system import (
    feed_attempts,
    last_feed_success,
    open_feed_alert,
    outage_since,
)
from dispatcher.alerts.undelivered import open_undelivered_alert
from dispatcher.metrics import DatabaseCollector
from dispatcher.outbox import record_receipt
from dispatcher.outbox.giveup import given_up_count
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import ForecastRun, Notification
from dispatcher.undecided import last_undecided
from dispatcher.web import acks, auth, cap, console
from dispatcher.web.console import SESSION_PURPOSE as CONSOLE_SESSION_PURPOSE
from dispatcher.web.limits import RequestLimits
from dispatcher.web.state import AppState
from dispatcher.web.twilio_signature import verified_twilio_form

log = logging.getLogger("yujing.web")

SID_MAX = 64  # the receipts' provider_id column
STATUS_MAX = 32  # their status and error_code columns


def create_app(state: AppState) -> FastAPI:
    """Build the FastAPI application around explicit state (no globals)."""
    app = FastAPI(title="Yujing 预警", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.yujing = state

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # one short line, never the input echoed back (FastAPI's default is a JSON dump)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first["loc"])
        return PlainTextResponse(f"invalid request: {where}: {first['msg']}", status_code=422)

    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        return health(state, full=health_visitor_allowed(state, request))

    registry = metrics_registry(state)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        if not metrics_allowed(state, request.headers.get("authorization")):
            return Response(
                "a valid Authorization: Bearer token (YUJING_METRICS_TOKEN) is required",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/webhooks/twilio/status")
    async def twilio_status(request: Request) -> Response:
        form = await verified_twilio_form(request, state.settings)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        if not sid or not status:
            return Response("MessageSid and MessageStatus are required", status_code=400)
        error_code = form.get("ErrorCode") or None
        if len(sid) > SID_MAX or len(status) > STATUS_MAX or len(error_code or "") > STATUS_MAX:
            # Twilio's are 34, ~11 and 5 characters: anything longer is not Twilio's
            return Response("MessageSid, MessageStatus or ErrorCode too long", status_code=400)
        with state.sessions.begin() as session:
            row = record_receipt(
                session,
                provider_id=sid,
                status=status,
                error_code=error_code,
                payload=form,
                at=state.clock(),
                on_failed=state.on_failed,
            )
        log.info(
            "twilio status %s for %s%s",
            status,
            sid,
            f" (notification {row.id})" if row is not None else " (unknown message)",
        )
        return Response(status_code=204)

    app.add_middleware(GZipMiddleware, minimum_size=1024)  # the board is mostly text
    # outermost: an oversized or trickling body is refused before any route parses it
    app.add_middleware(RequestLimits, read_timeout=state.settings.http_read_timeout_seconds)
    app.include_router(acks.router(state))
    app.include_router(cap.router(state))
    app.include_router(console.router(state))
    return app


def metrics_registry(state: AppState) -> CollectorRegistry:
    """The database's state read at each scrape, and the runtime's in-process metrics."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(state.sessions, state.clock, lambda: state.rules.error))
    if state.metrics is not None:
        registry.register(state.metrics.registry)
    return registry


def is_loopback(host: str) -> bool:
    """Whether the server listens on loopback only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve beyond loopback
        return False


def metrics_allowed(state: AppState, authorization: str | None) -> bool:
    """A configured token must be presented; without one only loopback is open."""
    token = state.settings.metrics_token
    if token is None:
        return is_loopback(state.settings.http_host)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


OUTBOX_LATE = timedelta(minutes=10)  # a message due this long and not sent: degraded


def health_visitor_allowed(state: AppState, request: Request) -> bool:
    """Whether the caller may see paths and error texts: the metrics token or a console login."""
    if state.settings.metrics_token is not None and metrics_allowed(
        state, request.headers.get("authorization")
    ):
        return True
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if not cookie:
        return False
    secret = ensure_secret_key(state.settings).get_secret_value().encode()
    token = auth.unsign(secret, CONSOLE_SESSION_PURPOSE, cookie)
    if token is None:
        return False
    try:
        with state.sessions() as session:
            return auth.find_login(session, token, state.clock()) is not None
    except Exception:  # a database down: nobody can be recognised, the public answer stands
        return False


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _write_probe(state: AppState, now: datetime) -> None:
    """Write a row in a transaction that is rolled back: raises if the database refuses writes."""
    with state.sessions() as session:
        try:
            session.execute(
                insert(ForecastRun).values(
                    source="healthz-probe", started_at=now, finished_at=now, ok=False
                )
            )
            session.flush()
        finally:
            session.rollback()


def source_health(
    session: Session, chain: str, members: tuple[str, ...], *, full: bool
) -> dict[str, Any] | None:
    """For a feed chain: each source's last attempt and alert, and which source served
    which variable in the last usable poll (`served`); None for a single feed."""
    if not members:
        return None
    sources: dict[str, Any] = {}
    for member in members:
        attempts = feed_attempts(session, member)
        alert = open_feed_alert(session, member)
        sources[member] = {
            "ok": attempts.last_ok is not False and alert is None,
            "last_success": _iso(last_feed_success(session, member)),
            "last_attempt": _iso(attempts.last_at),
            "last_attempt_ok": attempts.last_ok,
            "consecutive_failures": attempts.consecutive_failures,
            "down_alert": alert.code if alert else None,
        }
        if full:
            sources[member]["last_error"] = attempts.last_error
    served: dict[str, str] = {}
    last = session.scalar(
        select(ForecastRun)
        .where(ForecastRun.source == chain, ForecastRun.ok.is_(True))
        .order_by(ForecastRun.id.desc())
        .limit(1)
    )
    if last is not None:
        runs = session.scalars(
            select(ForecastRun).where(
                ForecastRun.source.in_(members),
                ForecastRun.started_at == last.started_at,
                ForecastRun.ok.is_(True),
            )
        )
        for run in runs:
            served.update({name: run.source for name in run.variables or []})
    return {"sources": sources, "served": dict(sorted(served.items()))}


def health(state: AppState, *, full: bool = False) -> JSONResponse:
    """Database readable and writable, feed freshness and recent polls, undecided verdicts,
    rules in force, outbox backlog and lateness, leadership; status ok, degraded (200) or
    failing (503).

    Without `full` (an unauthenticated caller) the answer holds statuses, times and
    numbers only: no paths, error texts or host names.
    """
    now = state.clock()
    body: dict[str, Any] = {"time": now.isoformat()}
    problems: list[str] = []
    failing: list[str] = []
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
            last_ok = last_feed_success(session, state.feed_source)
            since = outage_since(session, state.feed_source, state.started_at)
            attempts = feed_attempts(session, state.feed_source)
            feed_alert = open_feed_alert(session, state.feed_source)
            undecided = last_undecided(session, state.feed_source) or []
            blind_alert = open_blind_alert(session, state.feed_source)
            sources = source_health(session, state.feed_source, state.feed_members, full=full)
            counts = session.execute(
                select(Notification.status, func.count()).group_by(Notification.status)
            )
            backlog = {status: count for status, count in counts}
            given_up = given_up_count(session)
            undelivered_alert = open_undelivered_alert(session)
            oldest_due = session.scalar(
                select(func.min(Notification.next_attempt_at)).where(
                    Notification.status == NotificationStatus.PENDING,
                    Notification.next_attempt_at <= now,
                )
            )
    except Exception as exc:  # the point of a health check is to report this
        log.error("health check: the database cannot be read: %s", type(exc).__name__)
        body["database"] = {"ok": False, "read": False, "write": None}
        if full:
            body["database"]["error"] = type(exc).__name__
        body["status"] = "failing"
        body["problems"] = ["database unreadable"]
        return JSONResponse(body, status_code=503)

    database: dict[str, Any] = {"ok": True, "read": True, "write": True}
    try:
        _write_probe(state, now)
    except Exception as exc:
        log.error("health check: the database refuses writes: %s", type(exc).__name__)
        database.update(ok=False, write=False)
        if full:
            database["error"] = f"{type(exc).__name__}: {exc}"
        failing.append("database unwritable")
    body["database"] = database

    stale_after = timedelta(seconds=2 * state.settings.poll_interval_seconds)
    feed_ok = now - since < stale_after and feed_alert is None and attempts.last_ok is not False
    feed: dict[str, Any] = {
        "source": state.feed_source,
        "ok": feed_ok,
        "last_success": _iso(last_ok),
        "down_since": _iso(since) if not feed_ok else None,
        "last_attempt": _iso(attempts.last_at),
        "last_attempt_ok": attempts.last_ok,
        "consecutive_failures": attempts.consecutive_failures,
        "down_alert": feed_alert.code if feed_alert else None,
    }
    if full:
        feed["last_error"] = attempts.last_error if attempts.last_ok is False else None
    if sources is not None:
        feed.update(sources)
        if any(not source["ok"] for source in sources["sources"].values()):
            problems.append("a forecast source failing")
    body["feed"] = feed
    if now - since >= stale_after or feed_alert is not None:
        problems.append("forecast feed stale")
    elif attempts.last_ok is False:
        problems.append("forecast feed failing")

    # (zone, hazard) pairs the last usable poll could not decide: counts for anyone,
    # the reasons (variables, hours) only for an authenticated caller
    by_hazard: dict[str, int] = {}
    for item in undecided:
        by_hazard[item.hazard] = by_hazard.get(item.hazard, 0) + item.zones
    body["undecided"] = {
        "zones": sum(by_hazard.values()),
        "by_hazard": by_hazard,
        "blind_alert": blind_alert.code if blind_alert else None,
    }
    if full:
        body["undecided"]["reasons"] = [
            {"hazard": u.hazard, "zones": u.zones, "reason": u.reason} for u in undecided
        ]
    if blind_alert is not None:
        problems.append("hazards blind")

    rules = state.rules
    body["rules"] = {
        "ok": rules.error is None,
        "loaded_at": _iso(rules.loaded_at),
        "content_hash": rules.content_hash,
        "rules": rules.rules,
    }
    if full:
        body["rules"]["error"] = rules.error
    if rules.error:
        problems.append("rule load error")

    backlog_statuses = (
        NotificationStatus.PENDING,
        NotificationStatus.SENDING,
        NotificationStatus.SENT,
        NotificationStatus.FAILED,
    )
    outbox: dict[str, Any] = {s.value: backlog.get(s, 0) for s in backlog_statuses}
    late = now - oldest_due if oldest_due is not None else None
    outbox["oldest_due_seconds"] = max(0, int(late.total_seconds())) if late is not None else None
    # messages that failed every way they could go (dispatcher.outbox.giveup)
    outbox["given_up"] = given_up
    outbox["undelivered_alert"] = undelivered_alert.code if undelivered_alert else None
    body["outbox"] = outbox
    if late is not None and late >= OUTBOX_LATE:
        problems.append("outbox late")
    if given_up:
        problems.append("messages undelivered")

    if state.leadership is not None:
        identity = state.leadership.identity()
        # the lease's epoch and expiry name no host: anyone may see them
        public = ("leading", "epoch", "lease_expires_at")
        body["leader"] = identity if full else {k: identity[k] for k in public}

    body["status"] = "failing" if failing else ("degraded" if problems else "ok")
    body["problems"] = failing + problems
    return JSONResponse(body, status_code=503 if failing else 200)
