"""The connector's commit rule (connector/worker/faust_internals.py) through Faust's real consumer and
stream iterator, against the embedded broker.

Each test starts an in-process :class:`connector.worker.faust_internals.App` on a topic and consumer
group of its own, with one agent that hands every event to the test without acknowledging it
(``stream.noack()``), so the test decides which offsets are answered and when. Faust fetches,
delivers through its conductor, iterates its stream, tracks and acknowledges as in production;
the committed offset is read from the broker by an independent client. Nothing of the consumer
is built or set by hand.

Faust has two stream iterators: a compiled one (``faust._cython.streams``, used when the
extension imports) and a pure-Python one (``Stream._py_aiter``, used when ``NO_CYTHON`` is set
or the extension is missing). Every test runs with both: ``faust.streams`` picks the iterator
per ``async for`` from its module-level ``_CStreamIterator``, which the ``iterator`` fixture
clears for the pure-Python variant.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import faust.streams
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from connector.devstack import wait_until
from connector.worker.faust_internals import HOLE_GRACE_S, App

pytestmark = pytest.mark.integration

REFETCHES = "connector_offset_refetches_total"


@pytest.fixture(params=["compiled", "pure-python"])
def iterator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure-python":
        monkeypatch.setattr(faust.streams, "_CStreamIterator", None)
    else:
        assert faust.streams._CStreamIterator is not None, "faust's extension did not import"
    return str(request.param)


class Run:
    """One topic (one partition), one consumer group, one started App and its agent's events."""

    def __init__(self, bootstrap: str, datadir: Path) -> None:
        name = uuid.uuid4().hex[:10]
        self.bootstrap = bootstrap
        self.topic = f"it-commit-{name}"
        self.group = f"it-commit-{name}"
        self.tp = TopicPartition(self.topic, 0)
        self.datadir = datadir
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.received: list[int] = []
        self.turns: asyncio.Queue[None] = asyncio.Queue()
        self.asked = False
        self.app: Any = None

    async def create(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, 1, 1)])
        finally:
            await admin.close()

    async def produce(self, *values: bytes) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(self.topic, value, partition=0)
        finally:
            await producer.stop()

    async def produce_commit_marker(self) -> None:
        """A transaction's commit marker: a control batch, which occupies an offset and which
        no consumer ever delivers (aiokafka skips control batches at every isolation level)."""

        class ControlBatch(_DefaultRecordBatchBuilderPy):
            def _get_attributes(self, include_compression_type: bool = True) -> int:
                return super()._get_attributes(include_compression_type) | self.CONTROL_MASK

        batch = ControlBatch(
            magic=2, compression_type=0, is_transactional=1, producer_id=7, producer_epoch=0,
            base_sequence=-1, batch_size=1 << 20,
        )  # fmt: skip
        # Control record: key (version 0, type 1 = commit), value (version 0, epoch 0).
        batch.append(
            0, timestamp=None, key=struct.pack(">hh", 0, 1), value=struct.pack(">hi", 0, 0),
            headers=[],
        )  # fmt: skip
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap)
        await client.bootstrap()
        try:
            metadata = await client.fetch_all_metadata()
            leader = metadata.leader_for_partition(self.tp)
            request = ProduceRequest(None, -1, 10_000, [(self.topic, [(0, bytes(batch.build()))])])
            response: Any = await client.send(leader, request)
            assert response.topics[0][1][0][1] == 0, response  # error code
        finally:
            await client.close()

    async def commit_beforehand(self, offset: int) -> None:
        """The group's committed offset, as an earlier owner of the partition left it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([self.tp])
            await consumer.commit({self.tp: offset})
        finally:
            await consumer.stop()

    async def committed(self) -> int | None:
        """The group's committed offset on the broker, read by a client outside the group."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            offset: int | None = await consumer.committed(self.tp)
            return offset
        finally:
            await consumer.stop()

    async def commit(self) -> bool:
        """Faust's own commit, now rather than at its next interval."""
        return bool(await self.app.consumer.commit())

    async def start(self) -> None:
        app = App(
            self.group,
            fetch_max_wait_ms=50,
            broker=f"kafka://{self.bootstrap}",
            broker_session_timeout=6,
            broker_heartbeat_interval=1,
            broker_commit_interval=3600,  # the tests commit when they mean to
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            key_serializer="raw",
            value_serializer="raw",
            datadir=str(self.datadir),
            web_enabled=False,
        )
        topic = app.topic(self.topic, internal=False)
        self.channel: Any = None

        async def agent(stream: Any) -> None:
            self.channel = stream.channel
            async for event in stream.noack().events():
                self.received.append(event.message.offset)
                await self.inbox.put(event)
                await self.turns.get()  # the iterator takes the next event when the test asks

        app.agent(topic, name="commit-rule")(agent)
        self.app = app
        await app.start()

    async def next_event(self, timeout: float = 30) -> Any:
        """The agent's next event: the first one, or the one its stream iterator takes now."""
        if self.asked:
            self.turns.put_nowait(None)
        self.asked = True
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()


@pytest.fixture
def run_factory(bootstrap: str, topics: list[str], tmp_path: Path) -> Callable[[], Any]:
    """Runs on the session's broker (``topics``: once it answers)."""

    @asynccontextmanager
    async def make() -> AsyncIterator[Run]:
        run = Run(bootstrap, tmp_path)
        await run.create()
        try:
            yield run
        finally:
            await run.stop()

    return make


async def test_an_acked_event_is_committed_and_a_slow_earlier_one_holds_the_commit(
    iterator: str, run_factory: Callable[[], Any]
) -> None:
    async with run_factory() as run:
        await run.produce(b"c0", b"c1", b"c2")
        await run.start()
        events = [await run.next_event() for _ in range(3)]
        assert [e.message.offset for e in events] == [0, 1, 2]
        events[1].ack()
        events[2].ack()  # 1 and 2 answered, 0 still with a slow exchange
        assert not await run.commit()
        assert await run.committed() is None
        events[0].ack()
        assert await run.commit()
        assert await run.committed() == 3


async def test_a_record_the_iterator_skips_is_not_acknowledged(
    iterator: str, run_factory: Callable[[], Any]
) -> None:
    # Faust's stream iterators skip an event while flow control is suspended (a rebalance) or
    # when it was fetched in an older generation, counting on a later fetch to deliver it again.
    # A skipped record counted as acknowledged would let the commit pass a command nobody
    # answered: the compiled iterator does not ack it; issue 20 says the pure-Python one does.
    refetches = REGISTRY.get_sample_value(REFETCHES) or 0.0
    async with run_factory() as run:
        await run.produce(b"c0", b"c1", b"c2", b"c3")
        await run.start()
        first = await run.next_event()

        async def queued(n: int) -> bool:
            return bool(run.channel.queue.qsize() == n)

        await wait_until(
            lambda: queued(3), timeout=30, what="3 records buffered"
        )  # delivered to the stream's buffer, not to the agent
        run.app.flow_control.suspend()  # as a rebalance does
        reader = asyncio.create_task(run.next_event())
        await wait_until(
            lambda: queued(0), timeout=30, what="buffer drained"
        )  # the iterator took them, and skipped them
        assert not reader.done() and run.received == [0]
        first.ack()
        assert await run.commit()
        assert await run.committed() == 1  # not past 1, 2, 3: nobody answered them
        run.app.flow_control.resume()
        # Liveness: once a later command is answered, the hole at 1 outlasts its grace and the
        # partition is fetched again from it: 1-3 are answered this time, and 4 comes again
        # (the worker recognizes that repeat and does not answer it twice).
        await run.produce(b"c4")
        for offset in (4, 1, 2, 3, 4):
            event = await asyncio.wait_for(reader, HOLE_GRACE_S + 30)
            assert event.message.offset == offset
            event.ack()
            reader = asyncio.create_task(run.next_event())
        reader.cancel()
        assert await run.commit()
        assert await run.committed() == 5
        assert run.received == [0, 4, 1, 2, 3, 4]  # 0 was never delivered again
        assert (REGISTRY.get_sample_value(REFETCHES) or 0.0) == refetches + 1


async def test_the_commit_passes_a_transaction_marker_at_the_committed_offset(
    iterator: str, run_factory: Callable[[], Any]
) -> None:
    # The committed offset points at a transaction marker: record 1 is never delivered, the
    # first record the consumer gets is 2. The commit must still advance, and no hole refetch
    # may deliver (and so answer) a command again.
    refetches = REGISTRY.get_sample_value(REFETCHES) or 0.0
    async with run_factory() as run:
        await run.produce(b"c0")
        await run.produce_commit_marker()  # offset 1
        await run.produce(b"c2", b"c3")
        await run.commit_beforehand(1)
        await run.start()
        events = [await run.next_event() for _ in range(2)]
        assert [e.message.offset for e in events] == [2, 3]
        for event in events:
            event.ack()
        assert await run.commit()
        assert await run.committed() == 4
        # Whatever the hole check would do once its grace has passed, it has nothing to fetch.
        now = time.monotonic()
        await run.app.consumer.heal_offsets(now=now)
        await run.app.consumer.heal_offsets(now=now + 2 * HOLE_GRACE_S)
        assert (REGISTRY.get_sample_value(REFETCHES) or 0.0) == refetches
        assert run.received == [2, 3]
