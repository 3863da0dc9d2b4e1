# Long module: the console is one set of pages over one state; the routes read top to bottom
"""The duty console (值班台): server-rendered pages for the duty room and phones.

Pages: the active-alert board (refreshes itself), alert detail with its
timeline and an acknowledge form, who is on duty, the zones with an offline
SVG map, and the rules in force. Everything is rendered here with Jinja2 from
`templates/`; the CSS and the one small script ship in `static/` (no CDN).

Every page needs a login (`auth.py`); every POST carries the login's CSRF
token; only admin and duty accounts may acknowledge, and they do it through
`alerts.acknowledge.acknowledge`, the same function the SMS reply, the voice
keypress, the ack link and the CLI use.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatcher import audit
from dispatcher.acklinks import ensure_secret_key
from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.county import DUTY_ROLE_LABELS, ROLE_LABELS
from dispatcher.escalation.plan import PlannedStep, parse_step_transition
from dispatcher.labels import (
    ACK_METHOD_LABELS,
    ALERT_STATE_LABELS,
    AUDIT_ACTION_LABELS,
    LEVEL_LABELS,
    NOTIFICATION_STATUS_LABELS,
    PERSON_ROLE_LABELS,
    RISK_LABELS,
    TRANSITION_LABELS,
    ZONE_KIND_LABELS,
    channel_label,
    level_label,
    severity,
)
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState, TimerKind, TimerStatus
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    EscalationTimer,
    Notification,
    Person,
    Receipt,
    User,
    Zone,
)
from dispatcher.undecided import last_undecided, undecided_words
from dispatcher.web import auth
from dispatcher.web.board import (
    STATE_FILTERS,
    ZONES_ALL,
    BoardFilter,
    BoardPage,
    acknowledger_names,
    board_page,
    names_of,
    place,
)
from dispatcher.web.ids import DatabaseId
from dispatcher.web.passwords import PasswordChecks
from dispatcher.web.state import AppState
from dispatcher.web.throttle import LoginThrottle, client_key
from dispatcher.web.words import (
    actor_words,
    event_summary_words,
    evidence_words,
    phone_href,
)
from rules.loader import LIBRARY, library_names, load_ruleset

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

REFRESH_SECONDS = 10
LOGIN_FORM_SECONDS = 3600  # how long a login form may sit before it must be reloaded
SESSION_PURPOSE = "yujing-console-session:v1"
_LOGIN_PURPOSE = "yujing-console-login:v1"

_T = TypeVar("_T")

NOTE_MAX = 500  # characters of an acknowledgement note
NOTE_TOO_LONG = f"备注最多 {NOTE_MAX} 字，请删减后重新提交。本次未作任何更改。"

#: An account's status (`auth.account_status`) on the 用户 page.
ACCOUNT_STATUS_LABELS: Mapping[str, str] = {
    "active": "正常",
    "throttled": "登录受限",
    "disabled": "已停用",
    "removed": "已删除",
}
#: What the 用户 page's buttons did, for the notice after the redirect.
USER_ACTION_DONE: Mapping[str, str] = {
    "disable": "已停用账号 {name}，其登录已全部注销。",
    "enable": "已启用账号 {name}。",
    "unlock": "已解除账号 {name} 的登录限制。",
}

BAD_CREDENTIALS = "用户名或密码不正确。"
TOO_MANY = "本机输错密码次数过多，请 {seconds} 秒后再试。"
BUSY = "上一次登录尚未处理完，请稍候再试。"


def router(state: AppState) -> APIRouter:
    """The console's routes, bound to the application's state."""
    return _Console(state).routes()


# --- what the pages show


@dataclass(frozen=True)
class MapPoint:
    """A zone placed on the SVG map."""

    zone_id: str
    name: str
    x: float
    y: float
    r: float
    level: str  # a level key, or "none"


@dataclass(frozen=True)
class CountyMap:
    width: int
    height: int
    points: list[MapPoint]
    labels: list[tuple[float, float, str]] = field(default_factory=list)  # township names


def project(
    places: Sequence[tuple[str, str, float, float, str]],
    *,
    width: int = 800,
    pad: int = 24,
    labels: Iterable[tuple[str, float, float]] = (),
) -> CountyMap:
    """Place (id, name, lat, lon, level) on an SVG box `width` wide.

    An equirectangular projection around the county's mean latitude (longitude
    shrunk by cos φ): for a county tens of kilometres across the distortion is
    far below a symbol's size. North is up; the height follows the aspect.
    """
    if not places:
        return CountyMap(width, width // 2, [])
    lats = [p[2] for p in places]
    lons = [p[3] for p in places]
    shrink = math.cos(math.radians(sum(lats) / len(lats)))
    span_x = max((max(lons) - min(lons)) * shrink, 1e-3)
    span_y = max(max(lats) - min(lats), 1e-3)
    scale = (width - 2 * pad) / max(span_x, span_y * 0.6)  # keep tall counties on screen
    height = round(span_y * scale + 2 * pad)
    x0 = pad + ((width - 2 * pad) - span_x * scale) / 2

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (
            round(x0 + (lon - min(lons)) * shrink * scale, 1),
            round(pad + (max(lats) - lat) * scale, 1),
        )

    points = [
        MapPoint(zone_id, name, *xy(lat, lon), r=5.0 + severity(level), level=level)
        for zone_id, name, lat, lon, level in places
    ]
    # severe points are drawn last, on top of the others
    points.sort(key=lambda p: severity(p.level))
    placed = [(*xy(lat, lon), text) for text, lat, lon in labels]
    return CountyMap(width, height, points, placed)


class _Console:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.secret = ensure_secret_key(state.settings).get_secret_value().encode()
        self.tz = ZoneInfo(state.settings.timezone)
        self.secure = (state.settings.public_base_url or "").startswith("https://")
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        injected = state.login_throttle  # (an empty throttle is falsy: it has a len)
        self.throttle = injected if injected is not None else LoginThrottle(state.clock)
        self.passwords = PasswordChecks()
        self._titles: tuple[str | None, Mapping[str, str]] | None = None
        env = self.templates.env
        env.filters["local"] = self.local
        env.filters["tel"] = phone_href
        env.globals.update(
            static=_static_urls(),
            level_labels=LEVEL_LABELS,
            role_labels=auth.ROLES,
            state_labels=ALERT_STATE_LABELS,
            open_states=OPEN_ALERT_STATES,
            AlertState=AlertState,
            kind_labels=ZONE_KIND_LABELS,
            risk_labels=RISK_LABELS,
            method_labels=ACK_METHOD_LABELS,
            status_labels=NOTIFICATION_STATUS_LABELS,
            channel_label=channel_label,
            action_labels=AUDIT_ACTION_LABELS,
            transition_label=_transition_label,
            zone_role_labels=ROLE_LABELS,
            duty_role_labels=DUTY_ROLE_LABELS,
        )

    def local(self, value: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
        return value.astimezone(self.tz).strftime(fmt) if value is not None else "—"

    # --- plumbing

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> HTMLResponse:
        response = self.templates.TemplateResponse(request, name, context, status_code=status_code)
        _protect(response)
        return response

    def message(
        self, request: Request, login: auth.Login | None, heading: str, text: str, status: int
    ) -> HTMLResponse:
        return self.page(
            request,
            "message.html",
            {"login": login, "page": "", "heading": heading, "text": text, "back": None},
            status,
        )

    def login_of(self, request: Request, db: Session) -> auth.Login | None:
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        token = auth.unsign(self.secret, SESSION_PURPOSE, cookie) if cookie else None
        return auth.find_login(db, token, self.state.clock()) if token else None

    def to_login(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)

    def forbidden_form(self, request: Request, login: auth.Login | None) -> HTMLResponse:
        return self.message(
            request,
            login,
            "表单已失效",
            "表单校验失败（可能已过期，或并非从本系统页面提交）。请返回页面刷新后重试；"
            "本次提交未作任何更改。",
            403,
        )

    # --- routes

    def routes(self) -> APIRouter:
        r = APIRouter()
        r.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")

        @r.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            return RedirectResponse("/console/", status_code=303)

        @r.get("/console", include_in_schema=False)
        def console_root() -> RedirectResponse:
            return RedirectResponse("/console/", status_code=303)

        r.add_api_route("/console/login", self.login_form, methods=["GET"])
        r.add_api_route("/console/login", self.login_submit, methods=["POST"])
        r.add_api_route("/console/logout", self.logout, methods=["POST"])
        r.add_api_route("/console/", self.board, methods=["GET"])
        r.add_api_route("/console/board/rows", self.board_rows, methods=["GET"])
        r.add_api_route("/console/alerts/{code}", self.alert_detail, methods=["GET"])
        r.add_api_route("/console/alerts/{code}/ack", self.acknowledge, methods=["POST"])
        r.add_api_route("/console/events/{code}/ack", self.acknowledge_many, methods=["POST"])
        r.add_api_route("/console/duty", self.duty, methods=["GET"])
        r.add_api_route("/console/zones", self.zones, methods=["GET"])
        r.add_api_route("/console/rules", self.rules, methods=["GET"])
        r.add_api_route("/console/users", self.users, methods=["GET"])
        r.add_api_route("/console/users/{user_id}/{action}", self.user_action, methods=["POST"])
        return r

    # login and logout

    def login_form(self, request: Request, next: str = "/console/") -> Response:
        with self.state.sessions() as db:
            if self.login_of(request, db) is not None:
                return RedirectResponse(_safe_next(next), status_code=303)
        return self._login_page(request, next=next)

    def _login_page(
        self,
        request: Request,
        *,
        next: str,
        error: str | None = None,
        username: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        token = auth.new_token()
        response = self.page(
            request,
            "login.html",
            {
                "login": None,
                "csrf_token": token,
                "next": _safe_next(next),
                "error": error,
                "username": username,
            },
            status,
        )
        response.set_cookie(
            auth.LOGIN_COOKIE,
            auth.sign(self.secret, _LOGIN_PURPOSE, token),
            max_age=LOGIN_FORM_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/console/login",
        )
        return response

    async def login_submit(
        self,
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/console/",
    ) -> Response:
        """Check the form's token, then the password, throttled (`dispatcher.web.throttle`)."""
        username = username[: auth.NAME_MAX + 1]  # longer is no account's name; echoed back
        cookie = request.cookies.get(auth.LOGIN_COOKIE)
        expected = auth.unsign(self.secret, _LOGIN_PURPOSE, cookie) if cookie else None
        if not auth.tokens_match(expected, csrf_token):
            return self._login_page(
                request,
                next=next,
                error="登录页已过期，请重新输入用户名和密码。",
                username=username,
                status=403,
            )
        address = client_key(request.client.host if request.client else None)
        if not self.throttle.begin(address):
            return self._login_page(request, next=next, error=BUSY, username=username, status=429)
        try:
            return await self._attempt(request, address, username, password, next)
        finally:
            self.throttle.end(address)

    async def _attempt(
        self, request: Request, address: str, username: str, password: str, next: str
    ) -> Response:
        name = username.strip()

        def read(db: Session) -> auth.Account | None:
            return auth.find_account(db, name)

        account = await run_in_threadpool(self._read, read)
        wait = self.throttle.wait(address, name, account.changed_at if account else None)
        if wait > 0:
            seconds = math.ceil(wait)
            response = self._login_page(
                request,
                next=next,
                error=TOO_MANY.format(seconds=seconds),
                username=username,
                status=429,
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        # account-wide: a soft delay after many failures from anywhere, never a refusal
        await self.throttle.hold(name)
        # unknown names are checked against a dummy hash: the same path, the same time
        ok = await self.passwords.verify(
            account.password_hash if account else None,
            password,
            urgent=self.throttle.clean(address),  # not behind a flood of guesses
        )
        token = None
        if ok and account is not None:
            self.throttle.succeeded(address, name)
            now = self.state.clock()
            token = await run_in_threadpool(
                self._write,
                lambda db: auth.complete_login(
                    db,
                    account,
                    password,
                    at=now,
                    ttl_seconds=self.state.settings.session_ttl_seconds,
                ),
            )
        elif self.throttle.failed(address, name):
            at = self.state.clock()
            await run_in_threadpool(self._write, lambda db: _audit_throttled(db, address, name, at))
        if token is None:
            return self._login_page(
                request, next=next, error=BAD_CREDENTIALS, username=username, status=401
            )
        redirect = RedirectResponse(_safe_next(next), status_code=303)
        redirect.set_cookie(
            auth.SESSION_COOKIE,
            auth.sign(self.secret, SESSION_PURPOSE, token),
            max_age=self.state.settings.session_ttl_seconds,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )
        redirect.delete_cookie(auth.LOGIN_COOKIE, path="/console/login")
        return redirect

    def _read(self, work: Callable[[Session], _T]) -> _T:
        with self.state.sessions() as db:
            return work(db)

    def _write(self, work: Callable[[Session], _T]) -> _T:
        with self.state.sessions.begin() as db:
            return work(db)

    def logout(self, request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        with self.state.sessions.begin() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            if not auth.tokens_match(login.session.csrf_token, csrf_token):
                return self.forbidden_form(request, login)
            auth.end_session(db, login, self.state.clock())
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # the board

    def board(self, request: Request) -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            view = self._board_view(db, login, BoardFilter.of(request.query_params))
            return self.page(request, "board.html", view.context())

    def board_rows(self, request: Request) -> Response:
        """The board's refresh: 304 when nothing changed, else only the changed items.

        The browser sends the version it shows (If-None-Match) and the items it
        holds (`X-Board-Have: code:hash,…`); the answer is JSON with the head,
        the items' order and the HTML of the items it lacks or holds stale.
        """
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return Response("login required", status_code=401, media_type="text/plain")
            view = self._board_view(db, login, BoardFilter.of(request.query_params))
        etag = f'"{view.version}"'
        if request.headers.get("if-none-match") == etag:
            unchanged = Response(status_code=304, headers={"ETag": etag})
            _protect(unchanged)
            return unchanged
        have = _held_items(request.headers.get("x-board-have", ""))
        response = JSONResponse(
            {
                "version": view.version,
                "head": view.head,
                "order": [[key, digest] for key, digest, _ in view.items],
                "rows": {key: html for key, digest, html in view.items if have.get(key) != digest},
            },
            headers={"ETag": etag},
        )
        _protect(response)
        return response

    def _board_view(self, db: Session, login: auth.Login, f: BoardFilter) -> BoardView:
        now = self.state.clock()
        board = board_page(db, f, now, rule_title=self.rule_titles())
        env = self.templates.env
        shared = {"login": login, "f": f, "can_ack": login.may_acknowledge, "zones_all": ZONES_ALL}
        item_template = env.get_template("board_item.html")
        items = []
        for item in board.items:
            html = item_template.render(shared, item=item)
            items.append((item.key, _digest(html), Markup(html)))
        # what the last poll could not decide: a quiet board must not read as "calm"
        undecided = [
            undecided_words(item, self.state.settings.timezone)
            for item in last_undecided(db, self.state.feed_source) or []
        ]
        head = env.get_template("board_head.html").render(
            shared, board=board, level_labels=LEVEL_LABELS, undecided=undecided
        )
        version = _digest(head + "".join(f"{key}:{digest}," for key, digest, _ in items))
        return BoardView(login, f, board, Markup(head), items, version, REFRESH_SECONDS)

    def rule_titles(self) -> Mapping[str, str]:
        """Rule id → title from the county's rules (re-read when the rules in force change)."""
        current = self.state.rules.content_hash
        if self._titles is None or self._titles[0] != current:
            self._titles = (current, _load_rule_titles(self.state.settings.config_dir / "rules"))
        return self._titles[1]

    def acknowledge_many(
        self,
        request: Request,
        code: str,
        csrf_token: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        what: Annotated[str, Form()] = "event",
        zone: Annotated[list[str] | None, Form()] = None,
        back: Annotated[str, Form()] = "",
    ) -> Response:
        """Acknowledge an event, or the zone alerts ticked under it, in one transaction."""
        now = self.state.clock()
        note = note.strip()
        with self.state.sessions.begin() as db:
            login = self.acknowledger(request, db, csrf_token, note)
            if isinstance(login, Response):
                return login
            item = db.scalar(select(Alert).where(Alert.code == code.strip().upper()))
            if item is None:
                return self.message(
                    request, login, "找不到预警", f"没有代码为 {code} 的预警。", 404
                )
            if what == "zones":
                wanted = list(dict.fromkeys(c.strip().upper() for c in zone or () if c.strip()))
                if not wanted:
                    return self.message(
                        request,
                        login,
                        "未选择隐患点",
                        "请先勾选要确认的隐患点，再点“确认所选隐患点”。本次未作任何更改。",
                        400,
                    )
                if len(wanted) > ZONES_ALL:
                    return self.message(
                        request,
                        login,
                        "选择过多",
                        f"一次最多确认 {ZONES_ALL} 处隐患点。本次未作任何更改。",
                        400,
                    )
                found = {
                    a.code: a
                    for a in db.scalars(
                        select(Alert).where(Alert.code.in_(wanted), Alert.event_id == item.id)
                    )
                }
                targets: list[tuple[str, Alert | None]] = [(c, found.get(c)) for c in wanted]
            else:
                targets = [(item.code, item)]
            zones = {
                z.id: z
                for z in db.scalars(
                    select(Zone).where(Zone.id.in_({a.zone_id for _, a in targets if a}))
                )
            }
            results = []
            for wanted_code, alert in targets:
                if alert is None:
                    results.append(AckResult(wanted_code, "—", False, "不属于该事件，未确认"))
                    continue
                outcome = acknowledge(
                    db,
                    alert=alert,
                    person_id=login.user.person_id,
                    actor=f"console:{login.user.name}",
                    method="console",
                    note=note or None,
                    at=now,
                )
                where = place(zones.get(alert.zone_id)) if alert.zone_id else alert.title
                results.append(
                    AckResult(alert.code, where, outcome.accepted, outcome.reason, outcome.complete)
                )
            return self.page(
                request,
                "ack_result.html",
                {
                    "login": login,
                    "page": "board",
                    "item": item,
                    "level_zh": level_label(item.level),
                    "results": results,
                    "accepted": sum(r.accepted for r in results),
                    "note": note,
                    "back": _safe_next(back or "/console/"),
                },
            )

    # one alert

    def alert_detail(self, request: Request, code: str, done: str | None = None) -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            alert = db.scalar(select(Alert).where(Alert.code == code))
            if alert is None:
                return self.message(
                    request, login, "找不到预警", f"没有代码为 {code} 的预警。", 404
                )
            return self.page(
                request, "alert.html", self._alert_context(db, login, alert, done=done)
            )

    def _alert_context(
        self,
        db: Session,
        login: auth.Login,
        alert: Alert,
        *,
        done: str | None = None,
        refused: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        zone = db.get(Zone, alert.zone_id) if alert.zone_id else None
        events = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == f"alert:{alert.id}")
            .order_by(AuditEvent.id)
        ).all()
        notes = db.scalars(
            select(Notification)
            .where(Notification.alert_id == alert.id)
            .order_by(Notification.created_at, Notification.id)
        ).all()
        receipts: dict[int, list[Receipt]] = {}
        if notes:
            for receipt in db.scalars(
                select(Receipt)
                .where(Receipt.notification_id.in_([n.id for n in notes]))
                .order_by(Receipt.received_at, Receipt.id)
            ):
                assert receipt.notification_id is not None
                receipts.setdefault(receipt.notification_id, []).append(receipt)
        acks = db.scalars(
            select(Acknowledgement)
            .where(Acknowledgement.alert_id == alert.id)
            .order_by(Acknowledgement.at, Acknowledgement.id)
        ).all()
        pending = db.scalars(
            select(EscalationTimer)
            .where(
                EscalationTimer.alert_id == alert.id, EscalationTimer.status == TimerStatus.PENDING
            )
            .order_by(EscalationTimer.due_at, EscalationTimer.id)
        ).all()
        names = _person_names(
            db,
            [a.person_id for a in acks]
            + [login.user.person_id]
            + [p for t in pending for p in PlannedStep.of_timer(t).people],
        )
        later = db.scalar(select(Alert).where(Alert.supersedes_id == alert.id))
        earlier = db.get(Alert, alert.supersedes_id) if alert.supersedes_id else None
        actors = acknowledger_names(
            db, [e.actor for e in events] + [a.actor for a in acks] + [alert.acknowledged_by]
        )
        names = {**actors, **names}
        event = db.get(Alert, alert.event_id) if alert.event_id else None
        zones_open = (
            db.scalar(
                select(func.count()).where(
                    Alert.event_id == alert.id, Alert.state.in_(OPEN_ALERT_STATES)
                )
            )
            if alert.kind == AlertKind.EVENT
            else None
        )
        return {
            "actor": lambda actor: actor_words(actor or "", names.get),
            "evidence": (
                event_summary_words(alert.evidence or {})
                if alert.kind == AlertKind.EVENT
                else evidence_words(alert.evidence or {})
            ),
            "rule_title": self.rule_titles().get(alert.rule_id, alert.rule_id),
            "event": event,
            "zones_open": zones_open,
            "acknowledged_by": names_of(alert.acknowledged_by, names),
            "login": login,
            "page": "board",
            "alert": alert,
            "zone": zone,
            "level_zh": level_label(alert.level),
            "events": events,
            "notifications": notes,
            "receipts": receipts,
            "acks": acks,
            "pending": [_step_view(t, names) for t in pending],
            "names": names,
            "earlier": earlier,
            "later": later,
            "can_ack": login.may_acknowledge and alert.state in OPEN_ALERT_STATES,
            "done": done,
            "refused": refused,
            "note": note,
        }

    def acknowledger(
        self, request: Request, db: Session, csrf_token: str, note: str
    ) -> auth.Login | Response:
        """The login that may acknowledge with this form, or the answer refusing it
        (no login, a forged form, a read-only account, a note too long)."""
        login = self.login_of(request, db)
        if login is None:
            return self.to_login(request)
        if not auth.tokens_match(login.session.csrf_token, csrf_token):
            return self.forbidden_form(request, login)
        if not login.may_acknowledge:
            return self.message(
                request,
                login,
                "无权确认",
                "只读账号不能确认预警；请由值班员或管理员确认。",
                403,
            )
        if len(note) > NOTE_MAX:
            return self.message(request, login, "备注过长", NOTE_TOO_LONG, 400)
        return login

    def acknowledge(
        self,
        request: Request,
        code: str,
        csrf_token: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        now = self.state.clock()
        note = note.strip()
        with self.state.sessions.begin() as db:
            login = self.acknowledger(request, db, csrf_token, note)
            if isinstance(login, Response):
                return login
            alert = db.scalar(select(Alert).where(Alert.code == code))
            if alert is None:
                return self.message(
                    request, login, "找不到预警", f"没有代码为 {code} 的预警。", 404
                )
            outcome = acknowledge(
                db,
                alert=alert,
                person_id=login.user.person_id,
                actor=f"console:{login.user.name}",
                method="console",
                note=note or None,
                at=now,
            )
            if not outcome.accepted:
                return self.page(
                    request,
                    "alert.html",
                    self._alert_context(
                        db, login, alert, refused=outcome.reason or "确认未被接受。", note=note
                    ),
                    409,
                )
        done = "complete" if outcome.complete else "partial"
        return RedirectResponse(f"/console/alerts/{quote(code)}?done={done}", status_code=303)

    # duty, zones, rules

    def duty(self, request: Request) -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            now = self.state.clock()
            roster = self.state.roster
            context: dict[str, Any] = {"login": login, "page": "duty", "roster": roster}
            if roster is not None and roster.configured:
                current = roster.shift_at(now)
                context["shift"] = current
                context["on_duty"] = roster.on_duty(now)
                context["upcoming"] = roster.shifts(current.day + timedelta(days=1), 7)
            elif roster is not None:
                context["everyone"] = {
                    role: [p for p in roster.people.values() if p.duty_role == role]
                    for role in DUTY_ROLE_LABELS
                }
            return self.page(request, "duty.html", context)

    def zones(self, request: Request) -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            zones = db.scalars(
                select(Zone).where(Zone.active.is_(True)).order_by(Zone.township, Zone.id)
            ).all()
            level: dict[str, str] = {}
            open_count: Counter[str] = Counter()
            for a in db.scalars(
                select(Alert).where(Alert.state.in_(OPEN_ALERT_STATES), Alert.zone_id.is_not(None))
            ):
                assert a.zone_id is not None
                open_count[a.zone_id] += 1
                if severity(a.level) > severity(level.get(a.zone_id, "")):
                    level[a.zone_id] = a.level
            townships: dict[str, list[Zone]] = {}
            for z in zones:
                townships.setdefault(z.township, []).append(z)
            county_map = project(
                [(z.id, z.name, z.latitude, z.longitude, level.get(z.id, "none")) for z in zones],
                labels=[
                    (
                        name,
                        max(z.latitude for z in members) + 0.006,
                        sum(z.longitude for z in members) / len(members),
                    )
                    for name, members in townships.items()
                ],
            )
            return self.page(
                request,
                "zones.html",
                {
                    "login": login,
                    "page": "zones",
                    "zones": zones,
                    "level": level,
                    "open_count": open_count,
                    "map": county_map,
                },
            )

    def rules(self, request: Request) -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            return self.page(
                request,
                "rules.html",
                {"login": login, "page": "rules", "rules": self.state.rules},
            )

    # accounts (admins only)

    def users(self, request: Request, done: str = "", name: str = "") -> Response:
        with self.state.sessions() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            if login.user.role != "admin":
                return self.not_admin(request, login)
            return self._users_page(request, db, login, done=done, name=name)

    def _users_page(
        self,
        request: Request,
        db: Session,
        login: auth.Login,
        *,
        done: str = "",
        name: str = "",
        password: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        now = self.state.clock()
        accounts = [
            (user, auth.account_status(user, now, throttled=self.throttle.throttled(user.name)))
            for user in db.scalars(select(User).order_by(User.name))
            if not auth.is_removed(user)
        ]
        notice = USER_ACTION_DONE[done].format(name=name) if done in USER_ACTION_DONE else None
        return self.page(
            request,
            "users.html",
            {
                "login": login,
                "page": "users",
                "accounts": accounts,
                "status_labels": ACCOUNT_STATUS_LABELS,
                "notice": notice,
                "error": error,
                "reset_name": name if password else None,
                "one_time_password": password,
            },
            status,
        )

    def not_admin(self, request: Request, login: auth.Login) -> HTMLResponse:
        return self.message(
            request, login, "无权访问", "只有管理员可以管理用户账号。本次未作任何更改。", 403
        )

    def user_action(
        self,
        request: Request,
        user_id: DatabaseId,
        action: str,
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        now = self.state.clock()
        with self.state.sessions.begin() as db:
            login = self.login_of(request, db)
            if login is None:
                return self.to_login(request)
            if not auth.tokens_match(login.session.csrf_token, csrf_token):
                return self.forbidden_form(request, login)
            if login.user.role != "admin":
                return self.not_admin(request, login)
            user = db.get(User, user_id)
            if user is None or auth.is_removed(user) or action not in (*USER_ACTION_DONE, "reset"):
                return self.message(request, login, "没有这个账号", "账号不存在或已删除。", 404)
            if action == "disable" and user.id == login.user.id:
                return self._users_page(
                    request, db, login, error="不能停用自己正在使用的账号。", status=409
                )
            actor = f"console:{login.user.name}"
            password: str | None = None
            try:
                if action == "disable":
                    auth.disable_user(db, user, actor=actor, at=now)
                elif action == "enable":
                    auth.enable_user(db, user, actor=actor, at=now)
                elif action == "unlock":
                    auth.unlock_user(db, user, actor=actor, at=now)
                    self.throttle.forgive(user.name)
                else:
                    password = auth.generate_password()
                    auth.reset_password(db, user, password, actor=actor, at=now)
            except auth.LastAdminError:  # raised before anything changed
                return self._users_page(
                    request,
                    db,
                    login,
                    error=f"{user.name} 是最后一个在用的管理员账号，不能停用；请先另设一名管理员。",
                    status=409,
                )
            except ValueError:  # already disabled/enabled: another admin was quicker
                return self._users_page(
                    request, db, login, error="账号状态已变化，请查看下表后重试。", status=409
                )
            if password is not None:
                # shown once, in this response only (never stored, never in a URL)
                return self._users_page(request, db, login, name=user.name, password=password)
            return RedirectResponse(
                f"/console/users?done={action}&name={quote(user.name)}", status_code=303
            )


# --- small helpers


def _audit_throttled(db: Session, address: str, name: str, at: datetime) -> None:
    """On record: wrong passwords from `address` started slowing its logins (as `name`)."""
    audit.record(
        db,
        at=at,
        actor=f"ip:{address}",
        action="console.login_throttled",
        subject=f"login:{name[: auth.NAME_MAX]}",
        data={"address": address, "name": name[: auth.NAME_MAX]},
    )


def _static_urls() -> Callable[[str], str]:
    """`static('console.css')` → a path (never an absolute URL: behind a proxy the
    app does not know its public host) versioned by content, so a new release is
    fetched at once while an unchanged file stays cached."""
    versions = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        for path in STATIC.iterdir()
        if path.is_file()
    }

    def url(name: str) -> str:
        return f"/console/static/{name}?v={versions[name]}"

    return url


def _protect(response: Response) -> None:
    """No framing, scripts and styles only from here, never cached."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


def _safe_next(target: str) -> str:
    """Only a path inside the console; never another site (open redirect)."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


def _transition_label(transition: str) -> str:
    if transition in TRANSITION_LABELS:
        return TRANSITION_LABELS[transition]
    later = parse_step_transition(transition)  # esc2, esc2.1: step 3 (its second round)
    if later is not None:
        again = f"（第 {later.round + 1} 轮）" if later.round else ""
        return f"逐级通知第 {later.step + 1} 步{again}"
    return transition


def _window(onset: str, until: str, alert: Alert) -> str:
    if alert.onset is None and alert.until is None:
        return "—"
    return f"{onset} 至 {until}"


def _person_names(db: Session, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {p.id: p.name for p in db.scalars(select(Person).where(Person.id.in_(wanted)))}


@dataclass(frozen=True)
class StepView:
    """A pending escalation timer, in words."""

    due_at: datetime
    what: str
    who: str
    channels: str


def _step_view(timer: EscalationTimer, names: Mapping[str, str]) -> StepView:
    plan = PlannedStep.of_timer(timer)
    if timer.kind == TimerKind.DEADLINE:
        limit = f"（{plan.minutes} 分钟）" if plan.minutes is not None else ""
        what = f"确认期限{limit}：届时仍未确认即记为超时（迟报），并上报"
    else:
        repeat = f"（第 {timer.round + 1} 轮）" if timer.round else ""
        what = f"逐级通知第 {timer.step + 1} 步{repeat}"
    who = [PERSON_ROLE_LABELS.get(t, t) for t in plan.targets] + [
        names.get(p, p) for p in plan.people
    ]
    return StepView(
        due_at=timer.due_at,
        what=what,
        who="、".join(who),
        channels="、".join(channel_label(c) for c in plan.channels),
    )


@dataclass(frozen=True)
class BoardView:
    """The board as rendered: its head, each item's HTML with a digest, and a version."""

    login: auth.Login
    filter: BoardFilter
    board: BoardPage
    head: Markup
    items: list[tuple[str, str, Markup]]  # (key, digest, html)
    version: str
    refresh_seconds: int

    def context(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "page": "board",
            "f": self.filter,
            "board": self.board,
            "head": self.head,
            "items": self.items,
            "have": ",".join(f"{key}:{digest}" for key, digest, _ in self.items),
            "version": self.version,
            "refresh_seconds": self.refresh_seconds,
            "state_filters": STATE_FILTERS,
        }


@dataclass(frozen=True)
class AckResult:
    """What became of one alert of a bulk acknowledgement."""

    code: str
    place: str
    accepted: bool
    reason: str
    complete: bool = False


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _held_items(header: str) -> dict[str, str]:
    """`X-Board-Have: K7M3:0a1b…,Q2W4:…` → {code: digest} (at most a page and a half)."""
    held: dict[str, str] = {}
    for entry in header.split(",")[:100]:
        key, _, digest = entry.strip().partition(":")
        if key and digest:
            held[key] = digest
    return held


def _load_rule_titles(directory: Path) -> dict[str, str]:
    """Rule id → title: the county's rules, then the library's (an alert may outlive its
    rule's removal); a rule file that cannot be read gives no titles (ids are shown)."""
    titles: dict[str, str] = {}
    for source in [*(LIBRARY / f"{name}.yaml" for name in library_names()), directory]:
        try:
            ruleset = load_ruleset(source)
        except Exception:  # a broken rule file must not take the board down; /rules shows it
            continue
        titles.update({rule.id: rule.title for rule in ruleset.rules if rule.title})
    return titles
