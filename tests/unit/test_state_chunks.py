"""An account's state stored as a header and chunks (connector/state_layout.py), through the
StateWriter with InMemoryStateStore and InMemoryPublisher: every record under the limit, only
changed chunks written, every chunk on the account's changelog partition, a write cut off after
any of its records (a crash, a refusal) never leaving the topic wrong once the next worker
continues, the old single-record format loaded and migrated, a refused write leaving the table
as it was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from connector.codec import Serializer
from connector.model import OrderQuery
from connector.pipeline import Outcome, OutputRecord
from connector.state import Snapshot, apply_snapshot, scope_of_query, table_key
from connector.state_layout import HEADER_FORMAT, TableRecord, bucket, chunk_key
from connector.worker.outages import Outages
from connector.worker.publisher import InMemoryPublisher
from connector.worker.state_store import (
    ChunkedStateStore,
    FaustTable,
    InMemoryStateStore,
    MemoryTable,
)
from connector.worker.state_writer import StateWriter

ACC = "big"
KEY = table_key("bitget", ACC)
LIMIT = 8 * 1024  # small chunks, so a few hundred orders need several


def ids(n: int, start: int = 0) -> list[str]:
    return [f"o{i:06d}" for i in range(start, start + n)]


def outcome(n: int, order_ids: Sequence[str]) -> tuple[Outcome, tuple[int, int], dict[int, bytes]]:
    """Command ``n``'s OK snapshot listing ``order_ids``."""
    rid = f"r{n}"
    orders = [
        OutputRecord("orders", f"bitget:{ACC}:{oid}", "OrderEvent",
                     {"order_id": oid, "symbol": "BTCUSDT", "request_id": rid}, {})
        for oid in order_ids
    ]  # fmt: skip
    query = OrderQuery(request_id=rid, exchange="bitget", account=ACC)
    out = Outcome(rid, "bitget", ACC, True, orders, query=query, started_at=1_000 + n)
    encoded = {id(r.value): oid.encode() for r, oid in zip(orders, order_ids, strict=True)}
    return out, (0, n), encoded


class Worker:
    """A StateWriter over an InMemoryStateStore (its table: ``table``) and a publisher shared
    by every worker of a test (the state topic)."""

    def __init__(self, table: MemoryTable, topic: InMemoryPublisher) -> None:
        self.table = table
        self.store = InMemoryStateStore(table=table, limit=LIMIT)
        self.writer = StateWriter(
            self.store, topic, Outages(0.01), Serializer(), "open-orders", frozenset()
        )

    async def snapshot(self, n: int, order_ids: Sequence[str]) -> None:
        await self.writer.publish_state(*outcome(n, order_ids))


def topic_view(topic: InMemoryPublisher) -> set[str]:
    """The state topic read as a table: the order ids open on it."""
    view: dict[str, bytes] = {}
    for r in topic.sent:
        assert r.key is not None
        oid = r.key.decode().rsplit(":", 1)[1]
        if r.value is None:
            view.pop(oid, None)
        else:
            view[oid] = r.value
    return set(view)


def last_write(table: MemoryTable) -> list[TableRecord]:
    return table.writes[-1]


async def test_a_large_account_is_stored_in_chunks_under_the_limit_and_loads_back() -> None:
    table, topic = MemoryTable(), InMemoryPublisher()
    w = Worker(table, topic)
    await w.snapshot(1, ids(600))
    header = table.changelog[KEY]
    count = header["chunks"]
    assert header["format"] == HEADER_FORMAT and count > 1 and count & (count - 1) == 0
    assert all(len(r.data or b"") <= LIMIT for r in last_write(table))
    assert set(table.changelog) == {KEY} | {chunk_key(KEY, n, count) for n in range(count)}
    # The new chunks before the header that points at them.
    assert [r.key for r in last_write(table)][-1] == KEY
    restored = InMemoryStateStore(table=table.restarted(), limit=LIMIT).load(KEY)
    assert restored is not None
    assert set(restored["orders"]) == set(ids(600))
    assert restored == json.loads(json.dumps(w.store.load(KEY)))


async def test_only_changed_chunks_are_written_header_first() -> None:
    table, topic = MemoryTable(), InMemoryPublisher()
    w = Worker(table, topic)
    await w.snapshot(1, ids(600))
    count = table.changelog[KEY]["chunks"]
    gone = "o000007"
    listed = [o for o in ids(600) if o != gone]
    # An unfiltered snapshot changes every listed order's version: every chunk is rewritten.
    await w.snapshot(2, listed)
    assert len(last_write(table)) == 1 + count
    assert last_write(table)[0].key == KEY
    # A symbol-filtered snapshot of another symbol touches nothing but the header.
    query = OrderQuery(request_id="r3", exchange="bitget", account=ACC, symbol="ETHUSDT")
    out = Outcome("r3", "bitget", ACC, True, [], query=query, started_at=1_003)
    await w.writer.publish_state(out, (0, 3), {})
    assert [r.key for r in last_write(table)] == [KEY]
    assert topic_view(topic) == set(listed)


async def test_a_small_change_writes_the_header_and_one_chunk() -> None:
    """Applying outside the writer: a state that differs in one order rewrites one chunk."""
    store = InMemoryStateStore(limit=LIMIT)
    first = apply_snapshot(None, snap(1, ids(600))).state
    assert await store.store(KEY, first)
    second = {**first, "orders": {**first["orders"], "o000007": {"open": False,
              "v": [1002, 0, 2], "a": {"symbol": "BTCUSDT"}}}}  # fmt: skip
    assert await store.store(KEY, second)
    count = store.memory.data[KEY]["chunks"]
    assert [r.key for r in store.memory.writes[-1]] == [
        KEY,
        chunk_key(KEY, bucket("o000007", count), count),
    ]


def snap(n: int, order_ids: Sequence[str]) -> Snapshot:
    out = outcome(n, order_ids)[0]
    assert out.query is not None
    return Snapshot("bitget", ACC, scope_of_query(out.query), (1_000 + n, 0, n),
                    [r.value for r in out.orders])  # fmt: skip


@pytest.mark.parametrize("resize", [False, True], ids=["same-layout", "new-layout"])
async def test_a_write_cut_off_after_any_record_leaves_the_topic_right_for_the_next_worker(
    resize: bool,
) -> None:
    """The write of snapshot 2 is acknowledged only up to its k-th record (a worker killed
    there, or the broker refusing the rest), so its records are never published; a new worker
    continues from the changelog. Whatever k, once it has applied one more snapshot the topic
    read as a table is exactly that snapshot's orders."""
    second = ids(1300) if resize else [o for o in ids(600) if int(o[1:]) % 5]
    probe_table, probe_topic = MemoryTable(), InMemoryPublisher()
    probe = Worker(probe_table, probe_topic)
    await probe.snapshot(1, ids(600))
    await probe.snapshot(2, second)
    n_records = len(last_write(probe_table))
    first_layout = probe_table.writes[0][-1].value["chunks"]
    assert (last_write(probe_table)[0].key != KEY) == resize  # new chunks first, else header
    assert (probe_table.changelog[KEY]["chunks"] != first_layout) == resize
    third = [o for o in second if int(o[1:]) % 7]
    for k in range(n_records + 1):
        table, topic = MemoryTable(), InMemoryPublisher()
        old = Worker(table, topic)
        await old.snapshot(1, ids(600))
        before = old.store.load(KEY)
        table.ack_only = k
        await old.snapshot(2, second)
        if k < n_records:  # cut off: the table in memory is as it was, nothing published
            assert old.store.load(KEY) is before
            assert topic_view(topic) == set(ids(600))
        new = Worker(table.restarted(), topic)
        await new.snapshot(3, third)
        assert topic_view(topic) == set(third), k
        await new.snapshot(4, third[:10])
        assert topic_view(topic) == set(third[:10]), k


async def test_the_same_worker_continues_after_a_write_cut_off() -> None:
    """The worker whose write was cut off keeps serving the account: its next write covers
    what the cut-off one may have left on the changelog, so even a restart after it is right."""
    for k in range(1, 4):
        table, topic = MemoryTable(), InMemoryPublisher()
        w = Worker(table, topic)
        await w.snapshot(1, ids(600))
        table.ack_only = k
        await w.snapshot(2, ids(300))
        await w.snapshot(3, ids(400))
        assert topic_view(topic) == set(ids(400))
        restarted = Worker(table.restarted(), topic)
        await restarted.snapshot(4, ids(100))
        assert topic_view(topic) == set(ids(100))
        assert restarted.store.load(KEY) == json.loads(json.dumps(restarted.store.load(KEY)))


async def test_the_old_single_record_format_loads_and_is_migrated_on_the_next_write() -> None:
    old_state = apply_snapshot(None, snap(1, ids(600))).state
    legacy = {KEY: json.loads(json.dumps(old_state))}
    topic = InMemoryPublisher()
    w = Worker(MemoryTable(legacy), topic)
    assert w.store.load(KEY) == legacy[KEY]
    # Migration cut off before the header: the old record is intact for the next worker.
    w.table.ack_only = 2
    await w.snapshot(2, ids(500))
    assert w.table.changelog[KEY] == legacy[KEY]
    await w.snapshot(3, ids(500))
    assert w.table.changelog[KEY]["format"] == HEADER_FORMAT
    assert topic_view(topic) == set(ids(500))  # the 100 orders of the old state retired
    restored = Worker(w.table.restarted(), topic)
    await restored.snapshot(4, ids(450))
    assert topic_view(topic) == set(ids(450))


async def test_a_refused_write_leaves_the_table_as_it_was_and_publishes_nothing() -> None:
    table, topic = MemoryTable(), InMemoryPublisher()
    w = Worker(table, topic)
    await w.snapshot(1, ids(50))
    data, changelog, sent = dict(table.data), dict(table.changelog), len(topic.sent)
    table.refuse = True
    await w.snapshot(2, ids(10))
    assert table.data == data and table.changelog == changelog and len(topic.sent) == sent
    table.refuse = False
    await w.snapshot(3, ids(20))
    assert topic_view(topic) == set(ids(20))


def too_large() -> ProducerSendError:
    """What Faust's producer raises for a record over the maximum request size."""
    try:
        raise ProducerSendError("too large") from MessageSizeTooLargeError()
    except ProducerSendError as exc:
        return exc


class FakeFaustTable:
    """What FaustTable uses of a Faust table: its in-memory data, the changelog topic's name,
    and the partition of the event being processed."""

    class Topic:
        def get_topic_name(self) -> str:
            return "app-open-orders-state-changelog"

    def __init__(self, partition: int) -> None:
        self.data: dict[str, Any] = {}
        self.changelog_topic = self.Topic()
        self.partition = partition

    def partition_for_key(self, key: str) -> int:
        return self.partition


async def test_every_record_of_an_account_goes_to_its_changelog_partition() -> None:
    publisher = InMemoryPublisher()
    faust_table = FakeFaustTable(partition=3)
    store = ChunkedStateStore(FaustTable(faust_table, publisher), Outages(0.01), LIMIT)
    assert await store.store(KEY, apply_snapshot(None, snap(1, ids(600))).state)
    assert len(publisher.sent) > 2
    assert {r.partition for r in publisher.sent} == {3}
    assert {r.topic for r in publisher.sent} == {"app-open-orders-state-changelog"}
    assert json.loads(publisher.sent[-1].key or b"") == KEY
    assert faust_table.data[KEY]["chunks"] == len(publisher.sent) - 1


@pytest.mark.parametrize(
    "failure",
    [too_large(), RuntimeError("a bug in the producer")],
    ids=["refused", "any-error"],
)
async def test_an_error_of_the_producer_is_a_failed_write_not_an_exit(
    failure: BaseException,
) -> None:
    """Whatever the producer raises while the state is stored: the write fails (the writer
    logs it), nothing escapes, and the in-memory table is as it was."""
    publisher = InMemoryPublisher()
    faust_table = FakeFaustTable(partition=0)
    store = ChunkedStateStore(FaustTable(faust_table, publisher), Outages(0.01), LIMIT)
    first = apply_snapshot(None, snap(1, ids(100))).state
    assert await store.store(KEY, first)
    data = dict(faust_table.data)
    publisher.fail(failure, times=None)
    assert not await store.store(KEY, apply_snapshot(first, snap(2, ids(50))).state)
    assert faust_table.data == data
    assert store.load(KEY) is first
