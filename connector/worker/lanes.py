"""Bulkheads: the commands a worker holds, run in one lane per venue (issue 20).

Why: a command waiting for its venue (connecting, a session slot, the per-IP connection budget,
a rate limiter, an exchange that does not answer) is waiting, not work. When the Faust actors
ran the exchange work themselves, every such command held one of the ``worker_concurrency``
actors for as long as it waited, so one dead venue (each command held for the whole command
timeout) or one busy rate limiter stopped the commands of every other venue from even being
fetched: measured on the old worker, 8 commands for a healthy venue behind 24 for a venue that
never answered were answered after 5 to 67 s, and a backlog with 1 command in 10 for a venue
with a 5 requests/s per-user limit drained at 32 commands/s against 204/s without them.

So an actor only takes an event, routes it and hands the command to :class:`Lanes`, which runs
it as an asyncio task in its venue's :class:`Lane`, and takes the next event at once. Two limits:

* **per venue** (``CONNECTOR_WORKER_VENUE_CONCURRENCY``, or ``CONNECTOR_<VENUE>_CONCURRENCY``
  for one venue): how many of the venue's commands run at once. Further commands wait in the
  lane, one queue per account, served round-robin: an account whose commands all wait on its
  own budget (a per-user rate limiter, an account group's sessions) takes one turn in
  the lane, not all of it, so the venue's other accounts that are ready to go get the next
  slot that frees. A venue that hangs holds its own slots, never another venue's.
* **held in memory** (``CONNECTOR_WORKER_MAX_IN_FLIGHT``): commands admitted and not yet
  answered, any venue, running or waiting. At the cap :meth:`Lanes.submit` waits, so the
  actors stop taking events and Faust stops fetching: that is the backpressure, and the bound
  on memory. (A backlog made mostly of one stuck venue's commands can still fill it; the
  venue's circuit breaker, connector/venue_gate.py, is what answers those at once.)

A task acknowledges its event when the command is answered, so acks come out of order; the
commit rule (connector/worker/faust_internals.py) commits only the contiguous run of answered
offsets, so nothing unanswered is ever committed. At shutdown :meth:`Lanes.drain` closes the
lanes (a command not started by then is never started: it stays unacknowledged, for the next
owner of its partition) and waits for the running ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .. import metrics

log = logging.getLogger(__name__)

#: The lane (and metric label) of a command whose venue is not one of the worker's.
UNKNOWN = "unknown"


class LaneClosed(Exception):
    """The worker is draining: the command was not started (and must not be acknowledged)."""


class Lane:
    """One venue's slots: at most ``limit`` commands hold one at a time; the others wait, by
    account. A freed slot goes to the waiting account with the fewest commands running (the
    one that waited longest among equals), each account's commands in arrival order."""

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("a lane needs at least one slot")
        self.name = name
        self.limit = limit
        self.running = 0
        self.closed = False
        self._by_account: Counter[str] = Counter()  # commands running, by account
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._running_gauge = metrics.IN_FLIGHT_BY_VENUE.labels(name)
        self._waiting_gauge = metrics.WAITING_BY_VENUE.labels(name)

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    async def acquire(self, account: str) -> None:
        """Until one of the lane's slots is this command's (release it with :meth:`release`).
        Raises LaneClosed when the lane is closed before then."""
        if self.closed:
            raise LaneClosed
        if self.running < self.limit and not self._waiting:
            self._take(account)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(account, deque()).append(granted)
        self._waiting_gauge.inc()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self.release(account)  # the slot was ours already: hand it on
            else:
                self._forget(account, granted)
            raise

    def release(self, account: str) -> None:
        """``account``'s slot given back: the next waiting command (see the class) gets it."""
        self.running -= 1
        self._by_account[account] -= 1
        if not self._by_account[account]:
            del self._by_account[account]
        self._running_gauge.dec()
        self._wake()

    def close(self) -> None:
        """No command starts from now on: every waiting one gets LaneClosed."""
        self.closed = True
        for queue in self._waiting.values():
            for granted in queue:
                if not granted.done():
                    granted.set_exception(LaneClosed())
            self._waiting_gauge.dec(len(queue))
        self._waiting.clear()

    def _take(self, account: str) -> None:
        self.running += 1
        self._by_account[account] += 1
        self._running_gauge.inc()

    def _wake(self) -> None:
        while self.running < self.limit and self._waiting:
            # The account with the fewest running: one whose commands all wait on its own
            # budget (holding slots meanwhile) does not keep the venue's other accounts out.
            account = min(self._waiting, key=self._by_account.__getitem__)
            queue = self._waiting[account]
            granted = queue.popleft()
            self._waiting_gauge.dec()
            if queue:
                self._waiting.move_to_end(account)  # its turn is over
            else:
                del self._waiting[account]
            if not granted.done():
                self._take(account)
                granted.set_result(None)

    def _forget(self, account: str, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(account)
        if queue is not None and granted in queue:
            queue.remove(granted)
            self._waiting_gauge.dec()
            if not queue:
                del self._waiting[account]


class Lanes:
    """Every venue's :class:`Lane` and the cap on commands held, for one worker.

    ``venue_limit`` slots per venue unless ``limits`` names the venue; ``labels`` are the venue
    names a lane may carry (anything else runs in the :data:`UNKNOWN` lane, so the metric labels
    stay bounded).
    """

    def __init__(
        self,
        max_held: int,
        venue_limit: int,
        *,
        limits: Mapping[str, int] | None = None,
        labels: Collection[str] = (),
    ) -> None:
        if max_held < 1:
            raise ValueError("need room for at least one command")
        self.max_held = max_held
        self.venue_limit = venue_limit
        self.limits = dict(limits or {})
        self.labels = frozenset(labels)
        self.held = 0
        self.closed = False
        self._room = asyncio.Semaphore(max_held)
        self._lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def lane(self, venue: str) -> Lane:
        """The lane of ``venue`` (the :data:`UNKNOWN` lane for a name not in ``labels``)."""
        name = venue if venue in self.labels else UNKNOWN
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name, self.limits.get(name, self.venue_limit))
            lane.closed = self.closed
        return lane

    async def submit(self, work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """Called by an actor with a command's work: waits until fewer than ``max_held``
        commands are held (the backpressure), then starts ``work()`` as a task and returns it.
        The task inherits the caller's context (Faust's current event: a table write in it goes
        to that event's partition). Raises LaneClosed when the lanes are closed (draining)."""
        if self.closed:
            raise LaneClosed
        await self._room.acquire()
        if self.closed:
            self._room.release()
            raise LaneClosed
        self.held += 1
        task = asyncio.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    @asynccontextmanager
    async def slot(self, venue: str, account: str) -> AsyncIterator[None]:
        """A slot of ``venue``'s lane for one command of ``account``, for the body of the
        ``async with``. Raises LaneClosed (the command is not started) when the lanes close
        before the slot is given."""
        lane = self.lane(venue)
        await lane.acquire(account)
        try:
            if self.closed:  # granted, but the drain began before this command could start
                raise LaneClosed
            yield
        finally:
            lane.release(account)

    def in_flight(self, venue: str) -> int:
        """The commands of ``venue`` holding a slot now."""
        return self.lane(venue).running

    async def wait_idle(self) -> None:
        """Until every command handed in is done (answered, or given up)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, timeout: float) -> int:
        """Called at shutdown: no command starts any more (the waiting ones are not started),
        the running ones get ``timeout`` seconds to be answered, then are cancelled (their
        events stay unacknowledged). Returns how many were cancelled."""
        self.closed = True
        for lane in self._lanes.values():
            lane.close()
        try:
            await asyncio.wait_for(self.wait_idle(), timeout)
            return 0
        except TimeoutError:
            left = list(self._tasks)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            return len(left)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.held -= 1
        self._room.release()
        if not task.cancelled() and task.exception() is not None:
            # The work handles its own failures (connector/worker/app.py); this is a backstop.
            log.error("command task failed", exc_info=task.exception())
