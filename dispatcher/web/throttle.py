"""Login throttling: backoff for guessers, never a lock on the rightful user.

A hard lockout after N wrong passwords lets anyone lock the duty officer out
at 3 a.m. by typing their name. Instead, wrong passwords slow down *where they
come from*:

- per (client address, account name): `PAIR.free` failures are free, then each
  further attempt from that address on that name must wait 1 s, 2 s, 4 s … up
  to `PAIR.cap` after the last failure (429 meanwhile, the password unchecked);
- per client address, over all names (spraying): `ADDRESS.free` failures, then
  the same doubling up to `ADDRESS.cap`;
- per account name, from anywhere: only a *soft* delay — after `ACCOUNT.free`
  failures each attempt waits a little (up to `ACCOUNT.cap`, 2 s) before its
  password is checked, and then succeeds if it is right. A correct password
  from an address that has not been guessing always gets through.
- at most `IN_FLIGHT` attempts per address at once: a client cannot queue up
  hundreds of guesses before the first failure counts.

Names are counted whether or not an account has them, so the answers (and
their timing) do not tell which names exist. IPv6 clients are counted per /64
(one subscriber's block), IPv4 per address.

A success clears its (address, name) streak and the name's streak. An
administrator's change to the account (`yujing users unlock`, a password
reset, enable — anything that moves `users.updated_at`) forgives every
streak on that name that is older than the change, so `unlock` works from the
command line against the running daemon.

State is in memory, bounded (`MAX_ENTRIES` streaks, oldest forgotten first),
and per process: a deployment of several instances throttles per instance,
so the guesses an attacker gets scale with the instance count; put a shared
limit in the reverse proxy (nginx `limit_req`) if that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

__all__ = [
    "ACCOUNT",
    "ADDRESS",
    "IN_FLIGHT",
    "PAIR",
    "Backoff",
    "LoginThrottle",
    "client_key",
]


@dataclass(frozen=True)
class Backoff:
    """`free` failures cost nothing; then `base` seconds, doubling, at most `cap`."""

    free: int
    base: float
    cap: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row."""
        if failures <= self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.free - 1, 30))


PAIR: Final = Backoff(free=3, base=1.0, cap=300.0)
ADDRESS: Final = Backoff(free=10, base=1.0, cap=900.0)
ACCOUNT: Final = Backoff(free=5, base=0.25, cap=2.0)
IN_FLIGHT: Final = 2
FORGET_AFTER: Final = timedelta(hours=1)  # a streak this old starts again from nothing
MAX_ENTRIES: Final = 50_000


@dataclass
class _Streak:
    failures: int
    last: datetime  # the last failure


def client_key(host: str | None) -> str:
    """Whom to count: the IPv4 address, the IPv6 /64, or the host as given."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6:
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class LoginThrottle:
    """The streaks of failed logins, by (address, name), address and name (see module doc)."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max = max_entries
        self._streaks: OrderedDict[tuple[str, ...], _Streak] = OrderedDict()
        self._in_flight: dict[str, int] = {}

    def __len__(self) -> int:
        """How many streaks are kept (bounded by `max_entries`)."""
        return len(self._streaks)

    # --- one attempt at a time per address

    def begin(self, address: str) -> bool:
        """Claim an attempt slot for `address`; False when it has `IN_FLIGHT` already."""
        if self._in_flight.get(address, 0) >= IN_FLIGHT:
            return False
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        return True

    def end(self, address: str) -> None:
        """Give back the slot `begin` claimed."""
        left = self._in_flight.get(address, 0) - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)

    # --- before checking a password

    def wait(self, address: str, name: str, changed_at: datetime | None = None) -> float:
        """Seconds `address` must still wait before trying `name` again (0: go ahead).

        `changed_at` is when an administrator last changed the account: streaks
        on the name older than that are forgiven.
        """
        now = self._clock()
        if changed_at is not None:
            for key in (("pair", address, name), ("account", name)):
                streak = self._streaks.get(key)
                if streak is not None and streak.last < changed_at:
                    del self._streaks[key]
        waits = [
            self._remaining(("pair", address, name), PAIR, now),
            self._remaining(("address", address), ADDRESS, now),
        ]
        return max(waits)

    def clean(self, address: str) -> bool:
        """Whether `address` has no recent wrong password (its checks go first)."""
        return self._current(("address", address), self._clock()) is None

    def soft_delay(self, name: str) -> float:
        """Seconds to hold any attempt on `name` before checking it (never a refusal)."""
        streak = self._current(("account", name), self._clock())
        return ACCOUNT.delay(streak.failures) if streak else 0.0

    async def hold(self, name: str) -> None:
        """Wait `soft_delay(name)` (on the event loop: no thread is held meanwhile)."""
        delay = self.soft_delay(name)
        if delay > 0:
            await self._sleep(delay)

    # --- after checking it

    def failed(self, address: str, name: str) -> bool:
        """Count a wrong password; True when this failure starts a backoff (worth auditing)."""
        now = self._clock()
        pair = self._count(("pair", address, name), now)
        whole = self._count(("address", address), now)
        self._count(("account", name), now)
        return pair == PAIR.free + 1 or whole == ADDRESS.free + 1

    def succeeded(self, address: str, name: str) -> None:
        """A right password: the streaks of this (address, name) and of the name end."""
        self._streaks.pop(("pair", address, name), None)
        self._streaks.pop(("account", name), None)

    def throttled(self, name: str) -> bool:
        """Whether anything slows logins to `name` now (the 用户 page shows it)."""
        now = self._clock()
        if self.soft_delay(name) > 0:
            return True
        return any(
            key[0] == "pair" and key[2] == name and self._remaining(key, PAIR, now) > 0
            for key in list(self._streaks)
        )

    def forgive(self, name: str) -> None:
        """Forget every streak on `name` (an administrator lifted the backoff)."""
        for key in [k for k in self._streaks if _names(k, name)]:
            del self._streaks[key]

    # --- bookkeeping

    def _current(self, key: tuple[str, ...], now: datetime) -> _Streak | None:
        streak = self._streaks.get(key)
        if streak is not None and now - streak.last >= FORGET_AFTER:
            del self._streaks[key]
            return None
        return streak

    def _remaining(self, key: tuple[str, ...], policy: Backoff, now: datetime) -> float:
        streak = self._current(key, now)
        if streak is None:
            return 0.0
        until = streak.last + timedelta(seconds=policy.delay(streak.failures))
        return max(0.0, (until - now).total_seconds())

    def _count(self, key: tuple[str, ...], now: datetime) -> int:
        streak = self._current(key, now)
        if streak is None:
            streak = self._streaks[key] = _Streak(0, now)
        streak.failures += 1
        streak.last = now
        self._streaks.move_to_end(key)
        while len(self._streaks) > self._max:
            self._streaks.popitem(last=False)  # the least recently failing first
        return streak.failures


def _names(key: tuple[str, ...], name: str) -> bool:
    return (key[0] == "pair" and key[2] == name) or (key[0] == "account" and key[1] == name)
