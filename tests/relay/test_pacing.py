"""The token bucket, on a clock the test moves by hand (no sleeping)."""

from __future__ import annotations

import pytest

from relaywizard.relay.pacing import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_thirty_a_minute_means_one_every_two_seconds() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    assert bucket.try_take()
    assert not bucket.try_take()
    assert bucket.delay() == pytest.approx(2.0)
    clock.now += 1.0
    assert bucket.available() == 0
    assert bucket.delay() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.try_take()


def test_a_minute_never_sends_more_than_rate_plus_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    sent = 0
    for _ in range(600):  # every 0.1 s for a minute, take whatever is there
        while bucket.try_take():
            sent += 1
        clock.now += 0.1
    assert sent <= 31


def test_idle_time_does_not_pile_up_beyond_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(60, burst=3, clock=clock)
    clock.now += 3600
    assert bucket.available() == 3
    assert bucket.try_take(3)
    assert bucket.available() == 0
    assert bucket.delay(2) == pytest.approx(2.0)


def test_a_clock_stepping_back_creates_no_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    bucket.try_take()
    clock.now -= 100
    assert bucket.available() == 0
    clock.now += 2
    assert bucket.available() == 1


async def test_acquire_waits_the_computed_delay() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock=clock)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    await bucket.acquire(sleep=sleep)
    await bucket.acquire(sleep=sleep)
    await bucket.acquire(sleep=sleep)
    assert slept == [pytest.approx(2.0), pytest.approx(2.0)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="at least one"):
        TokenBucket(30, burst=0)
    with pytest.raises(ValueError, match="cannot take 2"):
        TokenBucket(30).try_take(2)
    assert TokenBucket(30).try_take(0)
