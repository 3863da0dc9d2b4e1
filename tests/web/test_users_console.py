"""The console's 用户 page: admins manage accounts; duty officers and viewers get 403.

Through the real application (TestClient) on SQLite and PostgreSQL: the page
lists the accounts; disable, enable, unlock and reset work with the login's
CSRF token only, end the account's logins where they should, are audited with
the admin's name, and the last admin stays. A reset shows a one-time password
once, in the response to the POST.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.storage.models import AuditEvent, User
from dispatcher.web import auth
from tests.web.test_console import NOW, PASSWORD, console, csrf_of, log_in


def user_id(sessions: sessionmaker[Session], name: str) -> int:
    with sessions() as db:
        return db.scalars(select(User.id).where(User.name == name)).one()


def post(client: TestClient, path: str) -> tuple[int, str]:
    """POST a 用户-page form with the token from the page itself."""
    token = csrf_of(client.get("/console/users").text)
    response = client.post(path, data={"csrf_token": token})
    return response.status_code, response.text


def row_status(html: str, name: str) -> str:
    match = re.search(rf'data-user="{re.escape(name)}" data-status="(\w+)"', html)
    assert match, f"no row for {name}"
    return match.group(1)


def last_event(sessions: sessionmaker[Session]) -> AuditEvent:
    with sessions() as db:
        return db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()


def test_only_admins_see_the_users_page_and_its_link(seeded: sessionmaker[Session]) -> None:
    admin = console(seeded)
    log_in(admin, "admin")
    page = admin.get("/console/users")
    assert page.status_code == 200
    assert 'href="/console/users"' in page.text
    for name in ("admin", "zhang", "guest"):
        assert row_status(page.text, name) == "active"
    assert "管理员" in page.text and "值班员" in page.text and "只读" in page.text

    for name in ("zhang", "guest"):
        client = console(seeded)
        log_in(client, name)
        assert 'href="/console/users"' not in client.get("/console/").text
        denied = client.get("/console/users")
        assert denied.status_code == 403 and "只有管理员" in denied.text
        token = csrf_of(client.get("/console/").text)
        target = user_id(seeded, "admin")
        for action in ("disable", "reset", "unlock"):
            refused = client.post(f"/console/users/{target}/{action}", data={"csrf_token": token})
            assert refused.status_code == 403
    with seeded() as db:
        assert db.get_one(User, user_id(seeded, "admin")).active
    assert console(seeded).get("/console/users").status_code == 303  # no login: to the form


def test_disabling_ends_the_users_logins_and_enabling_lets_them_back(
    seeded: sessionmaker[Session],
) -> None:
    officer = console(seeded)
    log_in(officer, "zhang")
    assert officer.get("/console/").status_code == 200
    admin = console(seeded)
    log_in(admin, "admin")
    zhang = user_id(seeded, "zhang")

    response = admin.post(
        f"/console/users/{zhang}/disable",
        data={"csrf_token": csrf_of(admin.get("/console/users").text)},
    )
    assert response.status_code == 303
    page = admin.get(response.headers["location"])
    assert "已停用账号 zhang" in page.text and row_status(page.text, "zhang") == "disabled"
    assert officer.get("/console/").status_code == 303, "the officer's login ended at once"
    event = last_event(seeded)
    assert (event.action, event.actor) == ("console.user_disabled", "console:admin")
    assert event.data == {"name": "zhang", "ended": 1}

    status, _ = post(admin, f"/console/users/{zhang}/enable")
    assert status == 303
    log_in(officer, "zhang")
    assert officer.get("/console/").status_code == 200


def test_a_form_without_the_logins_csrf_token_changes_nothing(
    seeded: sessionmaker[Session],
) -> None:
    admin = console(seeded)
    log_in(admin, "admin")
    zhang = user_id(seeded, "zhang")
    for data in ({}, {"csrf_token": "forged"}):
        response = admin.post(f"/console/users/{zhang}/disable", data=data)
        assert response.status_code == 403
    with seeded() as db:
        assert db.get_one(User, zhang).active


def test_a_reset_shows_a_one_time_password_that_replaces_the_old_one(
    seeded: sessionmaker[Session],
) -> None:
    officer = console(seeded)
    log_in(officer, "zhang")
    admin = console(seeded)
    log_in(admin, "admin")

    status, html = post(admin, f"/console/users/{user_id(seeded, 'zhang')}/reset")
    assert status == 200
    match = re.search(r'<code class="one-time-password">([^<]+)</code>', html)
    assert match, html
    password = match.group(1)
    assert len(password) == auth.GENERATED_PASSWORD_LENGTH
    assert officer.get("/console/").status_code == 303, "the reset ended the old login"
    # shown once: not on the page afterwards, not in the audit trail
    assert password not in admin.get("/console/users").text
    event = last_event(seeded)
    assert event.action == "console.password_reset" and password not in str(event.data)

    with seeded.begin() as db:
        assert isinstance(auth.authenticate(db, "zhang", password, NOW), User)
        assert not isinstance(auth.authenticate(db, "zhang", PASSWORD, NOW), User)


def test_nobody_disables_their_own_account_so_an_admin_always_remains(
    seeded: sessionmaker[Session],
) -> None:
    """The admin doing it is active, so with self-disabling refused the last admin stays."""
    admin = console(seeded)
    log_in(admin, "admin")
    page = admin.get("/console/users").text
    own_row = page.split('data-user="admin"', 1)[1].split("</tr>", 1)[0]
    assert "停用" not in own_row, "no disable button on one's own account"
    status, html = post(admin, f"/console/users/{user_id(seeded, 'admin')}/disable")
    assert status == 409 and "不能停用自己" in html
    with seeded() as db:
        assert db.get_one(User, user_id(seeded, "admin")).active

    # with a second admin, one admin may disable the other
    with seeded.begin() as db:
        auth.create_user(db, name="li", password=PASSWORD, role="admin", person_id=None, at=NOW)
    second = console(seeded)
    log_in(second, "li")
    status, _ = post(second, f"/console/users/{user_id(seeded, 'admin')}/disable")
    assert status == 303
    assert admin.get("/console/users").status_code == 303, "the disabled admin is logged out"


def test_removed_accounts_are_not_listed(seeded: sessionmaker[Session]) -> None:
    with seeded.begin() as db:
        guest = db.get_one(User, user_id(seeded, "guest"))
        auth.remove_user(db, guest, actor="test", at=NOW)
    admin = console(seeded)
    log_in(admin, "admin")
    page = admin.get("/console/users").text
    assert 'data-user="guest' not in page
    status, _ = post(admin, f"/console/users/{guest.id}/enable")
    assert status == 404
