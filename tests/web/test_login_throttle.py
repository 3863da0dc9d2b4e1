"""Login throttling (issue 13): guessers slow down, the rightful user is never locked out.

Through the console's login form on seeded accounts (cheap argon2 parameters,
the same code paths): wrong passwords back off the address that sends them,
per account name and over all names; the account itself only gets a soft
delay, so a right password from another address always gets in; unknown names
take exactly the path known ones take; `unlock` lifts the backoff.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.settings import Settings
from dispatcher.storage.models import AuditEvent
from dispatcher.web import auth
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState
from dispatcher.web.throttle import ACCOUNT, ADDRESS, PAIR, LoginThrottle, client_key
from tests.support import Clock
from tests.web.test_console import NOW, PASSWORD, csrf_of


class CountingHasher(PasswordHasher):
    """argon2 (cheapest parameters) that counts the passwords it verifies."""

    def __init__(self) -> None:
        cheap = CHEAPEST
        super().__init__(
            time_cost=cheap.time_cost,
            memory_cost=cheap.memory_cost,
            parallelism=cheap.parallelism,
            hash_len=cheap.hash_len,
            salt_len=cheap.salt_len,
            type=cheap.type,
        )
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(auth, "PASSWORD_HASHER", counting)
    return counting


class Sleeps:
    """The console's soft delay, recorded instead of slept (and the clock moved on)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def application(
    sessions: sessionmaker[Session], clock: Clock, sleeps: Sleeps | None = None
) -> FastAPI:
    throttle = LoginThrottle(clock, sleep=sleeps or Sleeps(clock))
    state = AppState(
        sessions=sessions,
        settings=Settings(_env_file=None, secret_key=SecretStr("test-secret-key-test-secret-key")),
        clock=clock,
        feed_source="open-meteo",
        started_at=NOW,
        login_throttle=throttle,
    )
    return create_app(state)


def from_address(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, follow_redirects=False, client=(address, 40000))


def attempt(client: TestClient, name: str, password: str) -> Any:
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(form.text)},
    )


def test_wrong_passwords_slow_the_guessing_address_not_the_rightful_user(
    seeded: sessionmaker[Session],
) -> None:
    clock = Clock(NOW)
    app = application(seeded, clock)
    guesser, officer = from_address(app, "203.0.113.9"), from_address(app, "198.51.100.7")

    for _ in range(PAIR.free + 1):
        assert attempt(guesser, "zhang", "guess").status_code == 401
    refused = attempt(guesser, "zhang", PASSWORD)
    assert refused.status_code == 429, "even the right password waits out the backoff here"
    assert "秒后再试" in refused.text and refused.headers["retry-after"] == "1"
    assert "锁定" not in refused.text

    assert attempt(officer, "zhang", PASSWORD).status_code == 303, "another address gets in"

    clock.advance(PAIR.delay(PAIR.free + 1))
    assert attempt(guesser, "zhang", PASSWORD).status_code == 303, "the backoff runs out"


def test_the_backoff_doubles_and_is_on_record(seeded: sessionmaker[Session]) -> None:
    clock = Clock(NOW)
    guesser = from_address(application(seeded, clock), "203.0.113.9")
    waits: list[int] = []
    while len(waits) < 4:
        response = attempt(guesser, "zhang", "guess")
        if response.status_code == 429:
            waits.append(int(response.headers["retry-after"]))
            clock.advance(waits[-1])
        else:
            assert response.status_code == 401
    assert waits == [1, 2, 4, 8]
    with seeded() as db:
        (event,) = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "console.login_throttled")
        ).all()
    assert event.actor == "ip:203.0.113.9" and event.data["name"] == "zhang"


def test_an_address_spraying_many_names_is_slowed_over_all_of_them(
    seeded: sessionmaker[Session],
) -> None:
    clock = Clock(NOW)
    sprayer = from_address(application(seeded, clock), "203.0.113.9")
    for i in range(ADDRESS.free + 1):
        assert attempt(sprayer, f"user{i}", "guess").status_code == 401
    assert attempt(sprayer, "zhang", PASSWORD).status_code == 429


def test_the_account_wide_delay_is_soft_and_the_right_password_still_gets_in(
    seeded: sessionmaker[Session],
) -> None:
    clock = Clock(NOW)
    sleeps = Sleeps(clock)
    app = application(seeded, clock, sleeps)
    # a botnet: many addresses, each below its own limit, all on zhang
    for n in range(ACCOUNT.free + 3):
        assert attempt(from_address(app, f"10.0.{n}.1"), "zhang", "guess").status_code == 401
    assert sleeps.slept, "the account's attempts are held a little"
    assert max(sleeps.slept) <= ACCOUNT.cap

    held = len(sleeps.slept)

    response = attempt(from_address(app, "198.51.100.7"), "zhang", PASSWORD)

    assert response.status_code == 303
    assert len(sleeps.slept) == held + 1, "the rightful user was delayed, not refused"
    assert attempt(from_address(app, "198.51.100.8"), "zhang", PASSWORD).status_code == 303
    assert len(sleeps.slept) == held + 1, "a success ends the account's streak"


def test_an_unknown_name_takes_the_path_of_a_wrong_password(
    seeded: sessionmaker[Session], hasher: CountingHasher
) -> None:
    # the same history for a name that exists and one that does not, each from its own
    # address: every answer, and every password check, must be the same
    clock = Clock(NOW)
    app = application(seeded, clock)

    def history(name: str, address: str) -> list[tuple[int, str, int]]:
        client = from_address(app, address)
        seen = []
        for _ in range(PAIR.free + 3):
            before = hasher.verified
            response = attempt(client, name, "guess")
            error = response.text.split('class="notice error"', 1)[-1].split("<", 1)[0]
            seen.append((response.status_code, error, hasher.verified - before))
        return seen

    known, unknown = history("zhang", "203.0.113.1"), history("nobody", "203.0.113.2")

    assert known == unknown
    assert [checks for _, _, checks in known[: PAIR.free + 1]] == [1] * (PAIR.free + 1), (
        "each attempt before the backoff verifies a hash, for an unknown name too"
    )


def test_a_disabled_account_is_refused_like_a_wrong_password(
    seeded: sessionmaker[Session], hasher: CountingHasher
) -> None:
    with seeded.begin() as db:
        user = auth.find_user(db, "guest")
        auth.disable_user(db, user, actor="test", at=NOW)
    client = from_address(application(seeded, Clock(NOW)), "203.0.113.1")
    response = attempt(client, "guest", PASSWORD)
    assert response.status_code == 401 and "用户名或密码不正确" in response.text
    assert hasher.verified == 1


def test_unlock_on_the_users_page_lifts_the_backoff_at_once(
    seeded: sessionmaker[Session],
) -> None:
    clock = Clock(NOW)
    app = application(seeded, clock)
    officer, admin = from_address(app, "203.0.113.9"), from_address(app, "198.51.100.1")
    for _ in range(ACCOUNT.free + 1):
        attempt(officer, "zhang", "typo")
    assert attempt(officer, "zhang", PASSWORD).status_code == 429
    assert attempt(admin, "admin", PASSWORD).status_code == 303
    page = admin.get("/console/users").text
    row = page.split('data-user="zhang"', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="throttled"' in page.split('data-user="zhang"', 1)[1][:40]
    assert "/unlock" in row
    csrf = csrf_of(page)
    zhang_id = row.split('action="/console/users/', 1)[1].split("/", 1)[0]

    unlocked = admin.post(f"/console/users/{zhang_id}/unlock", data={"csrf_token": csrf})
    assert unlocked.status_code == 303

    assert attempt(officer, "zhang", PASSWORD).status_code == 303


def test_a_very_long_name_or_password_is_just_wrong(
    seeded: sessionmaker[Session], hasher: CountingHasher
) -> None:
    client = from_address(application(seeded, Clock(NOW)), "203.0.113.1")
    assert attempt(client, "zhang" + "x" * 500, PASSWORD).status_code == 401
    assert attempt(client, "zhang", PASSWORD + "x" * 2000).status_code == 401
    assert hasher.verified == 2


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        (None, "unknown"),
    ],
)
def test_addresses_are_counted_per_ipv4_address_and_ipv6_64(host: str | None, key: str) -> None:
    assert client_key(host) == key


def test_a_streak_is_forgotten_after_a_quiet_hour() -> None:
    clock = Clock(datetime(2026, 1, 7, tzinfo=NOW.tzinfo))
    throttle = LoginThrottle(clock)
    for _ in range(PAIR.free + 5):
        throttle.failed("a", "zhang")
    assert throttle.wait("a", "zhang") > 0
    clock.advance(3600)
    assert throttle.wait("a", "zhang") == 0
    assert throttle.soft_delay("zhang") == 0


def test_the_throttle_keeps_a_bounded_number_of_streaks() -> None:
    throttle = LoginThrottle(Clock(NOW), max_entries=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 250}.{n % 250}", f"name{n}")
    assert len(throttle) <= 100
