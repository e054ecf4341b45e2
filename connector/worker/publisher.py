"""Sending records to Kafka and waiting for their acknowledgements: the :class:`Publisher` seam.

Everything the worker writes (order events, ErrorEvents and QueryResults, state-topic records,
forwarded commands, standing queries) goes through one :class:`Publisher`: ``send`` returns
only once the broker acknowledged every record (acks=all), or raises. Retrying outages is not
its business: :meth:`connector.worker.outages.Outages.until_acked` wraps each call.

* :class:`KafkaPublisher` sends through the Faust app's producer and holds all of the aiokafka
  record-batch tuning (why: see :meth:`KafkaPublisher.send`).
* :class:`InMemoryPublisher` is the test double, in the spirit of httpx's ``MockTransport``: it
  records what was sent and can be told to fail (an outage, a refusal), to refuse values over a
  size, or to hold sends until released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from ..kafka import kafka_partitioner
from .faust_internals import aiokafka_producer, wait_on_metadata

Headers = list[tuple[str, bytes]]

# Records for one partition sent as a record batch from this many on; values above
# MAX_BATCHED_VALUE keep the producer's per-record path (and its max_request_size check).
BATCH_MIN_RECORDS = 16
MAX_BATCHED_VALUE = 128 * 1024


class Record(NamedTuple):
    """One record to send: topic, key, value (None: a tombstone) and headers; ``partition``
    None lets the producer's partitioner choose, ``timestamp`` (seconds) None means now."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None
    timestamp: float | None = None


Batched = tuple[bytes | None, bytes | None, Headers]
"""One record of a (topic, partition) group: key, value and headers."""


class Publisher(Protocol):
    """Sends records and waits for their acknowledgements."""

    async def send(self, records: Sequence[Record]) -> None:
        """Send ``records`` (in order within a partition) and return once the broker
        acknowledged every one of them; raise the first failure otherwise (an outage or a
        refusal: :func:`connector.worker.outages.is_outage` tells them apart)."""
        ...


class KafkaPublisher:
    """:class:`Publisher` over the Faust app's producer (acks=all)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def send(self, records: Sequence[Record]) -> None:
        """Send records and wait for every acknowledgement. Called by every writer of the worker
        (outcomes, state writer, routing, standing queries), through ``Outages.until_acked``;
        affects the records' topics. Every future is awaited, even after a failure, so no
        exception is left unretrieved.

        Records are partitioned here, by the producer's own rule (:func:`kafka_partitioner`
        over the producer's metadata), so the same keys land on the same partitions. Where one
        partition gets at least ``BATCH_MIN_RECORDS`` of them (a large snapshot), they go as
        aiokafka record batches (``create_batch``/``send_batch``): one future per batch
        instead of one per record, which was the costliest part of publishing after encoding.
        Fewer records per partition (a small snapshot, a QueryResult) go one by one through
        ``producer.send`` and join the batch the producer is already filling, as before. Either
        way a partition's records are appended in order and this returns only once every one
        of them is acknowledged (acks=all).
        """
        producer = self.app.producer
        futures: list[Any] = []
        failure: BaseException | None = None
        try:
            if await self._batchable(records):
                for (topic, partition), items in (await self._by_partition(records)).items():
                    if len(items) < BATCH_MIN_RECORDS:
                        for key, value, headers in items:
                            futures.append(
                                await producer.send(topic, key, value, None, None, headers)
                            )
                    else:
                        futures += await self._send_record_batches(topic, partition, items)
            else:
                for r in records:
                    futures.append(
                        await producer.send(
                            r.topic, r.key, r.value, r.partition, r.timestamp, r.headers
                        )
                    )
        except Exception as exc:
            failure = exc
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            failure = failure or next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    async def _batchable(self, records: Sequence[Record]) -> bool:
        """Whether ``records`` may be grouped into record batches: enough of them, each with a
        key, no chosen partition or timestamp and a value small enough for a batch (any other
        keeps exactly the producer's own path, size checks included), and metadata for every
        topic."""
        if len(records) < BATCH_MIN_RECORDS or any(
            r.key is None
            or r.partition is not None
            or r.timestamp is not None
            or len(r.value or b"") > MAX_BATCHED_VALUE
            for r in records
        ):
            return False
        aio = aiokafka_producer(self.app)
        for topic in {r.topic for r in records}:
            await wait_on_metadata(aio, topic)
            if not aio.client.cluster.partitions_for_topic(topic):
                return False  # no metadata after all: the producer's path reports it
        return True

    async def _by_partition(
        self, records: Sequence[Record]
    ) -> dict[tuple[str, int], list[Batched]]:
        """Records grouped by (topic, partition), in order, by the producer's partitioning rule
        over its metadata (:meth:`_batchable` made sure it has it)."""
        cluster = aiokafka_producer(self.app).client.cluster
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        groups: dict[tuple[str, int], list[Batched]] = {}
        for topic, key, value, headers, _, _ in records:
            if topic not in partitions:
                partitions[topic] = (
                    list(cluster.partitions_for_topic(topic) or ()),
                    list(cluster.available_partitions_for_topic(topic) or ()),
                )
            partition = kafka_partitioner(key, *partitions[topic])
            groups.setdefault((topic, partition), []).append((key, value, headers))
        return groups

    async def _send_record_batches(
        self, topic: str, partition: int, items: list[Batched]
    ) -> list[Any]:
        """``items`` as aiokafka record batches of at most the producer's batch size; one
        future per batch. The batches are left open, so other commands' records sent meanwhile
        may join them, as they would join any batch of the producer."""
        aio = aiokafka_producer(self.app)
        futures = []
        builder = aio.create_batch()
        for key, value, headers in items:
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                futures.append(await aio.send_batch(builder, topic, partition=partition))
                builder = aio.create_batch()
                # An empty batch always takes one record (aiokafka's DefaultRecordBatchBuilder).
                builder.append(timestamp=None, key=key, value=value, headers=headers)
        futures.append(await aio.send_batch(builder, topic, partition=partition))
        return futures


class InMemoryPublisher:
    """:class:`Publisher` for tests: acknowledges in memory.

    * ``sent``: every acknowledged record, in order; ``attempts``: every non-empty ``send``
      call's records, acknowledged or not.
    * :meth:`fail`: the next ``times`` sends raise ``exc`` (``times=None``: every send until
      :meth:`heal`), e.g. ``KafkaConnectionError()`` for an outage, ``RecordTooLargeError()``
      for a refusal.
    * ``max_value_bytes``: a send with a larger value is refused as the broker does
      (``ProducerSendError`` caused by ``MessageSizeTooLargeError``).
    * ``gate``: when set to an event, a send waits for it before answering; ``sending`` is set
      whenever a send starts.
    """

    def __init__(self, max_value_bytes: int | None = None) -> None:
        self.sent: list[Record] = []
        self.attempts: list[list[Record]] = []
        self.max_value_bytes = max_value_bytes
        self.gate: asyncio.Event | None = None
        self.sending = asyncio.Event()
        self._failure: BaseException | None = None
        self._failures_left: int | None = 0

    def fail(self, exc: BaseException, times: int | None = 1) -> None:
        """Called by a test: the next ``times`` sends (None: all until :meth:`heal`) raise
        ``exc`` instead of acknowledging."""
        self._failure, self._failures_left = exc, times

    def heal(self) -> None:
        """Called by a test: sends acknowledge again."""
        self._failure, self._failures_left = None, 0

    def topics(self) -> list[str]:
        """The topic of each acknowledged record, in order."""
        return [r.topic for r in self.sent]

    async def send(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self.attempts.append(list(records))
        self.sending.set()
        if self.gate is not None:
            await self.gate.wait()
        if self._failure is not None and self._failures_left != 0:
            if self._failures_left is not None:
                self._failures_left -= 1
            raise self._failure
        limit = self.max_value_bytes
        if limit is not None and any(len(r.value or b"") > limit for r in records):
            raise ProducerSendError("too large") from MessageSizeTooLargeError()
        self.sent.extend(records)
