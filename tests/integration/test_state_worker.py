"""The worker publishes the open-orders state topic: upserts and tombstones after every complete
OK snapshot, through the broker, with the Bitget simulator's orders changed between snapshots
(``POST /__sandbox/orders``).

Records are attributed to the snapshot that caused them by their ``request_id`` header. A
snapshot's records are all acknowledged before its command is, and snapshots of one account
are applied one at a time; so once a later command's records are on the topic, an earlier
command's are complete ("barrier" below), and "exactly these records" can be asserted.
"""

from __future__ import annotations

import asyncio
import copy
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import httpx
import pytest

from connector.client import Decoded
from connector.settings import Settings
from connector.statetopic import read_state

from .harness import (
    Answer,
    Collector,
    Commands,
    Outputs,
    Stack,
    Worker,
    free_port,
    rid,
    start_worker,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration

AVSC = Path(__file__).resolve().parents[2] / "avro" / "OrderEvent.avsc"
ACC = "bitget-demo"


@dataclass
class StateRecords(Collector):
    """Every record of the run's state topic, decoded, with the raw value bytes."""

    records: list[tuple[Decoded, bytes | None]] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [self.settings.topic_state]

    def keep(self, msg: Any, decoded: Decoded) -> None:
        self.records.append((decoded, msg.value))

    def of(self, request_id: str) -> list[tuple[Decoded, bytes | None]]:
        return [r for r in self.records if r[0].headers.get("request_id") == request_id]

    async def wait(self, request_id: str, count: int, timeout: float = 60) -> None:
        async with self._cond:
            await asyncio.wait_for(
                self._cond.wait_for(lambda: len(self.of(request_id)) >= count), timeout
            )

    def split(self, request_id: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """(order id -> upserted OrderEvent, tombstoned order ids) of one snapshot."""
        upserts: dict[str, dict[str, Any]] = {}
        tombstones: set[str] = set()
        for d, _raw in self.of(request_id):
            assert d.key is not None and d.key.startswith(f"bitget:{ACC}:")
            oid = d.key.removeprefix(f"bitget:{ACC}:")
            if d.value is None:
                assert d.schema is None
                tombstones.add(oid)
            else:
                upserts[oid] = d.value
        return upserts, tombstones


@pytest.fixture
async def state(worker: Worker, settings: Settings) -> AsyncIterator[StateRecords]:
    s = StateRecords(settings)
    await s.start()
    yield s
    await s.stop()


@dataclass
class Venue:
    control: httpx.AsyncClient
    base: str

    async def rows(self) -> list[dict[str, Any]]:
        r = await self.control.get(f"{self.base}/__sandbox/orders", params={"account": ACC})
        r.raise_for_status()
        rows: list[dict[str, Any]] = r.json()["rows"]
        return rows

    async def change(self, **spec: Any) -> None:
        r = await self.control.post(f"{self.base}/__sandbox/orders", json={"account": ACC, **spec})
        r.raise_for_status()

    async def requests(self) -> int:
        stats = (await self.control.get(f"{self.base}/__sandbox/stats")).json()
        return int(stats["by_account"].get(ACC, {}).get("requests", 0))


@pytest.fixture
async def venue(sandbox: dict[str, str], control: httpx.AsyncClient) -> Venue:
    v = Venue(control, sandbox["CONNECTOR_BITGET_REST_URL"])
    (await control.post(f"{v.base}/__sandbox/reset")).raise_for_status()
    return v


async def snapshot(
    commands: Commands, outputs: Outputs, tag: str, **filters: str
) -> tuple[str, Answer]:
    request_id = await commands.send(request_id=rid(tag), exchange="bitget", account=ACC, **filters)
    return request_id, await outputs.answer(request_id)


async def settled(
    commands: Commands, outputs: Outputs, state: StateRecords, venue: Venue, tombstones: int = 0
) -> tuple[str, Answer]:
    """An unfiltered snapshot whose records (an upsert per row + ``tombstones``) are all on the
    topic: the state matches the venue."""
    rows = await venue.rows()
    request_id, answer = await snapshot(commands, outputs, "st-base")
    assert answer.result["status"] == "OK"
    await state.wait(request_id, len(rows) + tombstones)
    return request_id, answer


async def test_orders_added_changed_and_removed_give_exact_upserts_and_tombstones(
    commands: Commands, outputs: Outputs, state: StateRecords, venue: Venue
) -> None:
    await settled(commands, outputs, state, venue)
    rows = await venue.rows()
    assert len(rows) == 3
    changed = next(r for r in rows if "openAvgPrice" in r)
    gone, same = [r for r in rows if r is not changed]
    new = {**copy.deepcopy(same), "trackingNo": "1170000000000009999",
           "openOrderId": "1180000000000009999"}  # fmt: skip
    price = "12345.5"
    await venue.change(
        remove=[gone["trackingNo"]], upsert=[{**changed, "openAvgPrice": price}, new]
    )

    request_id, answer = await snapshot(commands, outputs, "st-change")
    assert answer.result["order_count"] == 3
    await state.wait(request_id, 4)
    barrier, _ = await settled(commands, outputs, state, venue)
    upserts, tombstones = state.split(request_id)
    assert tombstones == {gone["trackingNo"]}
    assert set(upserts) == {changed["trackingNo"], same["trackingNo"], new["trackingNo"]}
    assert upserts[changed["trackingNo"]]["price"] == price
    # Unchanged orders are upserted again (same value; compaction keeps one), never retired.
    assert state.split(barrier)[1] == set()

    # Values decode with Apache Avro from the .avsc alone (after the 10-byte framing); tombstones
    # have null values.
    reader = avro.io.DatumReader(avro.schema.parse(AVSC.read_text()))
    raws = [raw for _d, raw in state.of(request_id)]
    assert sum(raw is None for raw in raws) == 1
    decoded = [reader.read(avro.io.BinaryDecoder(io.BytesIO(r[10:]))) for r in raws if r]
    assert {d["order_id"] for d in decoded} == set(upserts)

    # Read back as a table (what `connector state` prints).
    table = await read_state(state.settings, "bitget", ACC, idle_timeout=5)
    assert table is not None
    assert {v["order_id"] for v in table.orders.values()} == set(upserts)


async def test_symbol_filtered_snapshot_retires_only_that_symbol(
    commands: Commands, outputs: Outputs, state: StateRecords, venue: Venue
) -> None:
    await settled(commands, outputs, state, venue)
    rows = await venue.rows()
    btc = [r for r in rows if r["symbol"] == "BTCUSDT"]
    eth = [r for r in rows if r["symbol"] == "ETHUSDT"]
    assert btc and eth
    await venue.change(remove=[btc[0]["trackingNo"], eth[0]["trackingNo"]])

    request_id, answer = await snapshot(commands, outputs, "st-btc", symbol="BTCUSDT")
    assert answer.result["status"] == "OK"
    await state.wait(request_id, len(btc))  # the other BTC orders + one tombstone
    barrier, _ = await settled(commands, outputs, state, venue, tombstones=1)
    upserts, tombstones = state.split(request_id)
    assert tombstones == {btc[0]["trackingNo"]}
    assert set(upserts) == {r["trackingNo"] for r in btc[1:]}
    # The ETH order was left alone by the BTC snapshot; the unfiltered one retires it.
    assert state.split(barrier)[1] == {eth[0]["trackingNo"]}


async def test_failed_snapshot_changes_nothing(
    commands: Commands, outputs: Outputs, state: StateRecords, venue: Venue
) -> None:
    await settled(commands, outputs, state, venue)
    gone = (await venue.rows())[0]
    await venue.change(remove=[gone["trackingNo"]])
    r = await venue.control.post(f"{venue.base}/__sandbox/faults", json={"fail_next": 100})
    r.raise_for_status()
    failed, answer = await snapshot(commands, outputs, "st-failed")
    assert answer.result["status"] == "FAILED"
    (await venue.control.post(f"{venue.base}/__sandbox/reset")).raise_for_status()
    await venue.change(remove=[gone["trackingNo"]])  # reset restored the rows

    after, _ = await settled(commands, outputs, state, venue, tombstones=1)
    assert state.of(failed) == []
    # The tombstone comes from the next complete snapshot, so the FAILED one did not retire it.
    assert state.split(after)[1] == {gone["trackingNo"]}


async def test_older_snapshot_finishing_last_leaves_the_newer_state(
    commands: Commands, outputs: Outputs, state: StateRecords, venue: Venue
) -> None:
    await settled(commands, outputs, state, venue)
    rows = await venue.rows()
    gone = rows[0]
    before = await venue.requests()
    # A reads the rows (all three), then its answer is held; meanwhile B sees one removed.
    await venue.change(hold_next_ms=3000)
    a = await commands.send(request_id=rid("st-older"), exchange="bitget", account=ACC)

    async def a_read() -> bool:  # A's first page has been read
        return await venue.requests() != before

    await wait_until(a_read, timeout=30, what="A's first page read")
    await venue.change(remove=[gone["trackingNo"]])
    b, answer_b = await snapshot(commands, outputs, "st-newer")
    await state.wait(b, len(rows))  # two upserts + one tombstone
    answer_a = await outputs.answer(a)
    assert answer_a.result["status"] == answer_b.result["status"] == "OK"
    assert gone["trackingNo"] in {o.value["order_id"] for o in answer_a.orders}
    assert outputs.messages.index(answer_a.results[0]) > outputs.messages.index(
        answer_b.results[0]
    )  # the older snapshot finished last

    await settled(commands, outputs, state, venue)  # barrier: A's records are all out
    assert state.split(b)[1] == {gone["trackingNo"]}
    upserts_a, tombstones_a = state.split(a)
    assert gone["trackingNo"] not in upserts_a and not tombstones_a
    table = await read_state(state.settings, "bitget", ACC, idle_timeout=5)
    assert table is not None
    assert {v["order_id"] for v in table.orders.values()} == {r["trackingNo"] for r in rows[1:]}


async def test_worker_killed_between_snapshots_continues_from_its_table(
    isolated_stack: Callable[..., Awaitable[Stack]], venue: Venue, tmp_path: Path
) -> None:
    """SIGKILL after a snapshot, change the venue, start a new worker with an empty data
    directory: it recovers the account's state from the table's changelog, so the removed order
    is retired. (Without the table the new worker would know no previous snapshot, and the
    removed order would stay open on the topic for good.) The embedded broker needs
    CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE=1 for table recovery (README "Development setup")."""
    stack = await isolated_stack("restart", CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE="1")
    state = StateRecords(stack.settings)
    await state.start()
    try:
        rows = await venue.rows()
        first, answer = await snapshot(stack.commands, stack.outputs, "st-before-kill")
        assert answer.result["status"] == "OK"
        await state.wait(first, len(rows))
        stack.worker.proc.kill()
        await asyncio.to_thread(stack.worker.proc.wait, 30)
        gone = rows[0]["trackingNo"]
        await venue.change(remove=[gone])

        env = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
               "CONNECTOR_DATA_DIR": str(tmp_path / "data-restart-2")}  # fmt: skip
        stack.worker = start_worker(env, tmp_path / "worker-restart-2.log")
        await wait_ready(stack.worker)
        second, answer = await snapshot(stack.commands, stack.outputs, "st-after-kill")
        assert answer.result["status"] == "OK" and answer.result["order_count"] == len(rows) - 1
        await state.wait(second, len(rows) - 1)  # the remaining orders
        # A barrier: once a later snapshot's records are out, every earlier one's are.
        barrier, _ = await snapshot(stack.commands, stack.outputs, "st-barrier")
        await state.wait(barrier, len(rows) - 1)
        # The killed worker may not have committed the first command; its repeat then reads the
        # recovered table too and retires the order before the second snapshot does. Either
        # way: exactly one retirement, and the topic read as a table is the venue's orders.
        tombstones = [d for d, raw in state.records if raw is None]
        assert [d.key for d in tombstones] == [f"bitget:{ACC}:{gone}"]
        table = await read_state(stack.settings, "bitget", ACC, idle_timeout=5)
        assert table is not None
        assert {v["order_id"] for v in table.orders.values()} == {r["trackingNo"] for r in rows[1:]}
    finally:
        await state.stop()
