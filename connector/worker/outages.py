"""Outages versus refusals, and the one retry loop behind every write the worker makes.

A broker or schema registry that is unavailable is an *outage*: the command stays
unacknowledged (so its input offset is not committed and nothing is lost) while the write is
retried with capped, jittered backoff, logging one line when the outage starts and one when it
ends. A write the broker refuses for good (e.g. larger than its message limit) is a *refusal*:
retrying cannot fix it, so :meth:`Outages.until_acked` returns it for the caller to answer (a
FAILED outcome instead, a forward answered here, a state write logged).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError

from .. import metrics
from ..codec import RegistryUnavailable

log = logging.getLogger(__name__)

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def is_outage(exc: BaseException) -> bool:
    """Broker or registry unavailable (wait and retry) vs. a refusal that retrying cannot fix."""
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ else exc
    if isinstance(cause, _TOO_LARGE):
        return False
    return isinstance(
        cause,
        (TimeoutError, OSError, KafkaError, ProducerSendError, RegistryUnavailable,
         httpx.TransportError),
    )  # fmt: skip


def refusal_name(exc: BaseException) -> str:
    """The name of what the broker refused with (Faust wraps aiokafka's errors)."""
    return type(exc.__cause__ or exc).__name__


class Outages:
    """Backoff and state-change logging for broker/registry outages, shared by all actors.

    ``on_wait`` is called on every wait (the worker counts a wait as progress for liveness);
    ``registry_answers`` counts the schema registry's answers so far (an answer during a write
    ends a registry outage).
    """

    def __init__(
        self,
        max_backoff_s: float,
        on_wait: Callable[[], None] | None = None,
        registry_answers: Callable[[], int] = lambda: 0,
    ) -> None:
        self.max_backoff_s = max_backoff_s
        self.down: dict[str, tuple[float, int]] = {}  # what -> (since, attempts)
        self._on_wait = on_wait
        self._registry_answers = registry_answers

    async def wait(self, what: str, exc: BaseException) -> None:
        """Called by a writer whose write failed with an outage of ``what``: logs the outage's
        start once, counts it (connector_outages_total), then sleeps the next backoff."""
        since, attempts = self.down.get(what, (time.monotonic(), 0))
        if what not in self.down:
            log.warning(
                "%s unavailable (%s); holding commands and retrying", what, type(exc).__name__
            )
            metrics.OUTAGES.labels(what).inc()
        self.down[what] = (since, attempts + 1)
        # Exponential, capped, "equal jitter": never a hot loop, never a synchronized herd.
        delay = min(self.max_backoff_s, 0.2 * 2**attempts)
        if self._on_wait is not None:
            self._on_wait()
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def recovered(self, *what: str) -> None:
        """Called by a writer whose write succeeded: ends (and logs the end of) those outages."""
        for name in what:
            state = self.down.pop(name, None)
            if state is not None:
                log.warning("%s available again after %.1fs", name, time.monotonic() - state[0])

    async def until_acked(self, send: Callable[[], Awaitable[Any]]) -> BaseException | None:
        """Run ``send`` (which returns once the broker acknowledged what it sent) until it
        succeeds, waiting out broker and schema registry outages with backoff; returns None
        then, or the exception of a refusal that retrying cannot fix (for the caller to
        answer). The one retry loop behind every write the worker makes."""
        while True:
            answers = self._registry_answers()
            try:
                await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc):
                    return exc
                what = "schema registry" if isinstance(exc, RegistryUnavailable) else "broker"
                await self.wait(what, exc)
                continue
            self.recovered("broker")
            if self._registry_answers() > answers:
                self.recovered("schema registry")
            return None
