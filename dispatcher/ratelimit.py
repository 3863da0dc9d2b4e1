"""Per-channel token buckets: a burst never trips a provider's block.

DingTalk blocks a robot for ten minutes when it gets more than 20 messages a
minute; a short code takes about 100 SMS a second. Each budget (a channel, or
one robot of it) has a bucket refilled at `rate` per second. The outbox takes
a message's slot when it claims the message (`ChannelPacer.reserve`, only if
the slot is near; otherwise the message stays in the outbox), and checks the
rate once more as the send goes (`ChannelPacer.send_wait`). Limits come from
what the channel declares, overridden by the setting `YUJING_RATE_LIMITS`
(e.g. `twilio_sms=98/s,dingtalk=20/min`). The buckets read the monotonic clock
they are given (the worker's), so a test can move time by hand.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from channels.base import Channel, ChannelLimits

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
    """A token bucket for one channel in one process (asyncio; not thread-safe).

    `clock` returns seconds on a monotonic clock (the worker's: real or a test's).
    """

    def __init__(self, rate: Rate, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate.burst
        self.updated = clock()
        # what has actually gone out: at most `_sent.maxlen` sends in any `_window` s
        # (98/s: 98 in any second; 20/min: one in any 3 s)
        self._window = max(1.0, 1.0 / rate.per_second)
        self._sent: deque[float] = deque(maxlen=max(1, round(rate.per_second * self._window)))

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(
            self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second
        )
        self.updated = now

    def next_in(self) -> float:
        """Seconds until a send could use a token (0: now), taking nothing."""
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate.per_second)

    def send_wait(self) -> float:
        """Seconds until a send may actually go out; 0: it may, and it counts as gone.

        `delay` plans the slots; this holds the rate in practice. Sends kept back
        by a pause of the event loop (a commit, a garbage collection) may catch
        up, but never so that more than the rate's worth go out in any one
        window: a provider counting in one-second windows would see more than
        its limit in the window that starts with the late send.
        """
        now = self.clock()
        sent = self._sent
        if len(sent) == sent.maxlen:
            wait = sent[0] + self._window - now
            if wait > 0:
                return wait
        sent.append(now)
        return 0.0

    def delay(self) -> float:
        """Take a token; return how long the caller must wait before using it."""
        self._refill()
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate.per_second


def declared_rate(limits: ChannelLimits) -> Rate | None:
    """The evenly spaced rate that keeps both of a channel's declared limits."""
    candidates = [limits.per_second, limits.per_minute / 60 if limits.per_minute else None]
    rates = [r for r in candidates if r]
    return Rate(min(rates)) if rates else None


class ChannelPacer:
    """Token buckets per channel, or per (channel, address) for per-robot limits.

    `clock` is the monotonic clock every bucket reads (the worker passes its own).
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        overrides: Mapping[str, Rate],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._rates: dict[str, Rate] = {}
        self._per_address: set[str] = set()
        for name, channel in channels.items():
            rate = overrides.get(name) or declared_rate(channel.limits)
            if rate is not None:
                self._rates[name] = rate
            if channel.limits.rate_scope == "address":
                self._per_address.add(name)
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def rate(self, channel: str) -> Rate | None:
        return self._rates.get(channel)

    def reserve(self, channel: str, address: str, within: float) -> float | None:
        """Take the next send slot of `channel` (or of its robot `address`) if it
        comes within `within` seconds, and return the wait; None (nothing taken)
        if it comes later. Unlimited channels: always 0."""
        bucket = self._bucket(channel, address)
        if bucket is None:
            return 0.0
        if bucket.next_in() > within:
            return None
        return bucket.delay()

    def send_wait(self, channel: str, address: str) -> float:
        """Seconds before a send on this budget may go out (see `TokenBucket.send_wait`)."""
        bucket = self._bucket(channel, address)
        return 0.0 if bucket is None else bucket.send_wait()

    def busy(self, within: float) -> list[tuple[str, str | None]]:
        """The budgets with no free slot within `within` seconds: (channel, None)
        for a whole channel, (channel, address) for one robot."""
        return [
            (channel, address if channel in self._per_address else None)
            for (channel, address), bucket in self._buckets.items()
            if bucket.next_in() > within
        ]

    def _bucket(self, channel: str, address: str) -> TokenBucket | None:
        rate = self._rates.get(channel)
        if rate is None:
            return None
        key = (channel, address if channel in self._per_address else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, self._clock)
        return bucket
