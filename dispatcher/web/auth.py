"""Duty-console accounts, logins and the tokens that protect them.

- Passwords are stored as argon2id hashes (argon2-cffi's defaults).
- A login is a `ConsoleSession` row that expires `session_ttl_seconds` after
  login (not after the last click: the board refreshes itself and must not keep
  a login alive forever). The cookie carries a random token signed with the
  secret key; the database keeps only the token's sha256, so a copy of the
  database opens no session.
- Every login has its own CSRF token, checked on every POST; the login form
  itself is protected by a short-lived token in a signed cookie (double submit).
- Wrong passwords are never answered with a lock (anyone could lock the duty
  officer out by typing their name): `dispatcher.web.throttle` slows the
  address that guesses, and the console checks passwords in a thread of its
  own (`dispatcher.web.passwords`) so a login flood cannot starve the webhooks.
  An unknown name is checked against a dummy hash of the same cost, through
  the same code, so answers and timing do not tell which names exist.
- Administration (the CLI's `yujing users …` and the console's 用户 page share
  it): disable, enable, unlock (lift the login backoff: it moves `updated_at`,
  which the running console reads as "forgive earlier wrong passwords"),
  reset the password, remove. Disabling,
  removing and a reset end the account's open logins at once. The last active
  admin can be neither disabled nor removed. Every change is audited with
  whoever made it.
- Removing keeps the row: audit events name accounts as `user:ID` and logins
  point at it, so deleting could leave the trail pointing at nothing (or, on
  SQLite, at a later account given the same id). A removed account is
  deactivated, its password hash made unusable and its name set free for a new
  account (`NAME~removedID`); the audit event keeps the old name.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.storage.models import ConsoleSession, User

#: Console roles with their Chinese labels; admin and duty may acknowledge.
ROLES: Mapping[str, str] = {"admin": "管理员", "duty": "值班员", "viewer": "只读"}
ACKNOWLEDGING_ROLES = frozenset({"admin", "duty"})

MIN_PASSWORD_LENGTH = 8
NAME_MAX = 64  # characters of a user name (the column's width)
PASSWORD_MAX = 1024  # characters of a password worth checking; longer ones are wrong
#: The password hash of a removed account: not an argon2 hash, so nothing verifies against it.
REMOVED_HASH = "!removed"
#: Characters of a generated one-time password: no 0/O, 1/l/I look-alikes.
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GENERATED_PASSWORD_LENGTH = 14

SESSION_COOKIE = "yujing_session"
LOGIN_COOKIE = "yujing_login"  # CSRF token of the login form, before there is a session

#: argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, t=3).
PASSWORD_HASHER = PasswordHasher()
#: Password checks at once, in threads of their own (a hash takes ~0.3 s of a core).


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
    actor: str = "cli",
) -> User:
    """Add a console account (no commit); ValueError says what is wrong."""
    name = name.strip()
    if not name:
        raise ValueError("the user name is empty")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    _check_password(password)
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
        actor=actor,
        action="console.user_added",
        subject=f"user:{user.id}",
        data={"name": name, "role": role, "person_id": person_id},
    )
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"the password is too short; use at least {MIN_PASSWORD_LENGTH} characters"
        )


# --- administration: disable, enable, unlock, reset, remove


def is_removed(user: User) -> bool:
    """Whether `user` was removed (kept for the audit trail, never to log in again)."""
    return user.password_hash == REMOVED_HASH


def account_status(user: User, at: datetime, *, throttled: bool = False) -> str:
    """`removed`, `disabled`, `throttled` or `active` (machine words; the console translates).

    `throttled` (wrong passwords are slowing logins to it) is known only to the
    running console, which passes it in.
    """
    if is_removed(user):
        return "removed"
    if not user.active:
        return "disabled"
    return "throttled" if throttled else "active"


def find_user(session: Session, name: str) -> User:
    """The account named `name` (not a removed one); ValueError names the closest names."""
    name = name.strip()
    user = session.scalar(select(User).where(User.name == name))
    if user is not None and not is_removed(user):
        return user
    names = [
        n for n, h in session.execute(select(User.name, User.password_hash)) if h != REMOVED_HASH
    ]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"no user named {name!r}{hint} (see `yujing users list`)")


def revoke_sessions(session: Session, user: User, at: datetime) -> int:
    """End every open login of `user` (no commit); returns how many were open."""
    result = session.execute(
        update(ConsoleSession)
        .where(
            ConsoleSession.user_id == user.id,
            ConsoleSession.ended_at.is_(None),
            ConsoleSession.expires_at > at,
        )
        .values(ended_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


class LastAdminError(ValueError):
    """The change would leave no active admin."""


def _refuse_last_admin(session: Session, user: User, what: str) -> None:
    if user.role != "admin" or not user.active:
        return
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise LastAdminError(
            f"{user.name!r} is the last active admin and cannot be {what}; "
            "make another admin first (`yujing users add NAME --role admin`)"
        )


def _audit_change(
    session: Session, user: User, *, actor: str, action: str, at: datetime, **data: Any
) -> None:
    user.updated_at = at
    audit.record(
        session,
        at=at,
        actor=actor,
        action=action,
        subject=f"user:{user.id}",
        data={"name": user.name, **data},
    )


def disable_user(session: Session, user: User, *, actor: str, at: datetime) -> int:
    """Stop `user` logging in and end their logins (no commit); returns logins ended."""
    if not user.active:
        raise ValueError(f"user {user.name!r} is already disabled")
    _refuse_last_admin(session, user, "disabled")
    user.active = False
    ended = revoke_sessions(session, user, at)
    _audit_change(session, user, actor=actor, action="console.user_disabled", at=at, ended=ended)
    return ended


def enable_user(session: Session, user: User, *, actor: str, at: datetime) -> None:
    """Let a disabled account log in again (no commit)."""
    if user.active:
        raise ValueError(f"user {user.name!r} is already enabled")
    user.active = True
    user.failed_logins = 0
    user.locked_until = None
    _audit_change(session, user, actor=actor, action="console.user_enabled", at=at)


def unlock_user(session: Session, user: User, *, actor: str, at: datetime) -> None:
    """Lift the login backoff after wrong passwords (no commit).

    The backoff lives in the running console (`dispatcher.web.throttle`); the
    change of `updated_at` here tells it to forgive every wrong password before
    `at`, from whatever address. Counters of older versions are cleared too.
    """
    user.locked_until = None
    user.failed_logins = 0
    _audit_change(session, user, actor=actor, action="console.user_unlocked", at=at)


def reset_password(session: Session, user: User, password: str, *, actor: str, at: datetime) -> int:
    """Set a new password, lift any lockout, end the account's logins (no commit).

    Returns the number of logins ended. The audit event never holds the password.
    """
    _check_password(password)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    ended = revoke_sessions(session, user, at)
    _audit_change(session, user, actor=actor, action="console.password_reset", at=at, ended=ended)
    return ended


def remove_user(session: Session, user: User, *, actor: str, at: datetime) -> int:
    """Remove an account, keeping its row for the audit trail (see the module doc).

    Returns the number of logins ended.
    """
    _refuse_last_admin(session, user, "removed")
    name = user.name
    ended = revoke_sessions(session, user, at)
    user.active = False
    user.password_hash = REMOVED_HASH
    suffix = f"~removed{user.id}"
    user.name = name[: 64 - len(suffix)] + suffix
    user.updated_at = at
    audit.record(
        session,
        at=at,
        actor=actor,
        action="console.user_removed",
        subject=f"user:{user.id}",
        data={"name": name, "role": user.role, "ended": ended},
    )
    return ended


def generate_password() -> str:
    """A random one-time password, easy to read aloud over the phone."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))


@dataclass(frozen=True)
class LoginRefused:
    """Why a login failed: `bad_credentials` (the only reason: no lockout, no hints)."""

    reason: str


@dataclass(frozen=True)
class Account:
    """What a login attempt needs of an account, read before the password is checked."""

    id: int
    password_hash: str
    changed_at: datetime  # an administrator's last change: forgives older wrong passwords


def find_account(session: Session, name: str) -> Account | None:
    """The active account that may log in as `name`, or None (unknown, disabled, removed)."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        return None
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.active or is_removed(user):
        return None
    return Account(user.id, user.password_hash, user.updated_at)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; for no account (None) the same work on a dummy hash.

    CPU-bound (~0.3 s): the console runs it in a thread of its own
    (`dispatcher.web.passwords`).
    """
    if len(password) > PASSWORD_MAX:
        password, password_hash = password[:PASSWORD_MAX], None  # checked, never accepted
    ok = _verify(password_hash or _dummy_hash(PASSWORD_HASHER), password)
    return ok and password_hash is not None


def complete_login(
    session: Session, account: Account, password: str, *, at: datetime, ttl_seconds: int
) -> str | None:
    """Open a login for an account whose password was just verified (no commit).

    None when the account changed meanwhile (disabled, removed, a new password).
    Upgrades the stored hash when the hasher's parameters have changed.
    """
    user = session.get(User, account.id)
    if user is None or not user.active or user.password_hash != account.password_hash:
        return None
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.last_login_at = at
    return start_session(session, user, at=at, ttl_seconds=ttl_seconds)


def authenticate(session: Session, name: str, password: str, at: datetime) -> User | LoginRefused:
    """Check a name and password, without throttling (the CLI and tests; no commit).

    The console's login goes through the same `find_account` and
    `verify_password`, with `dispatcher.web.throttle` around them.
    """
    account = find_account(session, name)
    if not verify_password(account.password_hash if account else None, password):
        return LoginRefused("bad_credentials")
    assert account is not None
    user = session.get_one(User, account.id)
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = at
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash with the hasher's own parameters, verified when the name is unknown: a wrong
    name then costs what a wrong password costs."""
    return hasher.hash("no such user")


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
    # bytes, not str: compare_digest refuses non-ASCII text (a forged cookie is not a 500)
    expected = sign(secret, purpose, value).encode()
    return value if hmac.compare_digest(expected, signed.encode("utf-8", "replace")) else None


def new_token() -> str:
    """A fresh random token (login-form CSRF)."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
