"""Everything that touches Faust's or aiokafka's private names, and the Kafka transport with
its corrections for this connector.

This is the only module under ``connector/`` that reads or writes a private attribute or calls a
private method of faust-streaming or aiokafka; the rest of the worker goes through the small
public functions at the end of this module (:func:`live_actor_count`,
:func:`recovery_started_at`, :func:`aiokafka_producer`, :func:`started_aiokafka_producer`,
:func:`wait_on_metadata`, :func:`uncommitted_acks`, :func:`committed_offsets`). An upgrade of
either library therefore means re-checking this list, and only this module.

Private names relied on, checked against the pins in requirements.lock (faust-streaming 0.15.3,
aiokafka 0.14.0):

* ``faust.transport.drivers.aiokafka.Consumer``: ``_new_offset`` (replaced: the commit rule),
  ``_acked``, ``_acked_index``, ``_gap`` (an IntervalTree per partition), ``_committed_offset``,
  ``_unacked_messages``, ``_read_offset`` (replaced by :class:`ReadOffsets`), ``_add_gap``
  (wrapped), ``_new_consumer_thread`` (overridden).
* ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer``
  (wrapped).
* ``faust.App._new_transport`` (overridden).
* ``faust.transport.drivers.aiokafka.Producer``: ``_producer`` (the aiokafka producer, None
  until started) and ``_ensure_producer()``.
* ``faust.agents.Agent._actors`` (its actor references; each one's ``actor_task`` is public).
* ``faust.tables.recovery.Recovery._recovery_started_at`` (monotonic start of a recovery).
* ``aiokafka.AIOKafkaConsumer._fetch_max_wait_ms`` (read when its fetcher is built).
* ``aiokafka.client.AIOKafkaClient._wait_on_metadata(topic)``.

The Kafka transport's corrections:

**Configurable long-poll wait.** faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for its
consumer. Against Apache Kafka that is harmless: the broker answers a waiting fetch as soon as
data arrives. The embedded development broker (Tansu) answers only when the wait expires, which
adds up to 1.5 s to every command. The wait is therefore a setting
(``CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS``) whose default is Faust's own 1500 ms; the demo, tests and
benchmarks lower it for the embedded broker only.

**No commit past an unfinished command.** Faust commits, per partition, the end of the first run
of consecutive acknowledged offsets (``Consumer._new_offset``). Its only guard against a run that
does not start where the last commit ended is ``min(acked) - committed > 1``, which is off by
one (``committed`` is the *next* offset to read) and absent before the first commit. With
concurrent actors, commands finish out of order: with offset 10 still being fetched from a slow
exchange and 11 answered, Faust commits 12, and a worker killed before 10 is answered loses
command 10 for good (measured: tests/integration/test_faults.py
``test_killed_with_a_slow_command_in_flight_loses_nothing``). :func:`commit_end` is the rule
that replaces it: a partition's commit is the end of the run of answered offsets that starts
exactly at its committed offset, so nothing is committed while that offset is unanswered.

**No gap where nothing is missing.** Faust treats offsets its fetcher jumped over as
acknowledged ("gaps": compacted records, transaction markers), judged against its read offset.
After a rebalance it resets that read offset to the committed offset (the post-recovery seek)
while the fetcher may still be delivering a batch fetched before the seek; the next record of
that batch then looks like a jump, and the records in between, delivered but possibly still
queued for the agent, count as acknowledged. A commit then passes them, and a worker stopped
before it reaches them loses them (seen: one command of 200 lost in the SIGTERM fault test).
:class:`ReadOffsets` remembers the highest offset delivered since the partition was assigned,
and a gap counts only above it, and never includes the record being delivered.

**No commit past a hole, and holes refetched.** Faust also drops fetched records on its way to
the agent (a partition not yet active, a generation change mid-batch, a read offset already
past them) and counts on its post-rebalance seek to fetch them again; but aiokafka does not
seek a partition that has no committed offset yet, so such a record is never delivered (seen:
one command of 500 lost in the SIGKILL fault test, on a by-account partition nothing had been
committed on). So the commit rule is strict: a partition's commit advances only from its base
(the committed offset, or the partition's first offset before any commit) through offsets that
were acknowledged, never over one that was not. And :meth:`TunedConsumer.heal_offsets`, run
every second, seeks a partition back to its first *hole* (an offset neither acknowledged nor
in flight while a later one is acknowledged) once that hole has lasted ``HOLE_GRACE_S``, so the
record is fetched again: answered, not skipped. A record the agent had already answered is
recognized as a repeat by the worker and not answered twice.

**A skipped record is not an answered one.** Faust's stream iterator skips an event while flow
control is suspended (a rebalance) or when it was fetched in an older generation, and counts on
a later fetch to deliver it again. The compiled iterator (``faust._cython.streams``) leaves such
an event unacknowledged; the pure-Python one (``Stream._py_aiter``, used when ``NO_CYTHON`` is
set or the extension does not import) acknowledges it, so the commit passed commands nobody
answered (issue 20; tests/integration/test_commit_rule.py). Both iterators track an event (mark
it pending) before the agent may see it, and skip it before that, so :meth:`TunedConsumer.ack`
does not count an untracked message of an acknowledged topic: it stays a hole, fetched again.

**A marker at the committed offset is a gap.** Faust's seek to the committed offsets sets a
partition's read offset to the *next* offset to read, while its fetcher reads it as the *last*
one delivered, so a jump from there misses its first offset: with the committed offset on a
transaction marker or a compacted-away record (never delivered), the next commit waited for it
forever and the hole refetch delivered the following record again every few seconds.
:class:`ReadOffsets` remembers the offset of that seek until the partition's next record and
counts the offsets between them, above any already delivered, as gaps.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.exceptions import AlreadyConfiguredWarning
from faust.transport.drivers import aiokafka as faust_aiokafka

from .. import metrics

log = logging.getLogger(__name__)


def commit_end(base: int, covered: Iterable[int]) -> int | None:
    """The offset to commit: the end of the run of consecutive ``covered`` offsets (answered,
    or skipped by the fetcher) that starts at ``base``, the partition's committed offset (the
    next to read) or first offset; None when ``base`` itself is not covered: it is in flight,
    queued, or a hole. The run never passes an offset that was not answered."""
    done = set(covered)
    end = base
    while end in done:
        end += 1
    return end if end > base else None


class ReadOffsets(defaultdict[Any, "int | None"]):
    """Faust's per-partition read offsets (``Consumer._read_offset``), also keeping in
    ``delivered`` the highest offset set since the partition was assigned. Faust's seek to the
    committed offsets replaces the read offsets with ``update()``, which leaves ``delivered`` as
    it was; a revocation pops the partition, which forgets it."""

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.delivered: dict[Any, int] = {}
        self.sought: dict[Any, int] = {}  # Faust's seek to the committed offset, until a record
        self.skipped: dict[Any, tuple[int, int]] = {}  # never delivered after that seek

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        sought = self.sought.pop(tp, None)
        if sought is not None and offset is not None:
            gap = gap_to_record(sought, offset, self.delivered.get(tp))
            if gap is not None:
                self.skipped[tp] = gap
        super().__setitem__(tp, offset)
        if offset is not None and offset > self.delivered.get(tp, -1):
            self.delivered[tp] = offset

    def update(self, *args: Any, **kwargs: Any) -> None:
        offsets = dict(*args, **kwargs)  # Faust's seek to the committed offsets
        super().update(offsets)
        self.sought.update({tp: o for tp, o in offsets.items() if o is not None})

    def pop(self, tp: Any, *default: Any) -> Any:
        self.delivered.pop(tp, None)
        self.sought.pop(tp, None)
        self.skipped.pop(tp, None)
        return super().pop(tp, *default)


def gap_to_record(
    offset_from: int, offset_to: int, delivered: int | None
) -> tuple[int, int] | None:
    """The offsets Faust may treat as skipped when it sees a jump from ``offset_from - 1`` to
    ``offset_to`` (the record being delivered), inclusive, or None: only offsets above every
    offset already ``delivered``, and not ``offset_to`` itself."""
    start = offset_from if delivered is None else max(offset_from, delivered + 1)
    end = offset_to - 1
    return (start, end) if start <= end else None


#: How long a hole may last before its partition is fetched again from it. Records reach the
#: agent in offset order, so a hole is an anomaly within milliseconds; the margin covers a
#: record still on its way from the fetcher to an actor on a loaded machine.
HOLE_GRACE_S = 5.0


def first_hole(base: int, acked: Iterable[int], pending: Iterable[int]) -> int | None:
    """The first offset from ``base`` that is neither ``acked`` nor ``pending`` while a later
    one is acknowledged, or None. ``acked`` includes what Faust counts as gaps."""
    done = {a for a in acked if a >= base}
    if not done:
        return None
    hole = commit_end(base, [*done, *pending]) or base
    return hole if hole < max(done) else None


def _thread_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.AIOKafkaConsumerThread]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka reads this attribute when it builds its fetcher at start().
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    return ConsumerThread


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    thread_class = _thread_class(fetch_max_wait_ms)

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread_class(self, loop=self.loop, beacon=self.beacon)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._read_offset = ReadOffsets()
            self._first_offset: dict[Any, int] = {}  # before any commit: the partition's start
            self._holes: dict[Any, tuple[int, float]] = {}  # tp -> (hole, since)

        def _base(self, tp: Any) -> int | None:
            """Where the partition's next commit must start: the committed offset, or the
            partition's first offset when there is no commit or retention deleted past it."""
            known = [self._committed_offset.get(tp), self._first_offset.get(tp)]
            return max((o for o in known if o is not None), default=None)

        def _pending(self, tp: Any) -> list[int]:
            # Faust's Cython fast path acknowledges without calling Consumer.ack, so the
            # pending offsets come from its own weak set of tracked, unacknowledged messages.
            return [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]

        def _covered(self, tp: Any) -> list[int]:
            gaps = [o for iv in self._gap.get(tp) or () for o in range(iv.begin, iv.end)]
            skipped = getattr(self._read_offset, "skipped", {}).get(tp)
            if skipped is not None:  # offsets never delivered after the seek to the commit
                gaps.extend(range(skipped[0], skipped[1] + 1))
            return [*self._acked[tp], *gaps]

        def ack(self, message: Any) -> bool:
            # Faust's pure-Python stream iterator acknowledges the events it skips (see the
            # module docstring); it skips them before tracking them, as the compiled one does.
            skipped = not message.tracked and message not in self._unacked_messages
            if skipped and self.app.topics.acks_enabled_for(message.topic):
                return False
            return bool(super().ack(message))

        async def seek(self, partition: Any, offset: int) -> None:
            # A seek of our own (a hole refetch) is not the seek to the committed offset.
            sought = getattr(self._read_offset, "sought", {})
            sought.pop(partition, None)
            await super().seek(partition, offset)

        def _new_offset(self, tp: Any) -> int | None:
            # Replaces Faust's rule (see the module docstring). Pure but for forgetting what
            # lies below the base: Faust's own dropped the acks it counted whether or not the
            # commit was then sent, so a commit skipped at shutdown lost them (repeats).
            acked = self._acked[tp]
            if not acked:
                return None
            base = self._base(tp)
            if base is None:  # the partition's first offset is not known yet
                return None
            if min(acked) < base:  # committed already (or a repeat of a committed record)
                acked[:] = [o for o in acked if o >= base]
                index = self._acked_index[tp]
                index.difference_update([o for o in index if o < base])
            gaps = self._gap.get(tp)
            if gaps:
                gaps.chop(0, base)
            return commit_end(base, self._covered(tp))

        async def on_partitions_assigned(self, assigned: Any, *args: Any, **kwargs: Any) -> None:
            await super().on_partitions_assigned(assigned, *args, **kwargs)
            # Before its first commit a partition is read from its first offset (the reset
            # policy is "earliest"); the commit rule needs that offset from the first ack on.
            try:
                await self._learn_first_offsets(list(assigned))
            except Exception as exc:  # heal_offsets tries again
                log.warning("first offsets of assigned partitions unknown (%s)",
                            type(exc).__name__)  # fmt: skip

        async def _learn_first_offsets(self, tps: list[Any]) -> None:
            if tps:
                first = await self.earliest_offsets(*tps)
                self._first_offset.update({tp: int(o) for tp, o in first.items() if o >= 0})

        async def heal_offsets(self, now: float | None = None) -> None:
            """Learn the first offset of partitions without a commit, and fetch a partition
            again from a hole that outlasted :data:`HOLE_GRACE_S` (see the module docstring)."""
            now = time.monotonic() if now is None else now
            tps = [tp for tp, acked in list(self._acked.items()) if acked]
            await self._learn_first_offsets([tp for tp in tps if self._base(tp) is None])
            for tp in tps:
                base = self._base(tp)
                hole = (
                    None if base is None else first_hole(base, self._covered(tp), self._pending(tp))
                )
                if hole is None:
                    self._holes.pop(tp, None)
                    continue
                seen, since = self._holes.get(tp, (hole, now))
                if seen != hole:
                    since = now
                self._holes[tp] = (hole, since)
                if now - since >= HOLE_GRACE_S:
                    await self._learn_first_offsets([tp])  # retention may have deleted it
                    if hole < (self._base(tp) or 0):
                        self._holes.pop(tp, None)
                        continue
                    log.warning("offset %d of %s:%s was fetched but never reached the agent; "
                                "fetching the partition again from it", hole, tp.topic,
                                tp.partition)  # fmt: skip
                    metrics.OFFSET_REFETCHES.inc()
                    await self.seek(tp, hole)
                    self._holes[tp] = (hole, now)

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            offsets = self._read_offset
            delivered = offsets.delivered.get(tp) if isinstance(offsets, ReadOffsets) else None
            gap = gap_to_record(offset_from, offset_to, delivered)
            log.debug("offset jump %s:%s to %d after %s: gap %s", tp.topic, tp.partition,
                      offset_to, offset_from - 1, gap)  # fmt: skip
            if gap is not None:
                await super()._add_gap(tp, *gap)

    class Transport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    return Transport


class App(faust.App):
    """faust.App using :func:`transport_class` for its Kafka transport, with two hooks around
    its stop (the worker's shutdown, connector/worker/shutdown.py):

    * ``stop_hooks`` run first, while the consumer, tables and agents are still alive. Faust's
      own ``on_before_shutdown`` comes only after it stopped the consumer, which (with
      ``stream_wait_empty``, its default) waits without a limit for every message in flight: a
      command stuck on a slow exchange held SIGTERM past any drain limit (issue 20). So once
      the hooks have drained (with their own limit), ``stream_wait_empty`` is turned off for
      the rest of the stop. It stays on until then: at a rebalance, Faust's wait for the
      commands in flight before it gives up a partition is what keeps a worker from writing an
      account's state after its successor took the partition over.
    * ``shutdown_hooks`` run last, once the agents and the consumer have stopped: what they use
      (exchange clients) can be closed without failing a command still running.
    """

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self._transport_class = transport_class(fetch_max_wait_ms)
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        super().__init__(*args, **kwargs)
        self.timer(interval=1.0, name="offset-holes")(self._heal_offsets)

    async def on_stop(self) -> None:
        for hook in self.stop_hooks:
            await hook()
        with warnings.catch_warnings():  # "reconfiguring late": meant, for the stop only
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            self.conf.stream_wait_empty = False
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for hook in self.shutdown_hooks:
            await hook()

    async def _heal_offsets(self, *args: Any) -> None:
        consumer: Any = self.consumer
        if self.rebalancing or self.should_stop or not hasattr(consumer, "heal_offsets"):
            return
        recovery: Any = getattr(self.tables, "recovery", None)
        if recovery is not None and not recovery.completed.is_set():
            return  # partitions are paused and seeked by the recovery itself
        try:
            await consumer.heal_offsets()
        except Exception as exc:  # diagnostics and repair only: never stop the worker
            log.warning("offset hole check failed (%s)", type(exc).__name__)

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)


# --- public functions over the private names (see the module docstring) -----------------------


def live_actor_count(agent: Any) -> int | None:
    """How many of ``agent``'s actors are running; None before the agent started."""
    if not agent.started:
        return None
    return len([a for a in list(agent._actors) if a.actor_task and not a.actor_task.done()])


def recovery_started_at(app: Any) -> float | None:
    """When (``time.monotonic()``) the table recovery in progress started; None when no
    recovery is in progress."""
    recovery: Any = getattr(app.tables, "recovery", None)
    started = getattr(recovery, "_recovery_started_at", None)
    if getattr(recovery, "in_recovery", False) and started is not None:
        return float(started)
    return None


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer under Faust's, created if it is not yet (for record batches)."""
    return app.producer._ensure_producer()


def started_aiokafka_producer(app: Any) -> Any | None:
    """The aiokafka producer under Faust's once Faust's producer has started, else None."""
    producer = getattr(app.producer, "_producer", None)
    if producer is None or not app.producer.started:
        return None
    return producer


async def wait_on_metadata(aio: Any, topic: str) -> None:
    """Until the aiokafka producer ``aio`` has metadata for ``topic`` (its partitions)."""
    await aio.client._wait_on_metadata(topic)


def uncommitted_acks(consumer: Any) -> dict[str, int]:
    """Per ``topic:partition``, how many acknowledged offsets Faust has not committed yet."""
    return {f"{tp.topic}:{tp.partition}": len(v) for tp, v in consumer._acked.items() if v}


def committed_offsets(consumer: Any) -> dict[str, int]:
    """Per ``topic:partition``, the offset Faust last committed (the next one to read)."""
    return {f"{tp.topic}:{tp.partition}": o for tp, o in consumer._committed_offset.items()}
