"""How the worker writes an account's state (Connector.publish_state), without a broker: the
stored state before the records, snapshots that queue for an account written together in
order, and the tombstones a state nobody saw published may lack sent again first
(connector/state.py "Publishing"). Sends are recorded in place of the producer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import RecordTooLargeError
from prometheus_client import REGISTRY

from connector.accounts import Accounts
from connector.devstack import wait_until
from connector.model import OrderQuery
from connector.pipeline import Outcome, OutputRecord
from connector.settings import Settings
from connector.state import table_key
from connector.worker import Connector, Encoded

ACC = "follower-1"
KEY = table_key("bitget", ACC)


class Recorder:
    """Stands in for Connector._send_encoded and _store_state; ``log`` is what happened, in
    order: ("store", pending versions) and ("send", [(key, upsert or tombstone)])."""

    def __init__(self, c: Connector) -> None:
        self.c = c
        self.log: list[tuple[str, Any]] = []
        self.hold: asyncio.Event | None = None  # a send waits for it when set
        self.sending = asyncio.Event()
        self.refuse = False
        self._store = c._store_state
        c._send_encoded = self.send  # type: ignore[method-assign]
        c._store_state = self.store  # type: ignore[method-assign]

    async def send(self, items: list[Encoded]) -> None:
        self.log.append(("send", [(k.decode() if k else k, v is not None) for _, k, v, _ in items]))
        self.sending.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse:
            raise RecordTooLargeError("too large")

    async def store(self, key: str, value: Any) -> bool:
        self.log.append(("store", [tuple(v) for v in value.get("pending", [])]))
        return await self._store(key, value)

    def sends(self) -> list[list[tuple[str, bool]]]:
        return [entry for kind, entry in self.log if kind == "send"]


def connector(tmp_path: Any) -> Connector:
    return Connector(Settings(data_dir=str(tmp_path)), Accounts([]), {})


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


async def test_state_is_stored_before_its_records_are_sent(tmp_path: Any) -> None:
    c = connector(tmp_path)
    rec = Recorder(c)
    await c.publish_state(*outcome(1, "a", "b"))
    await c.publish_state(*outcome(2, "b"))
    assert rec.log == [
        ("store", [(1001, 0, 1)]),
        ("send", upserts("a", "b")),
        ("store", [(1002, 0, 2)]),
        ("send", upserts("b") + tombstones("a")),
    ]


async def test_snapshots_waiting_for_the_account_are_written_together_in_order(
    tmp_path: Any,
) -> None:
    c = connector(tmp_path)
    rec = Recorder(c)
    rec.hold = asyncio.Event()
    first = asyncio.create_task(c.publish_state(*outcome(1, "a", "b")))
    await rec.sending.wait()  # the first write holds the account's lock, its send unanswered
    queued = [asyncio.create_task(c.publish_state(*outcome(n, *ids)))
              for n, ids in ((2, ("b", "c")), (3, ("c",)), (4, ("c", "d")))]  # fmt: skip
    await wait_until(lambda: len(c._state_queues.get(KEY, [])) >= 3, timeout=5,
                     what="all three queued behind the lock", interval=0)  # fmt: skip
    assert not any(t.done() for t in queued)
    rec.hold.set()
    await asyncio.gather(first, *queued)
    # One table change and one send for the three that waited, their records in command order.
    assert rec.log == [
        ("store", [(1001, 0, 1)]),
        ("send", upserts("a", "b")),
        ("store", [(1002, 0, 2), (1003, 0, 3), (1004, 0, 4)]),
        ("send", upserts("b", "c") + tombstones("a") + upserts("c") + tombstones("b")
         + upserts("c", "d")),
    ]  # fmt: skip
    assert c._state_queues.get(KEY, []) == []


async def test_writes_queued_behind_a_cancelled_holder_are_written_by_the_next(
    tmp_path: Any,
) -> None:
    c = connector(tmp_path)
    rec = Recorder(c)
    await c.publish_state(*outcome(1, "a"))
    # Hold the account's lock so that the next two writes queue behind it.
    lock = c._state_locks[KEY]
    await lock.acquire()
    rec.sending.clear()
    waiting = asyncio.create_task(c.publish_state(*outcome(2, "b")))
    second = asyncio.create_task(c.publish_state(*outcome(3, "b", "c")))
    await wait_until(lambda: len(c._state_queues.get(KEY, [])) >= 2, timeout=5,
                     what="two writes queued behind the lock", interval=0)  # fmt: skip
    rec.hold = asyncio.Event()  # the next send (writing 2 and 3 together) waits
    lock.release()
    await rec.sending.wait()
    # The first to wait took the queue (asyncio.Lock is fair); it is cancelled mid-write, after
    # storing the state, before its records are acknowledged. The other one writes both again.
    assert c._state_queues.get(KEY) is None
    waiting.cancel()
    rec.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await second
    last = rec.sends()[-1]
    assert dict(last) == {f"bitget:{ACC}:{o}": o != "a" for o in "abc"}  # a compacted view
    assert last[0] == tombstones("a")[0]  # the unconfirmed state's tombstone first


async def test_tombstones_a_state_was_stored_with_are_resent_when_its_records_were_refused(
    tmp_path: Any,
) -> None:
    c = connector(tmp_path)
    rec = Recorder(c)
    await c.publish_state(*outcome(1, "a", "b", "c"))
    acknowledged = state_records()
    rec.refuse = True  # the records of snapshot 2 (retiring a and b) never reach the topic
    await c.publish_state(*outcome(2, "c"))
    rec.refuse = False
    assert state_records() == acknowledged  # the metric counts acknowledged records only
    await c.publish_state(*outcome(3, "c"))
    assert rec.log[-2:] == [
        ("store", [(1002, 0, 2), (1003, 0, 3)]),  # 2 stays pending until confirmed
        ("send", tombstones("a", "b") + upserts("c")),
    ]
    await c.publish_state(*outcome(4, "c"))
    assert rec.log[-2:] == [("store", [(1004, 0, 4)]), ("send", upserts("c"))]


async def test_a_state_refused_by_the_changelog_publishes_nothing(tmp_path: Any) -> None:
    c = connector(tmp_path)
    rec = Recorder(c)

    async def refused(key: str, value: Any) -> bool:
        rec.log.append(("store refused", None))
        return False

    c._store_state = refused  # type: ignore[method-assign]
    await c.publish_state(*outcome(1, "a"))
    assert rec.log == [("store refused", None)]


@pytest.mark.parametrize("loaded_by", [json.loads, lambda text: None], ids=["restored", "none"])
async def test_a_new_worker_resends_the_pending_tombstones_of_the_state_it_restored(
    tmp_path: Any, loaded_by: Callable[[str], Any]
) -> None:
    """The worker that stored the state died before its records were acknowledged; the next
    one, restoring the state from the changelog, sends that snapshot's tombstones first."""
    old = connector(tmp_path / "old")
    Recorder(old)
    await old.publish_state(*outcome(1, "a", "b"))
    await old.publish_state(*outcome(2, "b"))  # retires a; say its records were lost
    new = connector(tmp_path / "new")
    rec = Recorder(new)
    restored = loaded_by(json.dumps(old._local_state[KEY]))
    if restored is not None:
        new._local_state[KEY] = restored
    await new.publish_state(*outcome(3, "b"))
    await new.publish_state(*outcome(4, "b"))
    if restored is None:  # nothing restored: nothing to resend
        assert rec.sends() == [upserts("b"), upserts("b")]
    else:
        assert rec.sends() == [tombstones("a") + upserts("b"), upserts("b")]
