"""Client-side rate limiting: Bitget allows 10 requests per second per user ID on the endpoint.

The limiter is a *sliding* window (never fixed one-second buckets, which admit 20 requests
around a bucket edge). One subtlety makes it safe against the exchange's own count: Bitget sees
a request when it *arrives*, which is some time after we admit it. So a request occupies its
slot from admission until one window after its response came back, not one window after it was
admitted. Any request's arrival lies between those two instants, so whatever the network delay,
no `limit + 1` requests can arrive at the exchange inside one window. The price is a little
throughput (one round trip per slot), which at 10 requests/s is negligible.

Waiters queue FIFO behind an :class:`asyncio.Lock`, so concurrent commands for one account are
served in arrival order and none starves.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ...accounts import Account
from ...errors import ExchangeTimeout
from ...metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS

_EXCHANGE = "bitget"


class SlidingWindowLimiter:
    """At most ``limit`` requests in any ``window`` seconds, counted as explained above.

    Times come from the running loop's clock (``loop.time()``), the same clock as command
    deadlines, so tests can drive it with a virtual-time loop instead of real sleeps.
    """

    def __init__(self, limit: int, window: float = 1.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._in_flight = 0
        self._completed: deque[float] = deque()
        self._queue = asyncio.Lock()
        self._released = asyncio.Event()

    def _purge(self, now: float) -> None:
        while self._completed and self._completed[0] + self.window <= now:
            self._completed.popleft()

    def occupied(self, now: float) -> int:
        """Slots counted against the window at ``now`` (for tests and diagnostics)."""
        self._purge(now)
        return self._in_flight + len(self._completed)

    async def acquire(self, deadline: float | None = None) -> None:
        """Wait for a slot; past ``deadline`` (loop time) raise ExchangeTimeout."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        waited = self._queue.locked()  # queued behind another waiter counts as waiting
        try:
            async with asyncio.timeout_at(deadline), self._queue:
                while True:
                    now = loop.time()
                    if self.occupied(now) < self.limit:
                        self._in_flight += 1
                        return
                    waited = True
                    # Either the oldest completed slot leaves the window, or an in-flight
                    # request completes (which only starts its own window, but wakes us to
                    # re-check in case nothing was completed before).
                    delay = self._completed[0] + self.window - now if self._completed else None
                    self._released.clear()
                    try:
                        await asyncio.wait_for(self._released.wait(), delay)
                    except TimeoutError:
                        pass
        except TimeoutError:
            raise ExchangeTimeout(
                "deadline passed while waiting for the Bitget rate limiter", retryable=True
            ) from None
        finally:
            if waited:
                RATE_LIMIT_WAITS.labels(_EXCHANGE).inc()
                RATE_LIMIT_WAIT_SECONDS.labels(_EXCHANGE).inc(max(0.0, loop.time() - started))

    def release(self) -> None:
        """The request's response is in (or it failed): its window starts now."""
        now = asyncio.get_running_loop().time()
        self._in_flight -= 1
        self._completed.append(now)
        self._released.set()

    @asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        await self.acquire(deadline)
        try:
            yield
        finally:
            self.release()


def limiter_key(account: Account) -> str:
    """Bitget limits per *user ID*; accounts sharing a UID must share a limiter.

    The UID is not something the API key reveals, so an account may declare it in
    ``options: {uid: ...}``; otherwise the key itself identifies the user. The key is hashed so
    the registry never holds a credential.
    """
    uid = account.options.get("uid")
    if uid:
        return f"uid:{uid}"
    return "key:" + hashlib.sha256(account.api_key.reveal().encode()).hexdigest()[:24]


class LimiterRegistry:
    """One limiter per user ID for the whole process, shared by every concurrent command."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self._limit = limit
        self._window = window
        self._limiters: dict[str, SlidingWindowLimiter] = {}

    def for_account(self, account: Account) -> SlidingWindowLimiter:
        key = limiter_key(account)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = SlidingWindowLimiter(self._limit, self._window)
        return limiter
