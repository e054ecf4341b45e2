"""One retry policy for every venue, on tenacity.

Rules, the same for every exchange request:

* Only a :class:`~connector.errors.ConnectorError` with ``retryable`` set is retried.
* The wait is exponential with jitter (``backoff_s * 2**n`` plus up to ``backoff_s`` of jitter),
  capped at ``max_backoff_s``; an error with ``retry_after`` (the server's ``Retry-After``) waits
  exactly that long instead.
* Throttling (:class:`~connector.errors.RateLimited`) is retried until the command's deadline:
  the exchange asked us to slow down, not to give up. Other retryable failures stop after
  ``max_attempts`` tries.
* Nothing sleeps past the deadline: when the next wait would end after it, the policy stops. A
  throttled or timed-out operation is then reported as it was (``RATE_LIMITED``/``TIMEOUT``);
  anything else becomes ``TIMEOUT`` keeping the last error's ``exchange_code``.
* ``attempts`` on the raised error is the number of tries this policy made, counted one way for
  every venue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, NoReturn, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_exponential_jitter

from .. import metrics
from ..errors import ConnectorError, ExchangeTimeout, RateLimited

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header, or None when absent or unreadable.

    Both forms of RFC 9110 are read: delta-seconds (``"120"``) and an HTTP-date (``"Wed, 21 Oct
    2015 07:28:00 GMT"``, counted from ``now``, the epoch time, default the current time). A
    negative or past value means "now" (0.0); junk means the header is ignored (None), so the
    policy's own backoff applies. One parser for every venue, next to the policy that honours it.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one is read as such
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ConnectorError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.max_attempts, backoff_s=settings.retry_backoff_s)

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline: float,
        venue: str,
        what: str,
        on_failure: Callable[[ConnectorError], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``operation`` until it succeeds or the policy gives up; ``deadline`` is loop time.

        ``on_failure`` runs after every failed try (e.g. to drop a cached session); it may
        raise to stop retrying.
        """
        loop = asyncio.get_running_loop()
        backoff = wait_exponential_jitter(
            initial=self.backoff_s, max=self.max_backoff_s, exp_base=2, jitter=self.backoff_s
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after if isinstance(exc, ConnectorError) else None
            if retry_after is not None:
                return retry_after
            return min(self.max_backoff_s, backoff(state)) if self.backoff_s > 0 else 0.0

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if loop.time() + state.upcoming_sleep >= deadline:
                return True
            if isinstance(exc, RateLimited):
                return False
            return state.attempt_number >= self.max_attempts

        def give_up(state: RetryCallState) -> NoReturn:
            exc = state.outcome.exception() if state.outcome else None
            assert isinstance(exc, ConnectorError)
            exc.attempts = state.attempt_number
            out_of_time = loop.time() + state.upcoming_sleep >= deadline
            if not out_of_time or isinstance(exc, RateLimited | ExchangeTimeout):
                raise exc
            raise ExchangeTimeout(
                f"{what}: deadline leaves no time to retry after {state.attempt_number} "
                f"attempt(s); last error: {exc.message}",
                exchange_code=exc.exchange_code,
                attempts=state.attempt_number,
                venue_down=exc.venue_down,
            ) from exc

        waiting: list[RetryCallState] = []  # the failed try the coming sleep follows

        async def before_sleep(state: RetryCallState) -> None:
            waiting[:] = [state]
            exc = state.outcome.exception() if state.outcome else None
            metrics.EXCHANGE_RETRIES.labels(venue, type(exc).__name__).inc()
            log.info(
                "%s %s: attempt %d failed (%s), retrying in %.3fs",
                venue,
                what,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        async def sleep(seconds: float) -> None:
            # ``stop`` allowed this sleep because it ends before the deadline, but a loaded event
            # loop can wake late: then no further try may start, and the command ends as if the
            # deadline had come during the wait.
            await asyncio.sleep(seconds)
            if waiting and loop.time() >= deadline:
                give_up(waiting[0])

        attempt_number = 0

        async def attempt() -> T:
            nonlocal attempt_number
            attempt_number += 1
            try:
                return await operation()
            except ConnectorError as exc:
                exc.attempts = attempt_number
                if on_failure is not None:
                    await on_failure(exc)
                raise

        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait,
            stop=stop,
            sleep=sleep,
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )
        return await retrying(attempt)
