"""How the worker writes an account's state (StateWriter.publish_state), without a broker: the
stored state before the records, snapshots that queue for an account written together in
order, and the tombstones a state nobody saw published may lack sent again first
(connector/state.py "Publishing"). The writer runs against InMemoryStateStore and
InMemoryPublisher, which note what happened in one shared journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from aiokafka.errors import RecordTooLargeError
from prometheus_client import REGISTRY

from connector.codec import Serializer
from connector.devstack import wait_until
from connector.model import OrderQuery
from connector.pipeline import Outcome, OutputRecord
from connector.state import AccountState, table_key
from connector.worker.outages import Outages
from connector.worker.publisher import InMemoryPublisher, Record
from connector.worker.state_store import InMemoryStateStore
from connector.worker.state_writer import StateWriter

ACC = "follower-1"
KEY = table_key("bitget", ACC)
Journal = list[tuple[str, Any]]


class JournalStore(InMemoryStateStore):
    """Notes ("store", pending versions) for every store, refused or not."""

    def __init__(self, journal: Journal, states: dict[str, AccountState] | None = None) -> None:
        super().__init__(states)
        self.journal = journal

    async def store(self, key: str, state: AccountState) -> bool:
        self.journal.append(("store", [tuple(v) for v in state.get("pending", [])]))
        return await super().store(key, state)


class JournalPublisher(InMemoryPublisher):
    """Notes ("send", [(key, upsert or tombstone)]) for every send attempt."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    async def send(self, records: Sequence[Record]) -> None:
        keys = [(r.key.decode() if r.key else r.key, r.value is not None) for r in records]
        self.journal.append(("send", keys))
        await super().send(records)


class Writer:
    """A StateWriter with its doubles; ``log`` is what happened, in order."""

    def __init__(self, states: dict[str, AccountState] | None = None) -> None:
        self.log: Journal = []
        self.store = JournalStore(self.log, states)
        self.publisher = JournalPublisher(self.log)
        self.writer = StateWriter(
            self.store, self.publisher, Outages(0.01), Serializer(), "open-orders", frozenset()
        )

    async def publish_state(self, *args: Any) -> None:
        await self.writer.publish_state(*args)

    def sends(self) -> list[list[tuple[str, bool]]]:
        return [entry for kind, entry in self.log if kind == "send"]


def outcome(n: int, *order_ids: str) -> tuple[Outcome, tuple[int, int], dict[int, bytes]]:
    """Command ``n``'s OK snapshot listing ``order_ids``, its position, its encoded events."""
    rid = f"r{n}"
    orders = [
        OutputRecord("orders", f"bitget:{ACC}:{oid}", "OrderEvent",
                     {"order_id": oid, "symbol": "BTCUSDT", "request_id": rid}, {})
        for oid in order_ids
    ]  # fmt: skip
    query = OrderQuery(request_id=rid, exchange="bitget", account=ACC)
    out = Outcome(rid, "bitget", ACC, True, orders, query=query, started_at=1_000 + n)
    return (
        out,
        (0, n),
        {id(r.value): oid.encode() for r, oid in zip(orders, order_ids, strict=True)},
    )


def state_records() -> tuple[float, float]:
    """connector_state_records_total (upserts, tombstones) for a venue the worker does not know."""

    def value(kind: str) -> float:
        labels = {"exchange": "unknown", "kind": kind}
        return REGISTRY.get_sample_value("connector_state_records_total", labels) or 0.0

    return value("upsert"), value("tombstone")


def upserts(*order_ids: str) -> list[tuple[str, bool]]:
    return [(f"bitget:{ACC}:{oid}", True) for oid in order_ids]


def tombstones(*order_ids: str) -> list[tuple[str, bool]]:
    return [(f"bitget:{ACC}:{oid}", False) for oid in order_ids]


async def test_state_is_stored_before_its_records_are_sent() -> None:
    w = Writer()
    await w.publish_state(*outcome(1, "a", "b"))
    await w.publish_state(*outcome(2, "b"))
    assert w.log == [
        ("store", [(1001, 0, 1)]),
        ("send", upserts("a", "b")),
        ("store", [(1002, 0, 2)]),
        ("send", upserts("b") + tombstones("a")),
    ]


async def test_snapshots_waiting_for_the_account_are_written_together_in_order() -> None:
    w = Writer()
    w.publisher.gate = asyncio.Event()
    first = asyncio.create_task(w.publish_state(*outcome(1, "a", "b")))
    await w.publisher.sending.wait()  # the first write holds the account's lock, unanswered
    queued = [asyncio.create_task(w.publish_state(*outcome(n, *ids)))
              for n, ids in ((2, ("b", "c")), (3, ("c",)), (4, ("c", "d")))]  # fmt: skip
    await wait_until(lambda: w.writer.queued(KEY) >= 3, timeout=5,
                     what="all three queued behind the lock", interval=0)  # fmt: skip
    assert not any(t.done() for t in queued)
    w.publisher.gate.set()
    await asyncio.gather(first, *queued)
    # One table change and one send for the three that waited, their records in command order.
    assert w.log == [
        ("store", [(1001, 0, 1)]),
        ("send", upserts("a", "b")),
        ("store", [(1002, 0, 2), (1003, 0, 3), (1004, 0, 4)]),
        ("send", upserts("b", "c") + tombstones("a") + upserts("c") + tombstones("b")
         + upserts("c", "d")),
    ]  # fmt: skip
    assert w.writer.queued(KEY) == 0


async def test_writes_queued_behind_a_cancelled_holder_are_written_by_the_next() -> None:
    w = Writer()
    await w.publish_state(*outcome(1, "a"))
    # Hold the account's lock so that the next two writes queue behind it.
    lock = w.writer.lock(KEY)
    await lock.acquire()
    w.publisher.sending.clear()
    waiting = asyncio.create_task(w.publish_state(*outcome(2, "b")))
    second = asyncio.create_task(w.publish_state(*outcome(3, "b", "c")))
    await wait_until(lambda: w.writer.queued(KEY) >= 2, timeout=5,
                     what="both queued behind the lock", interval=0)  # fmt: skip
    w.publisher.gate = asyncio.Event()  # the next send (writing 2 and 3 together) waits
    lock.release()
    await w.publisher.sending.wait()
    # The first to wait took the queue (asyncio.Lock is fair); it is cancelled mid-write, after
    # storing the state, before its records are acknowledged. The other one writes both again.
    assert w.writer.queued(KEY) == 0
    waiting.cancel()
    w.publisher.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await second
    last = w.sends()[-1]
    assert dict(last) == {f"bitget:{ACC}:{o}": o != "a" for o in "abc"}  # a compacted view
    assert last[0] == tombstones("a")[0]  # the unconfirmed state's tombstone first


async def test_tombstones_a_state_was_stored_with_are_resent_when_its_records_were_refused() -> (
    None
):
    w = Writer()
    await w.publish_state(*outcome(1, "a", "b", "c"))
    acknowledged = state_records()
    # The records of snapshot 2 (retiring a and b) never reach the topic.
    w.publisher.fail(RecordTooLargeError("too large"), times=None)
    await w.publish_state(*outcome(2, "c"))
    w.publisher.heal()
    assert state_records() == acknowledged  # the metric counts acknowledged records only
    await w.publish_state(*outcome(3, "c"))
    assert w.log[-2:] == [
        ("store", [(1002, 0, 2), (1003, 0, 3)]),  # 2 stays pending until confirmed
        ("send", tombstones("a", "b") + upserts("c")),
    ]
    await w.publish_state(*outcome(4, "c"))
    assert w.log[-2:] == [("store", [(1004, 0, 4)]), ("send", upserts("c"))]


async def test_a_state_refused_by_the_changelog_publishes_nothing() -> None:
    w = Writer()
    w.store.refuse = True
    await w.publish_state(*outcome(1, "a"))
    assert w.log == [("store", [(1001, 0, 1)])]  # the refused store, and no send
    assert w.store.load(KEY) is None


@pytest.mark.parametrize("loaded_by", [json.loads, lambda text: None], ids=["restored", "none"])
async def test_a_new_worker_resends_the_pending_tombstones_of_the_state_it_restored(
    loaded_by: Callable[[str], Any],
) -> None:
    """The worker that stored the state died before its records were acknowledged; the next
    one, restoring the state from the changelog, sends that snapshot's tombstones first."""
    old = Writer()
    await old.publish_state(*outcome(1, "a", "b"))
    await old.publish_state(*outcome(2, "b"))  # retires a; say its records were lost
    restored = loaded_by(json.dumps(old.store.load(KEY)))
    new = Writer({KEY: restored} if restored is not None else None)
    await new.publish_state(*outcome(3, "b"))
    await new.publish_state(*outcome(4, "b"))
    if restored is None:  # nothing restored: nothing to resend
        assert new.sends() == [upserts("b"), upserts("b")]
    else:
        assert new.sends() == [tombstones("a") + upserts("b"), upserts("b")]


def failed(n: int, rid: str | None = None) -> tuple[Outcome, tuple[int, int], dict[int, bytes]]:
    """Command ``n`` of the account answered FAILED (an exchange error, or EXPIRED)."""
    out = Outcome(rid or f"r{n}", "bitget", ACC, False, started_at=1_000 + n)
    return out, (0, n), {}


async def test_a_failed_rerun_sends_the_pending_tombstones_of_the_state_it_restored() -> None:
    """Issue 20: a command re-run after a crash that ends FAILED (or EXPIRED) still sends the
    tombstones the restored state names as pending, and then stores it without them; the
    FAILED snapshot itself changes nothing."""
    old = Writer()
    await old.publish_state(*outcome(1, "a", "b"))
    await old.publish_state(*outcome(2, "b"))  # retires a; say its records were lost
    restored = json.loads(json.dumps(old.store.load(KEY)))
    new = Writer({KEY: restored})
    await new.publish_state(*failed(3))
    assert new.sends() == [tombstones("a")]
    stored = new.store.load(KEY)
    assert stored is not None and stored["pending"] == []
    assert {k: v for k, v in stored.items() if k != "pending"} == {
        k: v for k, v in restored.items() if k != "pending"
    }
    await new.publish_state(*failed(4))  # confirmed: nothing more to send
    await new.publish_state(*outcome(5, "b"))
    assert new.sends() == [tombstones("a"), upserts("b")]


async def test_a_failed_answer_of_a_state_this_worker_published_sends_nothing() -> None:
    w = Writer()
    await w.publish_state(*outcome(1, "a", "b"))
    await w.publish_state(*outcome(2, "b"))
    before = list(w.log)
    await w.publish_state(*failed(3))
    assert w.log == before


async def test_a_successor_whose_clock_is_behind_still_upserts_new_orders() -> None:
    """Issue 20: versions start with the fetching worker's wall clock. A successor 5 s behind
    restores the state; its snapshots all started after the restore, so they must count as
    newer: a new order it lists is upserted, an order it no longer lists retired."""
    old = Writer()
    await old.publish_state(*outcome(10_000, "a", "b"))  # started at 11000 on the old clock
    new = Writer({KEY: json.loads(json.dumps(old.store.load(KEY)))})
    behind, _, encoded = outcome(6_000, "b", "c")  # started at 7000 on the new clock
    await new.publish_state(behind, (1, 0), encoded)
    assert new.sends()[-1] == upserts("b", "c") + tombstones("a")
    state = new.store.load(KEY)
    assert state is not None and {o for o, e in state["orders"].items() if e["open"]} == {"b", "c"}
    # Its own later snapshots keep their order among themselves (command order breaks ties).
    later, _, encoded = outcome(6_001, "c")
    await new.publish_state(later, (1, 1), encoded)
    assert new.sends()[-1] == upserts("c") + tombstones("b")
