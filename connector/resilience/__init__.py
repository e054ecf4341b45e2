"""What every venue needs to survive a real exchange, written once.

* :mod:`.retry` — one retry policy (exponential backoff with jitter, a cap, ``Retry-After``,
  throttling retried until the command's deadline, never past it), built on tenacity, and the
  one ``Retry-After`` header parser (``retry_after_s``);
* :mod:`.limiter` — the sliding-window client-side rate limiter, one per (venue, key);
* :mod:`.clock` — the server-clock offset, measured from a round trip's midpoint and re-measured
  on demand (a venue's "timestamp expired" error);
* :mod:`.cache` — the instrument (contract list) cache and its one failure policy;
* :mod:`.coalesce` — identical concurrent commands share one fetch that starts after they all
  arrived;
* :mod:`.breaker` — a circuit breaker per venue (or per host of it): after repeated "the venue
  is not there" failures commands are answered at once, one probe at a time finds it back.

A venue package composes these; it writes no retry loop, limiter, clock or cache of its own.
"""

from __future__ import annotations

from .breaker import BreakerPolicy, CircuitBoard, CircuitBreaker, CircuitState
from .cache import InstrumentCache
from .clock import ServerClock
from .coalesce import FetchCoalescer
from .limiter import LimiterRegistry, SlidingWindowLimiter
from .retry import RetryPolicy, retry_after_s

__all__ = [
    "BreakerPolicy",
    "CircuitBoard",
    "CircuitBreaker",
    "CircuitState",
    "FetchCoalescer",
    "InstrumentCache",
    "LimiterRegistry",
    "RetryPolicy",
    "ServerClock",
    "SlidingWindowLimiter",
    "retry_after_s",
]
