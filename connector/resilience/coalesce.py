"""Fetch coalescing: identical commands waiting for the same fetch share one exchange fetch.

A risk platform asks for the same account every few seconds, from several services at once, and
a rate-limited account serves one fetch at a time anyway. When a fetch for a key is already
*running*, a new identical command cannot use its answer: that fetch may have read the exchange
before the command arrived, and a snapshot must be at least as fresh as the command asking for
it. So the command waits for the *next* fetch of that key, and every identical command arriving
meanwhile joins that same next fetch, which has not started yet. It starts when the running one
ends, i.e. after every command that joined it arrived. Per key there is therefore at most one
fetch running and at most one waiting; a command with nothing running for its key starts at once
(no added latency when there is nothing to share).

The key is whatever makes two fetches the same request to the exchange (the pipeline uses venue,
account, symbol and the venue's options); nothing here names a venue. A shared fetch runs with
the latest deadline of the commands that joined it; each command still waits only until its own
deadline. Each command builds its own events (own ``request_id``, ``event_id``, ``snapshot_seq``)
and its own single result from the shared :class:`~connector.model.FetchResult`, or the shared
error. A command that stops waiting (deadline, shutdown) does not cancel the shared fetch: the
others still need it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Fetch = Callable[[float], Awaitable[T]]  # deadline (loop time) -> the fetched value


@dataclass
class _Batch(Generic[T]):
    fetch: Fetch[T]
    deadline: float
    members: int = 1
    done: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Key(Generic[T]):
    running: _Batch[T] | None = None
    waiting: _Batch[T] | None = None


class FetchCoalescer(Generic[T]):
    """At most one running and one waiting fetch per key; see the module docstring."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, _Key[T]] = {}
        self.fetches = 0  # fetches started (for tests and the benchmark)
        self.joined = 0  # commands served by a fetch another command started

    async def run(self, key: Hashable, fetch: Fetch[T], *, deadline: float) -> T:
        """``fetch(deadline)``'s value, possibly shared with identical concurrent commands."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        if state.running is None:
            batch = _Batch(fetch, deadline)
            self._start(key, state, batch)
        elif state.waiting is None:
            batch = state.waiting = _Batch(fetch, deadline)
        else:  # join the fetch that has not started yet
            batch = state.waiting
            batch.members += 1
            batch.deadline = max(batch.deadline, deadline)
            self.joined += 1
        # shield: one command giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(batch.done)

    def _start(self, key: Hashable, state: _Key[T], batch: _Batch[T]) -> None:
        state.running = batch
        self.fetches += 1
        task = asyncio.ensure_future(batch.fetch(batch.deadline))
        task.add_done_callback(lambda t: self._finished(key, state, batch, t))

    def _finished(
        self, key: Hashable, state: _Key[T], batch: _Batch[T], task: asyncio.Task[T]
    ) -> None:
        if task.cancelled():
            batch.done.cancel()
        elif (exc := task.exception()) is not None:
            batch.done.set_exception(exc)
            # Retrieved here so that a fetch nobody waits for any more logs nothing at GC.
            batch.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        else:
            batch.done.set_result(task.result())
        state.running = None
        nxt, state.waiting = state.waiting, None
        if nxt is not None:
            self._start(key, state, nxt)
        elif self._keys.get(key) is state:
            del self._keys[key]

    def pending_keys(self) -> int:
        """Keys with a fetch running (for tests: nothing leaks once all commands are answered)."""
        return len(self._keys)
