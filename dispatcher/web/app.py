"""The HTTP application: health, provider webhooks, and the acks, CAP and console routers.

Provider webhooks are accepted only with a valid signature: Twilio signs the
full public URL and the form parameters with the account's auth token
(`X-Twilio-Signature`); anything else gets 403 and changes nothing.

`/metrics` is the Prometheus text exposition (docs/monitoring.md). On a
loopback address it is open unless `YUJING_METRICS_TOKEN` is set; beyond
loopback it needs that token as `Authorization: Bearer …` (no token
configured: 401 always).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import func, select, text

from dispatcher.alerts.system import last_feed_success, open_feed_alert
from dispatcher.metrics import DatabaseCollector
from dispatcher.outbox import record_receipt
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import Notification
from dispatcher.web import acks, cap, console
from dispatcher.web.state import AppState
from dispatcher.web.twilio_signature import verified_twilio_form

log = logging.getLogger("yujing.web")


def create_app(state: AppState) -> FastAPI:
    """Build the FastAPI application around explicit state (no globals)."""
    app = FastAPI(title="Yujing 预警", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.yujing = state

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return health(state)

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
        with state.sessions.begin() as session:
            row = record_receipt(
                session,
                provider_id=sid,
                status=status,
                error_code=form.get("ErrorCode") or None,
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


def health(state: AppState) -> JSONResponse:
    """Database reachable, feed freshness, rules in force, outbox backlog."""
    now = state.clock()
    body: dict[str, Any] = {"time": now.isoformat()}
    problems: list[str] = []
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
            last_ok = last_feed_success(session, state.feed_source)
            feed_alert = open_feed_alert(session, state.feed_source)
            counts = session.execute(
                select(Notification.status, func.count()).group_by(Notification.status)
            )
            backlog = {status: count for status, count in counts}
        body["database"] = {"ok": True}
    except Exception as exc:  # the point of a health check is to report this
        body["database"] = {"ok": False, "error": type(exc).__name__}
        body["status"] = "failing"
        return JSONResponse(body, status_code=503)

    stale_after = timedelta(seconds=2 * state.settings.poll_interval_seconds)
    since = last_ok or state.started_at
    feed_ok = now - since < stale_after and feed_alert is None
    body["feed"] = {
        "source": state.feed_source,
        "ok": feed_ok,
        "last_success": last_ok.isoformat() if last_ok else None,
        "down_alert": feed_alert.code if feed_alert else None,
    }
    if not feed_ok:
        problems.append("forecast feed stale")
    rules = state.rules
    body["rules"] = {
        "loaded_at": rules.loaded_at.isoformat() if rules.loaded_at else None,
        "content_hash": rules.content_hash,
        "rules": rules.rules,
        "error": rules.error,
    }
    if rules.error:
        problems.append("rule load error")
    backlog_statuses = (
        NotificationStatus.PENDING,
        NotificationStatus.SENDING,
        NotificationStatus.SENT,
        NotificationStatus.FAILED,
    )
    body["outbox"] = {s.value: backlog.get(s, 0) for s in backlog_statuses}
    body["status"] = "degraded" if problems else "ok"
    body["problems"] = problems
    return JSONResponse(body, status_code=200)
