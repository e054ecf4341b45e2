"""Client-side rate limiting: at most N requests in any window, per (venue, key).

The limiter is a *sliding* window (never fixed one-second buckets, which admit 2N requests
around a bucket edge). One subtlety makes it safe against the exchange's own count: the exchange
sees a request when it *arrives*, which is some time after we admit it. So a request occupies its
slot from admission until one window after its response came back, not one window after it was
admitted. Any request's arrival lies between those two instants, so whatever the network delay,
no ``limit + 1`` requests can arrive at the exchange inside one window. The price is a little
throughput (one round trip per slot).

A fetch whose first request waits here may be joined by identical commands (see
:mod:`.coalesce`); the limiter says when it waits and when it admits.

Waiters queue FIFO behind an :class:`asyncio.Lock`, so concurrent commands for one key are
served in arrival order and none starves. Times come from the running loop's clock, the same
clock as command deadlines, so tests can drive it with a virtual-time loop.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .. import metrics
from ..errors import ExchangeTimeout
from . import coalesce


class SlidingWindowLimiter:
    """At most ``limit`` requests in any ``window`` seconds, counted as explained above."""

    def __init__(self, limit: int, window: float = 1.0, *, venue: str = "") -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.venue = venue
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
        if waited:
            coalesce.waiting_for_slot()  # identical commands may join this fetch meanwhile
        try:
            async with asyncio.timeout_at(deadline), self._queue:
                while True:
                    now = loop.time()
                    if self.occupied(now) < self.limit:
                        self._in_flight += 1
                        coalesce.admitted()  # the fetch has started: nobody may join it now
                        return
                    waited = True
                    coalesce.waiting_for_slot()
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
                f"deadline passed while waiting for the {self.venue} rate limiter", retryable=True
            ) from None
        finally:
            if waited:
                metrics.RATE_LIMIT_WAITS.labels(self.venue).inc()
                metrics.RATE_LIMIT_WAIT_SECONDS.labels(self.venue).inc(
                    max(0.0, loop.time() - started)
                )

    def release(self) -> None:
        """The request's response is in (or it failed): its window starts now."""
        now = asyncio.get_running_loop().time()
        self._in_flight -= 1
        self._completed.append(now)
        self._released.set()


class LimiterRegistry:
    """One limiter per key (a venue decides what identifies a rate-limited user) per process."""

    def __init__(self, venue: str, limit: int, window: float = 1.0) -> None:
        self.venue = venue
        self._limit = limit
        self._window = window
        self._limiters: dict[str, SlidingWindowLimiter] = {}

    def get(self, key: str) -> SlidingWindowLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = SlidingWindowLimiter(self._limit, self._window, venue=self.venue)
            self._limiters[key] = limiter
        return limiter
