"""The per-account limiter, driven by a virtual-time event loop (no real sleeps, no races).

``VirtualTimeLoop`` is an ordinary selector loop whose clock only moves when the loop would
otherwise block: instead of waiting ``timeout`` seconds for I/O it advances its clock by
``timeout``. So ``asyncio.sleep(1)`` returns at once in real time, exactly 1 s later in loop
time, and the limiter under test runs its real code path.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY

from connector.account import Account
from connector.errors import ExchangeTimeout
from connector.exchanges.bitget.ratelimit import limiter_key
from connector.resilience import LimiterRegistry, SlidingWindowLimiter
from connector.secrets import Secret

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is scheduled")
        self.now += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """Largest number of events inside any half-open window [t, t + window)."""
    ts = sorted(times)
    best = 0
    j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= window - 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_window_checker_itself_detects_violations() -> None:
    # A fixed-bucket limiter's classic failure: 10 at the end of one second, 10 at the start of
    # the next. The checker must see 20 in one window, or the tests below prove nothing.
    burst = [0.95 + i * 0.001 for i in range(10)] + [1.0 + i * 0.001 for i in range(10)]
    assert max_in_any_window(burst) == 20
    assert max_in_any_window([0.0, 1.0, 2.0]) == 1


async def _fire(
    limiter: SlidingWindowLimiter, n: int, latency: float, rng: random.Random | None = None
) -> tuple[list[float], list[float], list[float]]:
    loop = asyncio.get_running_loop()
    admitted: list[float] = []
    arrived: list[float] = []
    completed: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        try:
            start = loop.time()
            admitted.append(start)
            # The exchange sees the request somewhere between admission and response.
            arrived.append(start + (rng.uniform(0, latency) if rng else 0.0))
            await asyncio.sleep(latency)
            completed.append(loop.time())
        finally:
            limiter.release()

    await asyncio.gather(*(one() for _ in range(n)))
    return admitted, arrived, completed


def test_never_admits_an_eleventh_request_in_any_second() -> None:
    async def scenario() -> list[float]:
        admitted, _, _ = await _fire(SlidingWindowLimiter(10, 1.0, venue="bitget"), 45, latency=0.0)
        return admitted

    admitted = run_virtual(scenario())
    assert len(admitted) == 45
    assert max_in_any_window(admitted) == 10
    # ... and is not needlessly slow: 45 instant requests fit in 4 windows (0, 1, 2, 3, 4).
    assert max(admitted) == pytest.approx(4.0)


def test_windows_start_at_completion_so_arrivals_never_exceed_the_limit() -> None:
    async def scenario() -> tuple[list[float], list[float], list[float]]:
        return await _fire(
            SlidingWindowLimiter(10, 1.0, venue="bitget"), 60, 0.35, random.Random(7)
        )

    admitted, arrived, completed = run_virtual(scenario())
    assert max_in_any_window(admitted) <= 10
    # Whatever the network delay, the exchange never sees 11 requests in one second.
    assert max_in_any_window(arrived) <= 10
    # The 11th admission waits for a full window after the first completion.
    assert sorted(admitted)[10] >= min(completed) + 1.0 - 1e-9


def test_deadline_while_waiting_raises_timeout() -> None:
    async def scenario() -> float:
        limiter = SlidingWindowLimiter(2, 1.0, venue="bitget")
        loop = asyncio.get_running_loop()
        for _ in range(2):
            await limiter.acquire()
            limiter.release()
        with pytest.raises(ExchangeTimeout):
            await limiter.acquire(deadline=loop.time() + 0.5)
        return loop.time()

    assert run_virtual(scenario()) == pytest.approx(0.5)


def test_waits_are_recorded_in_metrics() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"exchange": "bitget"}) or 0.0

    waits = sample("connector_rate_limiter_waits_total")
    seconds = sample("connector_rate_limiter_wait_seconds_total")

    async def scenario() -> None:
        await _fire(SlidingWindowLimiter(10, 1.0, venue="bitget"), 12, latency=0.0)

    run_virtual(scenario())
    assert sample("connector_rate_limiter_waits_total") == waits + 2
    assert sample("connector_rate_limiter_wait_seconds_total") == pytest.approx(seconds + 2.0)


def test_one_limiter_per_user_whatever_the_alias() -> None:
    def account(alias: str, key: str, **options: str) -> Account:
        return Account(
            alias=alias,
            exchange="bitget",
            api_key=Secret(key),
            api_secret=Secret("s"),
            passphrase=Secret("p"),
            options=options,
        )

    registry = LimiterRegistry("bitget", 10)

    def for_account(a: Account) -> SlidingWindowLimiter:
        return registry.get(limiter_key(a))

    a = for_account(account("a", "bg_key_one"))
    assert for_account(account("b", "bg_key_one")) is a
    assert for_account(account("c", "bg_key_two")) is not a
    x = for_account(account("x", "bg_key_three", uid="42"))
    assert for_account(account("y", "bg_key_four", uid="42")) is x
