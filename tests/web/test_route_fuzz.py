"""No request makes a 5xx (issue 13): every route of the application, fuzzed.

The routes are enumerated from the application itself (`app.routes`), so a
route added later is covered without touching this file. Each is called with
hostile path segments (ids past 2^63, negative, non-numeric, non-ASCII),
random methods, queries, cookies (forged, non-ASCII bytes), headers and form
bodies — signed as Twilio would sign them, and carrying a real login and its
CSRF token, some of the time, so the code behind the checks is reached too.
Every answer must be below 500: a malformed request is the client's error
(400/403/404/405/413/422), never a traceback. Every HTML answer, whatever
the request, forbids framing.

On SQLite and PostgreSQL (which refuses NUL characters and integers past
BIGINT where SQLite would not). A larger budget runs under the slow marker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import BaseRoute, Mount
from twilio.request_validator import RequestValidator

from dispatcher.cap import sender_code
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState, RulesStatus
from tests.support import LIULIN, Clock, example_county
from tests.web.test_console import NOW, PASSWORD, add_alert, csrf_of

BASE = "https://testserver"
TOKEN = "0123456789abcdef0123456789abcdef"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

#: Path segments, query values and form values that broke, or could break, a route.
NASTY = [
    str(2**63),
    str(2**63 - 1),
    str(2**64 + 7),
    "9" * 40,
    "-1",
    "0",
    "abc",
    "1e5",
    "１２３",  # full-width digits: str.isdigit() says yes, int() may too
    "²",  # isdigit() yes, int() no
    "é",
    "\u202e\u0000",
    "%00",
    "%ff%fe",
    "..%2f..%2fetc%2fpasswd",
    " ",
    "K7Q2",
    "x" * 3000,
    "<script>",
    "'; DROP TABLE users; --",
]
FIELDS = [
    "username",
    "password",
    "csrf_token",
    "note",
    "next",
    "what",
    "zone",
    "back",
    "From",
    "To",
    "Body",
    "MessageSid",
    "SmsSid",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "Digits",
]
QUERY_KEYS = ["page", "q", "level", "state", "township", "hazard", "show", "limit", "n"]
QUERY_KEYS += ["next", "done", "name"]


@dataclass
class Target:
    """A route's path template and the methods it answers."""

    path: str
    methods: list[str]

    def fill(self, segment: str) -> str:
        return re.sub(r"\{[^}]+\}", lambda _: quote(segment, safe="%"), self.path)


def targets(app: FastAPI) -> list[Target]:
    """Every route of the application, mounts and included routers' routes too."""
    return _walk(app.routes, "")


def _walk(routes: Sequence[BaseRoute], prefix: str) -> list[Target]:
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers
        if included is not None:
            context = getattr(route, "include_context", None)
            found += _walk(included.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            found.append(Target(prefix + route.path, sorted(route.methods or ["GET"])))
        elif isinstance(route, Mount):
            found.append(Target(prefix + route.path + "/{file}", ["GET"]))
        else:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                methods = getattr(route, "methods", None) or ["GET"]
                found.append(Target(prefix + path, sorted(methods)))
    return found


@dataclass
class Site:
    app: FastAPI
    client: TestClient
    cookies: dict[str, str]  # a real login of an admin
    csrf: str


@pytest.fixture
def site(seeded: sessionmaker[Session]) -> Site:
    add_alert(seeded, "K7Q2")
    state = AppState(
        sessions=seeded,
        settings=Settings(
            _env_file=None,
            config_dir=LIULIN,
            secret_key=SecretStr("test-secret-key-test-secret-key"),
            twilio_auth_token=SecretStr(TOKEN),
            public_base_url=BASE,
        ),
        clock=Clock(NOW),
        feed_source="open-meteo",
        started_at=NOW,
        rules=RulesStatus(loaded_at=NOW, content_hash="abc", rules=1),
    )
    app = create_app(state)
    client = TestClient(app, base_url=BASE, follow_redirects=False, raise_server_exceptions=False)
    form = client.get("/console/login")
    client.post(
        "/console/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    cookies = dict(client.cookies)
    assert "yujing_session" in cookies
    csrf = csrf_of(client.get("/console/users").text)
    client.cookies.clear()
    return Site(app, client, cookies, csrf)


def call(
    site: Site,
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    raw: bytes | None = None,
    cookie: str | bytes | None = None,
    logged_in: bool = False,
    sign: bool = False,
    headers: dict[str, str] | None = None,
) -> Any:
    query_string = urlencode(query or {})
    url = path + (f"?{query_string}" if query_string else "")
    sent: dict[str, Any] = dict(headers or {})
    logged_in = logged_in and not path.startswith("/console/logout")  # keep the login
    cookies = dict(site.cookies) if logged_in else {}
    if cookies or cookie is not None:
        parts = [f"{k}={v}".encode() for k, v in cookies.items()]
        if cookie is not None:
            parts.append(cookie if isinstance(cookie, bytes) else cookie.encode())
        sent["cookie"] = b"; ".join(parts)
    body: bytes | None = raw
    if form is not None:
        if logged_in and "csrf_token" not in form:
            form = {**form, "csrf_token": site.csrf}
        body = urlencode(form).encode()
        sent.setdefault("content-type", "application/x-www-form-urlencoded")
        if sign:
            signature = RequestValidator(TOKEN).compute_signature(BASE + url, form)
            sent["x-twilio-signature"] = signature
    response = site.client.request(method, url, content=body, headers=sent)
    assert response.status_code < 500, (
        f"{method} {url} → {response.status_code}: {response.text[:300]}"
    )
    if response.headers.get("content-type", "").startswith("text/html"):
        # no page of ours may be framed by another site (a framed button is a click-jack)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], url
        assert response.headers["x-frame-options"] == "DENY", url
    return response


def test_the_fuzz_covers_every_kind_of_route(site: Site) -> None:
    paths = {t.path for t in targets(site.app)}
    # a route added later is picked up by `targets`; these must be among them now
    for expected in (
        "/webhooks/twilio/sms",
        "/webhooks/twilio/status",
        "/console/login",
        "/console/users/{user_id}/{action}",
        "/ack/{token}",
        "/cap/{identifier}.xml",
        "/console/static/{file}",
        "/healthz",
    ):
        assert expected in paths
    assert len(paths) >= 20


def test_hostile_segments_on_every_route_and_method(site: Site) -> None:
    assert call(site, "GET", "/console/users", logged_in=True).status_code == 200
    for target in targets(site.app):
        for segment in NASTY:
            for method in target.methods:
                logged_in = segment != "K7Q2"
                form = {"note": segment, "zone": segment} if method == "POST" else None
                call(site, method, target.fill(segment), form=form, logged_in=logged_in)
                call(site, method, target.fill(segment), query={"page": segment, "n": segment})
    assert call(site, "GET", "/console/users", logged_in=True).status_code == 200, "still in"


def test_signed_webhooks_with_hostile_values(site: Site) -> None:
    # past the signature check: the values reach the database
    for value in NASTY:
        for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
            form = {field: value for field in FIELDS[8:]}
            call(site, "POST", path, form=form, sign=True)
        call(site, "POST", "/webhooks/twilio/voice/ack", query={"n": value}, form={}, sign=True)
        call(
            site,
            "POST",
            "/webhooks/twilio/voice/ack",
            query={"n": value},
            form={"Digits": "1"},
            sign=True,
        )


def test_a_cap_identifier_naming_an_impossible_alert_is_not_found(site: Site) -> None:
    sender = sender_code(example_county().area_code)
    for alert_id in (str(2**63), "9" * 30):
        response = call(site, "GET", f"/cap/{sender}_20260107080000_{alert_id}.xml")
        assert response.status_code == 404


def test_malformed_cookies_are_no_login(site: Site) -> None:
    cookies: list[str | bytes] = [
        "yujing_session=é",
        b"yujing_session=\xc3\xa9\xff",
        "yujing_session=abc.def",
        "yujing_session=" + "a" * 4000,
        "yujing_session=.",
        'yujing_session="unterminated',
        "yujing_login=\u00e9.x",
    ]
    for cookie in cookies:
        for path in ("/healthz", "/console/", "/console/board/rows", "/console/login"):
            response = call(site, "GET", path, cookie=cookie)
            assert response.status_code in (200, 303, 401)
        call(site, "POST", "/console/login", form={"username": "admin"}, cookie=cookie)


segment = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
values = st.one_of(st.sampled_from(NASTY), st.text(max_size=80))


@st.composite
def requests(draw: st.DrawFn, site: Site) -> dict[str, Any]:
    target = draw(st.sampled_from(targets(site.app)))
    method = draw(st.one_of(st.sampled_from(target.methods), st.sampled_from(METHODS)))
    request: dict[str, Any] = {
        "method": method,
        "path": target.fill(draw(segment)),
        "query": draw(st.dictionaries(st.sampled_from(QUERY_KEYS) | st.text(max_size=8), values)),
        "logged_in": draw(st.booleans()),
        "headers": draw(
            st.dictionaries(
                st.sampled_from(["x-board-have", "if-none-match", "x-twilio-signature"]),
                st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
            )
        ),
    }
    body = draw(st.sampled_from(["form", "raw", "none"]))
    if body == "form":
        request["form"] = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6))
        request["sign"] = draw(st.booleans())
    elif body == "raw":
        request["raw"] = draw(st.binary(max_size=300))
        request["headers"]["content-type"] = draw(
            st.sampled_from(
                [
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=xyz",
                    "multipart/form-data",
                    "application/json",
                    "text/plain; charset=gbk",
                ]
            )
        )
    if draw(st.booleans()):
        request["cookie"] = draw(st.binary(max_size=60).map(lambda b: b"yujing_session=" + b))
    return request


def fuzz(site: Site, data: st.DataObject) -> None:
    request = data.draw(requests(site))
    call(site, **request)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_requests_to_every_route_get_no_5xx(site: Site, data: st.DataObject) -> None:
    fuzz(site, data)


@pytest.mark.slow
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_many_random_requests_to_every_route_get_no_5xx(site: Site, data: st.DataObject) -> None:
    fuzz(site, data)
