"""Per-channel token buckets: a burst never trips a provider's block.

DingTalk blocks a robot for ten minutes when it gets more than 20 messages a
minute; a short code takes about 100 SMS a second. Each channel has a bucket
of `burst` tokens refilled at `rate` per second; a send waits for a token.
Limits come from what the channel declares, overridden by the setting
`YUJING_RATE_LIMITS` (e.g. `twilio_sms=100/s,dingtalk=20/min`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^\s*([a-z0-9_]+)\s*=\s*([0-9]*\.?[0-9]+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens a second, at most `burst` at once."""

    per_second: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")


def parse_rates(text: str) -> dict[str, Rate]:
    """`twilio_sms=100/s,dingtalk=20/min` → evenly spaced rates (burst of one).

    No bursts: a provider counting in sliding windows then never sees more than
    the limit in any window (20/min means one message every 3 s).
    """
    rates: dict[str, Rate] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SPEC.match(part.lower())
        if not match or match.group(3) not in _UNITS:
            raise ValueError(
                f"rate limit {part!r}: expected CHANNEL=COUNT/UNIT, e.g. twilio_sms=100/s or "
                "dingtalk=20/min (units: s, min, h)"
            )
        channel, count, unit = match.group(1), float(match.group(2)), match.group(3)
        if count <= 0:
            raise ValueError(f"rate limit {part!r}: the count must be positive")
        rates[channel] = Rate(count / _UNITS[unit])
    return rates


class TokenBucket:
    """A token bucket for one channel in one process (asyncio; not thread-safe)."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate.burst
        self.updated = clock()

    def delay(self) -> float:
        """Take a token; return how long the caller must wait before using it."""
        now = self.clock()
        self.tokens = min(
            self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second
        )
        self.updated = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate.per_second

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)


def buckets(
    declared: Mapping[str, float | None], overrides: Mapping[str, Rate]
) -> dict[str, TokenBucket]:
    """One bucket per limited channel: settings override what a channel declares."""
    out: dict[str, TokenBucket] = {}
    for name, per_second in declared.items():
        rate = overrides.get(name) or (Rate(per_second) if per_second else None)
        if rate is not None:
            out[name] = TokenBucket(rate)
    return out
