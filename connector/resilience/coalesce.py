"""Fetch coalescing: identical commands waiting for the same rate-limited fetch share it.

A risk platform asks for the same account every few seconds, from several services at once. On
a rate-limited account a backlog of identical commands would each wait for the limiter and then
each read the same orders. Instead, a command may *join* a fetch for the same key (venue,
account, symbol, venue options: the pipeline builds it; nothing here names a venue) that has
**not started yet**: one whose first exchange request is still waiting for the rate limiter.
Such a fetch reads the exchange only after every command that joined it arrived, so its
snapshot is as fresh as each of them asked for. A fetch that has sent a request is never joined
(it may have read the exchange before the newcomer arrived); the newcomer starts its own fetch
at once, exactly as without coalescing. So coalescing never adds latency: it only removes
requests that would have waited anyway.

"Not started" is signalled by the shared limiter (:mod:`.limiter`): while the first request of
a fetch waits for a slot it calls :func:`waiting_for_slot`, and :func:`admitted` when the slot
is granted (from then on the fetch cannot be joined). A venue without a limiter in its path is
never coalesced. The fetch keeps the deadline of the command that started it. Each command
builds its own events (own ``request_id``, ``event_id``, ``snapshot_seq``) and its own single
result from the shared :class:`~connector.model.FetchResult`, or the shared error. A command
that stops waiting (deadline, shutdown) does not cancel the shared fetch: the others need it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Fetch = Callable[[], Awaitable[T]]


@dataclass
class _Fetch:
    key: Hashable
    done: asyncio.Future[Any]
    # True until the fetch's task first runs (it has done nothing yet), then again while its
    # first request waits for a limiter slot.
    joinable: bool = True
    sent: bool = False  # a request was admitted: the fetch has started
    members: int = 1
    owners: list[Any] = field(default_factory=list)


_CURRENT: contextvars.ContextVar[_Fetch | None] = contextvars.ContextVar(
    "coalesced_fetch", default=None
)


def waiting_for_slot() -> None:
    """Called by a limiter when a request must wait: the fetch may be joined if it has not
    sent anything yet."""
    current = _CURRENT.get()
    if current is not None and not current.sent:
        current.joinable = True


def admitted() -> None:
    """Called by a limiter when a request gets its slot: the fetch has started."""
    current = _CURRENT.get()
    if current is not None:
        current.sent = True
        current.joinable = False


class FetchCoalescer(Generic[T]):
    """Joins identical commands onto a fetch that has not started; see the module docstring."""

    def __init__(self) -> None:
        self._latest: dict[Hashable, _Fetch] = {}
        self.fetches = 0  # fetches started (for tests and the benchmark)
        self.joined = 0  # commands served by a fetch another command started

    async def run(self, key: Hashable, fetch: Fetch[T]) -> T:
        """``fetch()``'s value, shared with identical commands that joined before it started."""
        latest = self._latest.get(key)
        if latest is not None and latest.joinable and not latest.done.done():
            latest.members += 1
            self.joined += 1
            target = latest
        else:
            target = self._start(key, fetch)
        # shield: one command giving up must not cancel the fetch the others wait for.
        result: T = await asyncio.shield(target.done)
        return result

    def _start(self, key: Hashable, fetch: Fetch[T]) -> _Fetch:
        state = _Fetch(key, asyncio.get_running_loop().create_future())
        self._latest[key] = state
        self.fetches += 1

        async def runner() -> T:
            _CURRENT.set(state)  # this task's own context: seen by the limiter calls below
            state.joinable = False  # running: joinable again only while the limiter holds it
            return await fetch()

        task = asyncio.ensure_future(runner())
        task.add_done_callback(lambda t: self._finished(state, t))
        return state

    def _finished(self, state: _Fetch, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            state.done.cancel()
        elif (exc := task.exception()) is not None:
            state.done.set_exception(exc)
            # Retrieved here, so a fetch nobody waits for any more logs nothing at GC.
            state.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        else:
            state.done.set_result(task.result())
        if self._latest.get(state.key) is state:
            del self._latest[state.key]

    def pending_keys(self) -> int:
        """Keys with a joinable or running fetch (for tests: nothing leaks)."""
        return len(self._latest)
