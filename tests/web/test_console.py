"""The duty console: logins, CSRF, roles, session expiry, the board and acknowledging."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from dispatcher.cli import app as cli
from dispatcher.settings import Settings
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    EscalationTimer,
    Person,
    User,
    Zone,
    ZoneRole,
)
from dispatcher.web import auth
from dispatcher.web.app import create_app
from dispatcher.web.auth import authenticate, create_user
from dispatcher.web.state import AppState, RulesStatus
from tests.support import Clock, example_roster

ROOT = Path(__file__).resolve().parents[2]
LIULIN = ROOT / "examples" / "liulin"
NOW = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
TTL = 3600
PASSWORD = "correct horse battery"


# --- given


def seed(sessions: sessionmaker[Session]) -> None:
    """One zone with its disaster-prevention person, a duty officer, three accounts."""
    with sessions.begin() as db:
        db.add_all(
            [
                Person(id="p-dpp", name="王建国", phone="+8617000000101", updated_at=NOW),
                Person(
                    id="p-duty",
                    name="张志强",
                    phone="+8617000000001",
                    duty_role="duty_officer",
                    updated_at=NOW,
                ),
                Zone(
                    id="LL-LL-001",
                    name="龙门塔不稳定斜坡",
                    kind="unstable_slope",
                    township="柳林镇",
                    village="龙门垣村",
                    latitude=37.43,
                    longitude=110.89,
                    risk_level="high",
                    tags=[],
                    point_id="pt-1",
                    updated_at=NOW,
                ),
                Zone(
                    id="LL-MC-001",
                    name="穆村镇黄土崩塌",
                    kind="collapse",
                    township="穆村镇",
                    village="穆村",
                    latitude=37.40,
                    longitude=110.95,
                    risk_level="medium",
                    tags=[],
                    point_id="pt-2",
                    updated_at=NOW,
                ),
            ]
        )
        db.flush()
        db.add(ZoneRole(zone_id="LL-LL-001", person_id="p-dpp", role="disaster_prevention"))
        for name, role, person in (
            ("zhang", "duty", "p-duty"),
            ("guest", "viewer", None),
            ("admin", "admin", None),
        ):
            create_user(db, name=name, password=PASSWORD, role=role, person_id=person, at=NOW)


def add_alert(
    sessions: sessionmaker[Session],
    code: str,
    level: str = "yellow",
    *,
    opened: datetime = NOW,
    zone: str | None = "LL-LL-001",
    kind: str = "hazard",
    deadline: datetime | None = None,
) -> int:
    with sessions.begin() as db:
        alert = Alert(
            code=code,
            kind=kind,
            zone_id=zone,
            hazard="cold_wave" if kind == "hazard" else "feed_down",
            rule_id="cold_wave" if kind == "hazard" else "feed:open-meteo",
            title="寒潮" if kind == "hazard" else "预报数据中断",
            level=level,
            state="firing",
            onset=opened,
            until=opened + timedelta(hours=24),
            opened_at=opened,
            updated_at=opened,
        )
        db.add(alert)
        db.flush()
        if deadline is not None:
            db.add(
                EscalationTimer(
                    alert_id=alert.id,
                    kind="deadline",
                    due_at=deadline,
                    status="done" if deadline <= NOW else "pending",
                    plan={},
                    created_at=opened,
                )
            )
        return alert.id


def console(
    sessions: sessionmaker[Session],
    clock: Clock | None = None,
    base_url: str = "http://testserver",
    address: str = "testclient",
    **settings: object,
) -> TestClient:
    config = Settings(
        _env_file=None,
        secret_key=SecretStr("test-secret-key-test-secret-key"),
        session_ttl_seconds=TTL,
        **settings,  # type: ignore[arg-type]
    )
    state = AppState(
        sessions=sessions,
        settings=config,
        clock=clock or Clock(NOW),
        feed_source="open-meteo",
        started_at=NOW,
        rules=RulesStatus(loaded_at=NOW, content_hash="abc123", rules=12),
    )
    return TestClient(
        create_app(state), base_url=base_url, follow_redirects=False, client=(address, 50000)
    )


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns where the console sends the browser next."""
    form = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def ack_form(client: TestClient, code: str) -> str:
    page = client.get(f"/console/alerts/{code}")
    assert page.status_code == 200
    return csrf_of(page.text)


def board_codes(html: str) -> list[str]:
    return re.findall(r'data-code="([A-Z0-9]+)"', html)


def acknowledgements(sessions: sessionmaker[Session]) -> list[Acknowledgement]:
    with sessions() as db:
        return list(db.scalars(select(Acknowledgement)))


def state_of(sessions: sessionmaker[Session], code: str) -> str:
    with sessions() as db:
        return db.scalars(select(Alert.state).where(Alert.code == code)).one()


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest parameters: the real ones cost ~0.5 s a hash on a busy CI box.

    The algorithm and the code paths are the same; the command-line test below
    checks that real accounts get the real parameters.
    """
    monkeypatch.setattr(auth, "PASSWORD_HASHER", PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture
def seeded(sessions: sessionmaker[Session], cheap_hashes: None) -> sessionmaker[Session]:
    seed(sessions)
    return sessions


# --- login


def test_every_page_needs_a_login(seeded: sessionmaker[Session]) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    for path in ("/console/", "/console/alerts/K7Q2", "/console/duty", "/console/zones"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    assert client.get("/console/board/rows").status_code == 401


def test_the_right_password_opens_the_board(seeded: sessionmaker[Session]) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    assert log_in(client, "zhang") == "/console/"
    board = client.get("/console/")
    assert board.status_code == 200
    assert "预警看板" in board.text and "K7Q2" in board.text


def test_a_wrong_password_is_refused(seeded: sessionmaker[Session]) -> None:
    client = console(seeded)
    form = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": "zhang", "password": "wrong", "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text
    assert client.get("/console/").status_code == 303


def test_an_unknown_user_is_refused_like_a_wrong_password(seeded: sessionmaker[Session]) -> None:
    client = console(seeded)
    form = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": "nobody", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text


def test_a_login_form_without_its_token_is_refused(seeded: sessionmaker[Session]) -> None:
    client = console(seeded)
    client.get("/console/login")
    response = client.post("/console/login", data={"username": "zhang", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/console/").status_code == 303


def test_the_session_cookie_is_signed_http_only_and_same_site(
    seeded: sessionmaker[Session],
) -> None:
    client = console(seeded)
    form = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": "zhang", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("yujing_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    token = client.cookies["yujing_session"]
    client.cookies.clear()  # the altered cookie alone, not beside the one the login set
    client.cookies.set("yujing_session", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert client.get("/console/").status_code == 303


def test_the_session_cookie_is_secure_behind_https(seeded: sessionmaker[Session]) -> None:
    client = console(
        seeded, base_url="https://testserver", public_base_url="https://yujing.example.gov.cn"
    )
    form = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": "zhang", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("yujing_session=")
    )
    assert "Secure" in cookie


def test_a_login_expires_after_the_session_lifetime(seeded: sessionmaker[Session]) -> None:
    clock = Clock(NOW)
    client = console(seeded, clock)
    log_in(client, "zhang")
    clock.now = NOW + timedelta(seconds=TTL - 1)
    assert client.get("/console/").status_code == 200
    clock.now = NOW + timedelta(seconds=TTL)
    assert client.get("/console/").status_code == 303
    assert client.get("/console/board/rows").status_code == 401


def test_logging_out_ends_the_login(seeded: sessionmaker[Session]) -> None:
    client = console(seeded)
    log_in(client, "zhang")
    cookie = client.cookies["yujing_session"]
    board = client.get("/console/")
    logout = client.post("/console/logout", data={"csrf_token": csrf_of(board.text)})
    assert logout.status_code == 303
    client.cookies.set("yujing_session", cookie)  # a copy kept from before
    assert client.get("/console/").status_code == 303


def test_after_login_the_console_returns_to_the_page_asked_for_but_never_off_site(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    cases = (("/console/alerts/K7Q2", "/console/alerts/K7Q2"), ("//evil", "/console/"))
    for asked, landed in cases:
        client.cookies.clear()
        form = client.get("/console/login", params={"next": asked})
        response = client.post(
            "/console/login",
            data={
                "username": "zhang",
                "password": PASSWORD,
                "csrf_token": csrf_of(form.text),
                "next": asked,
            },
        )
        assert response.headers["location"] == landed


# --- acknowledging


def test_acknowledging_from_the_console_records_method_console_and_the_note(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2", "yellow")
    client = console(seeded)
    log_in(client, "zhang")
    response = client.post(
        "/console/alerts/K7Q2/ack",
        data={"csrf_token": ack_form(client, "K7Q2"), "note": "已电话通知村委会巡查"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/alerts/K7Q2?done=complete"
    [ack] = acknowledgements(seeded)
    assert (ack.method, ack.person_id, ack.actor, ack.note) == (
        "console",
        "p-duty",
        "console:zhang",
        "已电话通知村委会巡查",
    )
    assert state_of(seeded, "K7Q2") == "acknowledged"
    page = client.get(response.headers["location"])
    assert "已确认" in page.text and "已电话通知村委会巡查" in page.text


def test_a_post_without_the_csrf_token_is_forbidden_and_acknowledges_nothing(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    log_in(client, "zhang")
    response = client.post("/console/alerts/K7Q2/ack", data={"note": "x"})
    assert response.status_code == 403
    assert acknowledgements(seeded) == []
    assert state_of(seeded, "K7Q2") == "firing"


def test_a_post_with_a_wrong_csrf_token_is_forbidden_and_acknowledges_nothing(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    log_in(client, "zhang")
    ack_form(client, "K7Q2")
    response = client.post("/console/alerts/K7Q2/ack", data={"csrf_token": "forged", "note": ""})
    assert response.status_code == 403
    assert acknowledgements(seeded) == []
    assert state_of(seeded, "K7Q2") == "firing"


def test_another_logins_csrf_token_does_not_count(seeded: sessionmaker[Session]) -> None:
    add_alert(seeded, "K7Q2")
    other = console(seeded)
    log_in(other, "admin")
    token_of_admin = ack_form(other, "K7Q2")
    client = console(seeded)
    log_in(client, "zhang")
    response = client.post("/console/alerts/K7Q2/ack", data={"csrf_token": token_of_admin})
    assert response.status_code == 403
    assert acknowledgements(seeded) == []


def test_a_viewer_cannot_acknowledge(seeded: sessionmaker[Session]) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    log_in(client, "guest")
    page = client.get("/console/alerts/K7Q2")
    assert "确认收到" not in page.text  # no acknowledge button
    response = client.post("/console/alerts/K7Q2/ack", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 403
    assert "只读账号不能确认" in response.text
    assert acknowledgements(seeded) == []
    assert state_of(seeded, "K7Q2") == "firing"


def test_a_red_warning_acknowledged_by_the_duty_officer_alone_stays_firing(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "R3D1", "red")
    client = console(seeded)
    log_in(client, "zhang")
    token = ack_form(client, "R3D1")
    response = client.post("/console/alerts/R3D1/ack", data={"csrf_token": token})
    assert response.headers["location"] == "/console/alerts/R3D1?done=partial"
    assert state_of(seeded, "R3D1") == "firing"
    assert len(acknowledgements(seeded)) == 1


def test_acknowledging_a_resolved_alert_is_refused_with_the_reason(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2")
    client = console(seeded)
    log_in(client, "zhang")
    token = ack_form(client, "K7Q2")
    with seeded.begin() as db:
        db.scalars(select(Alert).where(Alert.code == "K7Q2")).one().state = "resolved"
    response = client.post("/console/alerts/K7Q2/ack", data={"csrf_token": token})
    assert response.status_code == 409
    assert "已解除" in response.text
    assert acknowledgements(seeded) == []


# --- the board


def test_the_board_shows_unacknowledged_alerts_first_then_by_level_then_newest_first(
    seeded: sessionmaker[Session],
) -> None:
    hour = timedelta(hours=1)
    add_alert(seeded, "YOLD", "yellow", opened=NOW - 3 * hour)
    add_alert(seeded, "YNEW", "yellow", opened=NOW - 1 * hour)
    add_alert(seeded, "RED1", "red", opened=NOW - 1 * hour, deadline=NOW + hour)
    add_alert(seeded, "BLUE", "blue", opened=NOW - 5 * hour, deadline=NOW - 2 * hour)
    add_alert(seeded, "SYS1", "orange", zone=None, kind="system", opened=NOW - 2 * hour)
    add_alert(seeded, "SEEN", "red", opened=NOW)
    with seeded.begin() as db:
        db.scalars(select(Alert).where(Alert.code == "SEEN")).one().state = "acknowledged"
    client = console(seeded)
    log_in(client, "guest")
    rows = client.get("/console/").text
    assert board_codes(rows) == ["RED1", "SYS1", "YNEW", "YOLD", "BLUE", "SEEN"]
    assert "超时未确认" in rows and "系统" in rows


def test_the_board_leaves_out_closed_alerts_and_marks_acknowledged_ones(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "OPEN")
    add_alert(seeded, "GONE")
    add_alert(seeded, "SEEN")
    with seeded.begin() as db:
        db.scalars(select(Alert).where(Alert.code == "GONE")).one().state = "resolved"
        db.scalars(select(Alert).where(Alert.code == "SEEN")).one().state = "acknowledged"
    client = console(seeded)
    log_in(client, "guest")
    rows = client.get("/console/").text
    assert sorted(board_codes(rows)) == ["OPEN", "SEEN"]
    assert "已确认" in rows


def test_the_board_page_refreshes_itself_from_its_rows(seeded: sessionmaker[Session]) -> None:
    client = console(seeded)
    log_in(client, "guest")
    board = client.get("/console/")
    assert 'data-refresh="/console/board/rows"' in board.text
    assert "/console/static/console.js" in board.text
    assert client.get("/console/static/console.js").status_code == 200
    assert "http://" not in board.text and "https://" not in board.text  # nothing off-site


def test_the_alert_page_shows_its_timeline_and_the_steps_to_come(
    seeded: sessionmaker[Session],
) -> None:
    alert_id = add_alert(seeded, "K7Q2", deadline=NOW + timedelta(minutes=30))
    with seeded.begin() as db:
        db.add(
            AuditEvent(
                at=NOW,
                actor="system",
                action="alert.new",
                subject=f"alert:{alert_id}",
                data={},
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    client = console(seeded)
    log_in(client, "guest")
    page = client.get("/console/alerts/K7Q2").text
    assert "发布预警" in page
    assert "待执行" in page and "确认期限" in page


# --- other pages


def test_the_zones_page_draws_each_zone_coloured_by_its_current_level(
    seeded: sessionmaker[Session],
) -> None:
    add_alert(seeded, "K7Q2", "orange", zone="LL-LL-001")
    client = console(seeded)
    log_in(client, "guest")
    page = client.get("/console/zones").text
    assert len(re.findall(r'<circle class="pt ', page)) == 2
    assert re.search(r'<circle class="pt orange"[^>]*><title>龙门塔不稳定斜坡', page)
    assert re.search(r'<circle class="pt none"[^>]*><title>穆村镇黄土崩塌', page)


def test_the_rules_page_shows_the_last_load_and_the_last_error(
    seeded: sessionmaker[Session],
) -> None:
    client = console(seeded)
    client.app.state.yujing.rules.error = "rules/cold_wave.yaml:3:5: unknown variable"  # type: ignore[attr-defined]
    log_in(client, "guest")
    page = client.get("/console/rules").text
    assert "2026-01-07 08:00:00" in page  # last good load, in Asia/Shanghai
    assert "unknown variable" in page


def test_the_duty_page_shows_who_is_on_duty_now(seeded: sessionmaker[Session]) -> None:
    roster = example_roster()
    client = console(seeded)
    client.app.state.yujing.roster = roster  # type: ignore[attr-defined]
    log_in(client, "guest")
    page = client.get("/console/duty").text
    officer, leader = roster.on_duty(NOW)
    assert officer is not None and leader is not None
    assert officer.name in page and leader.name in page


# --- accounts from the command line


def test_users_add_creates_an_account_from_a_password_on_stdin(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            *("users", "add", "wangfang", "--role", "duty", "--person", "p-duty-zhang"),
            *("--password-stdin", "--config", str(LIULIN)),
        ],
        input="a long enough password\n",
        env={"YUJING_DATABASE_URL": db_url},
    )
    assert result.exit_code == 0, result.output
    with sessions.begin() as db:
        user = authenticate(db, "wangfang", "a long enough password", NOW)
        assert isinstance(user, User)
        assert (user.role, user.person_id) == ("duty", "p-duty-zhang")
        assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_users_add_refuses_a_person_not_in_the_configuration(db_url: str, engine: Engine) -> None:
    result = CliRunner().invoke(
        cli,
        [
            *("users", "add", "wangfang", "--role", "duty", "--person", "p-nobody"),
            *("--password-stdin", "--config", str(LIULIN)),
        ],
        input="a long enough password\n",
        env={"YUJING_DATABASE_URL": db_url},
    )
    assert result.exit_code == 1
    assert "p-nobody" in result.output and "people.yaml" in result.output
