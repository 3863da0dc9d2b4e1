"""Duty-console accounts, logins and the tokens that protect them.

- Passwords are stored as argon2id hashes (argon2-cffi's defaults).
- A login is a `ConsoleSession` row that expires `session_ttl_seconds` after
  login (not after the last click: the board refreshes itself and must not keep
  a login alive forever). The cookie carries a random token signed with the
  secret key; the database keeps only the token's sha256, so a copy of the
  database opens no session.
- Every login has its own CSRF token, checked on every POST; the login form
  itself is protected by a short-lived token in a signed cookie (double submit).
- After `LOCK_AFTER_FAILURES` wrong passwords in a row an account is locked
  for `LOCK_SECONDS`: enough to stop guessing, short enough not to lock a duty
  officer out of a night shift.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.storage.models import ConsoleSession, User

#: Console roles with their Chinese labels; admin and duty may acknowledge.
ROLES: Mapping[str, str] = {"admin": "管理员", "duty": "值班员", "viewer": "只读"}
ACKNOWLEDGING_ROLES = frozenset({"admin", "duty"})

LOCK_AFTER_FAILURES = 5
LOCK_SECONDS = 300
MIN_PASSWORD_LENGTH = 8

SESSION_COOKIE = "yujing_session"
LOGIN_COOKIE = "yujing_login"  # CSRF token of the login form, before there is a session

#: argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, t=3).
PASSWORD_HASHER = PasswordHasher()
# Verified against when the user name is unknown, so a wrong name takes as long
# as a wrong password and does not reveal which names exist.
_DUMMY_HASH = PASSWORD_HASHER.hash("no such user")


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return PASSWORD_HASHER.hash(password)


def create_user(
    session: Session,
    *,
    name: str,
    password: str,
    role: str,
    person_id: str | None,
    at: datetime,
) -> User:
    """Add a console account (no commit); ValueError says what is wrong."""
    name = name.strip()
    if not name:
        raise ValueError("the user name is empty")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"the password is too short; use at least {MIN_PASSWORD_LENGTH} characters"
        )
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise ValueError(f"a user named {name!r} already exists")
    user = User(
        name=name,
        password_hash=hash_password(password),
        role=role,
        person_id=person_id,
        active=True,
        failed_logins=0,
        created_at=at,
        updated_at=at,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        at=at,
        actor="cli",
        action="console.user_added",
        subject=f"user:{user.id}",
        data={"name": name, "role": role, "person_id": person_id},
    )
    return user


@dataclass(frozen=True)
class LoginRefused:
    """Why a login failed: `bad_credentials` or `locked` (until when)."""

    reason: str
    locked_until: datetime | None = None


def authenticate(session: Session, name: str, password: str, at: datetime) -> User | LoginRefused:
    """Check a name and password; count failures and lock after too many (no commit)."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None or not user.active:
        _verify(_DUMMY_HASH, password)
        return LoginRefused("bad_credentials")
    if user.locked_until is not None and user.locked_until > at:
        return LoginRefused("locked", user.locked_until)
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        user.updated_at = at
        if user.failed_logins >= LOCK_AFTER_FAILURES:
            user.failed_logins = 0
            user.locked_until = at + timedelta(seconds=LOCK_SECONDS)
            audit.record(
                session,
                at=at,
                actor=f"console:{user.name}",
                action="console.locked",
                subject=f"user:{user.id}",
                data={"failures": LOCK_AFTER_FAILURES, "until": user.locked_until.isoformat()},
            )
            return LoginRefused("locked", user.locked_until)
        return LoginRefused("bad_credentials")
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = at
    user.updated_at = at
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- login sessions


def start_session(session: Session, user: User, *, at: datetime, ttl_seconds: int) -> str:
    """Open a login for `user` (no commit); returns the token for the cookie."""
    # the user's finished logins are of no further use
    session.execute(
        delete(ConsoleSession).where(
            ConsoleSession.user_id == user.id,
            or_(ConsoleSession.expires_at <= at, ConsoleSession.ended_at.is_not(None)),
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id=_digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=at,
            expires_at=at + timedelta(seconds=ttl_seconds),
        )
    )
    audit.record(
        session,
        at=at,
        actor=f"console:{user.name}",
        action="console.login",
        subject=f"user:{user.id}",
        data={"role": user.role},
    )
    return token


@dataclass(frozen=True)
class Login:
    """A valid login: the account and its session row."""

    user: User
    session: ConsoleSession

    @property
    def may_acknowledge(self) -> bool:
        return self.user.role in ACKNOWLEDGING_ROLES


def find_login(session: Session, token: str, at: datetime) -> Login | None:
    """The login of a cookie token, if it is open, unexpired and its account active."""
    row = session.get(ConsoleSession, _digest(token))
    if row is None or row.ended_at is not None or row.expires_at <= at:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return Login(user, row)


def end_session(session: Session, login: Login, at: datetime) -> None:
    """Log out (no commit): the cookie's token no longer opens anything."""
    login.session.ended_at = at
    audit.record(
        session,
        at=at,
        actor=f"console:{login.user.name}",
        action="console.logout",
        subject=f"user:{login.user.id}",
        data={},
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- signed values and CSRF


def sign(secret: bytes, purpose: str, value: str) -> str:
    """`value.signature`, HMAC-SHA256 over the purpose and the value."""
    mac = hmac.new(secret, f"{purpose}\n{value}".encode(), hashlib.sha256).digest()
    return f"{value}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def unsign(secret: bytes, purpose: str, signed: str) -> str | None:
    """The value of a `sign`ed string, or None when the signature does not match."""
    value, _, _ = signed.rpartition(".")
    if not value:
        return None
    return value if hmac.compare_digest(sign(secret, purpose, value), signed) else None


def new_token() -> str:
    """A fresh random token (login-form CSRF)."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
