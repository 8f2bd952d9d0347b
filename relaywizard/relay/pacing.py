"""Pacing: a token bucket that keeps the relay under Microsoft's per-mailbox sending rate.

Microsoft 365 accepts 30 messages a minute per mailbox over SMTP AUTH (``relaywizard.core.m365``); going
faster gets replies like ``432 4.3.2`` or throttling, and a scanner's batch of twenty pages must not cause
that. One bucket per upstream mailbox is shared by all of a forwarder's sessions, so three connections
together still send at most ``rate`` messages a minute.

The bucket holds at most ``burst`` tokens (default 1): with a bigger burst, a full bucket plus a minute's
refill would let more than ``rate`` messages through in one sliding minute. The clock is injectable, so
tests check the arithmetic without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``rate`` tokens a minute, at most ``burst`` saved up; one token per message sent upstream."""

    def __init__(self, rate_per_minute: float, *, burst: int = 1, clock: Clock = time.monotonic) -> None:
        if rate_per_minute <= 0:
            raise ValueError("a token bucket needs a positive rate; use no bucket for no pacing")
        if burst < 1:
            raise ValueError("a token bucket holds at least one token")
        self.rate_per_minute = float(rate_per_minute)
        self.burst = burst
        self._clock = clock
        self._per_second = self.rate_per_minute / 60.0
        self._tokens = float(burst)  # a fresh relay may send its first message at once
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)  # a clock that steps back must not create tokens
        self._tokens = min(float(self.burst), self._tokens + elapsed * self._per_second)
        self._updated = now

    def available(self) -> int:
        """Whole tokens that can be taken right now."""
        self._refill()
        # A tiny epsilon: 0.999999999 tokens after exactly one interval is a whole token.
        return math.floor(self._tokens + 1e-9)

    def try_take(self, count: int = 1) -> bool:
        """Take ``count`` tokens if they are there; False (and nothing taken) otherwise."""
        if count <= 0:
            return True
        if count > self.burst:
            raise ValueError(f"cannot take {count} tokens from a bucket that holds {self.burst}")
        self._refill()
        if self._tokens + 1e-9 < count:
            return False
        self._tokens = max(0.0, self._tokens - count)
        return True

    def delay(self, count: int = 1) -> float:
        """Seconds until ``count`` tokens will be there (0 when they are there now)."""
        self._refill()
        missing = min(count, self.burst) - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self._per_second

    async def acquire(self, count: int = 1, *, sleep: Sleep = asyncio.sleep) -> None:
        """Wait until ``count`` tokens can be taken, then take them."""
        while not self.try_take(count):
            await sleep(self.delay(count))
