"""A 20,000-order account through the broker (issue 20: no crash loop from any one account).

Its state (20,000 orders) is far past what one changelog record may hold (about 8,000 orders),
so it is stored as a header and chunks (connector/state_layout.py). Through a real worker:
20,000 upserts; 1,000 orders gone, 1,000 tombstones; the worker SIGKILLed and a new one
started, which recovers the state from the changelog (10 more orders gone: exactly their 10
tombstones, nothing spurious); and a small account answered OK by the same worker meanwhile.
The numbers (time to answer, changelog records and bytes, the worker's peak RSS) are printed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from connector import devstack
from connector.client import Decoded, topic_partitions
from connector.exchanges.bitget import simulator as bitget_sim
from connector.kafka import consumer_kwargs
from connector.settings import Settings

from .harness import Collector, Stack, free_port, rid, start_worker, wait_ready

pytestmark = pytest.mark.integration

BIG = "bitget-big-20k"
SMALL = "bitget-demo"
N = 20_000


def big_rows() -> list[dict[str, Any]]:
    template = bitget_sim.DEMO_ROWS["bitget-50"][0]
    return [
        {**template, "trackingNo": str(1_400_000_000_000_000_000 + i),
         "openOrderId": str(1_500_000_000_000_000_000 + i),
         "openTime": str(int(template["openTime"]) + i)}
        for i in range(N)
    ]  # fmt: skip


@dataclass
class StateTopic(Collector):
    """The state topic's records of the big account: per request id, upserts and tombstones."""

    upserts: dict[str, int] = field(default_factory=dict)
    tombstones: dict[str, set[str]] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)  # the topic read as a table

    def topics(self) -> list[str]:
        return [self.settings.topic_state]

    def keep(self, msg: Any, decoded: Decoded) -> None:
        request_id = decoded.headers.get("request_id", "")
        if not (decoded.key or "").startswith(f"bitget:{BIG}:"):
            return  # the small account's
        key = (decoded.key or "").removeprefix(f"bitget:{BIG}:")
        if msg.value is None:
            self.tombstones.setdefault(request_id, set()).add(key)
            self.open.discard(key)
        else:
            self.upserts[request_id] = self.upserts.get(request_id, 0) + 1
            self.open.add(key)

    async def wait(self, request_id: str, upserts: int, tombstones: int) -> None:
        await self.wait_for(
            lambda: (
                self.upserts.get(request_id, 0) >= upserts
                and len(self.tombstones.get(request_id, ())) >= tombstones
            )
        )

    async def wait_for(self, done: Callable[[], bool]) -> None:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(done), 300)

    def retired_except(self, *request_ids: str) -> set[str]:
        """Order ids tombstoned by any snapshot but these."""
        return set().union(*(t for r, t in self.tombstones.items() if r not in request_ids))


async def changelog_size(settings: Settings) -> tuple[int, int]:
    """Records and value bytes on the state table's changelog so far."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.state_table_changelog)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = size = 0
        while batches := await consumer.getmany(timeout_ms=1500):
            for msgs in batches.values():
                records += len(msgs)
                size += sum(len(m.value or b"") + len(m.key or b"") for m in msgs)
        return records, size
    finally:
        await consumer.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.timeout(1200)  # 60,000 orders fetched, 100,000 records published one per batch
async def test_a_20000_order_account_is_stored_recovered_and_never_stops_the_worker(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    orders_file = tmp_path / "orders.json"
    orders_file.write_text(json.dumps({"bitget": {BIG: big_rows()}}))
    with devstack.Stack(tmp_path / "big-sandbox") as sandbox_stack:
        sandbox = sandbox_stack.start_sandbox(orders_file=orders_file)
        base = sandbox["CONNECTOR_BITGET_REST_URL"]
        async with httpx.AsyncClient(timeout=30) as control:
            (await control.post(f"{base}/__sandbox/config", json={"rate_limit": 1000}))
        stack = await isolated_stack(
            "large",
            **sandbox,
            CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE="1",  # table recovery on the embedded broker
            CONNECTOR_BITGET_RATE_LIMIT_PER_S="500",
            CONNECTOR_BITGET_MAX_PAGES="1000",
            CONNECTOR_COMMAND_TIMEOUT_S="600",
            CONNECTOR_REQUEST_TIMEOUT_S="30",
        )
        state = StateTopic(stack.settings)
        await state.start()
        notes: list[str] = []
        try:
            # 1. 20,000 orders, a small account answered meanwhile by the same worker.
            started = time.monotonic()
            first = await stack.commands.send(request_id=rid("big-1"), exchange="bitget",
                                              account=BIG)  # fmt: skip
            small = await stack.commands.send(request_id=rid("small-1"), exchange="bitget",
                                              account=SMALL)  # fmt: skip
            small_answer = await stack.outputs.answer(small, timeout=300)
            assert small_answer.result["status"] == "OK"
            answer = await stack.outputs.answer(first, timeout=600)
            answered = time.monotonic() - started
            assert answer.result["status"] == "OK" and answer.result["order_count"] == N
            await state.wait(first, N, 0)
            stored = time.monotonic() - started
            assert not state.tombstones.get(first)
            records, size = await changelog_size(stack.settings)
            notes.append(f"20,000 orders: answered in {answered:.1f}s, state records out after "
                         f"{stored:.1f}s; changelog {records} records, {size / 1e6:.2f} MB")  # fmt: skip

            # 2. 1,000 orders gone: 1,000 tombstones.
            rows = big_rows()
            gone = [r["trackingNo"] for r in rows[:1000]]
            async with httpx.AsyncClient(timeout=60) as control:
                r = await control.post(f"{base}/__sandbox/orders",
                                       json={"account": BIG, "remove": gone})  # fmt: skip
                r.raise_for_status()
            before = await changelog_size(stack.settings)
            started = time.monotonic()
            second = await stack.commands.send(request_id=rid("big-2"), exchange="bitget",
                                               account=BIG)  # fmt: skip
            answer = await stack.outputs.answer(second, timeout=600)
            assert answer.result["status"] == "OK" and answer.result["order_count"] == N - 1000
            await state.wait(second, N - 1000, 1000)
            took = time.monotonic() - started
            assert state.tombstones[second] == set(gone)
            small2 = await stack.commands.send(request_id=rid("small-2"), exchange="bitget",
                                               account=SMALL)  # fmt: skip
            assert (await stack.outputs.answer(small2)).result["status"] == "OK"
            after = await changelog_size(stack.settings)
            pid = stack.worker.proc.pid
            notes.append(f"1,000 gone: records out after {took:.1f}s; changelog +"
                         f"{after[0] - before[0]} records, +{(after[1] - before[1]) / 1e6:.2f} "
                         f"MB; worker peak RSS {peak_rss_mb(pid):.0f} MB")  # fmt: skip

            # 3. SIGKILL, a new worker: the state comes back from the changelog.
            stack.worker.proc.kill()
            await asyncio.to_thread(stack.worker.proc.wait, 30)
            later = [r["trackingNo"] for r in rows[1000:1010]]
            async with httpx.AsyncClient(timeout=60) as control:
                r = await control.post(f"{base}/__sandbox/orders",
                                       json={"account": BIG, "remove": later})  # fmt: skip
                r.raise_for_status()
            env = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
                   "CONNECTOR_DATA_DIR": str(tmp_path / "data-large-2")}  # fmt: skip
            stack.worker = start_worker(env, tmp_path / "worker-large-2.log")
            started = time.monotonic()
            await wait_ready(stack.worker, timeout=300)
            ready = time.monotonic() - started
            third = await stack.commands.send(request_id=rid("big-3"), exchange="bitget",
                                              account=BIG)  # fmt: skip
            answer = await stack.outputs.answer(third, timeout=600)
            assert answer.result["order_count"] == N - 1010
            await state.wait(third, N - 1010, 0)
            # The new worker loaded a state it did not see published: it sends the tombstones
            # of its pending versions again (the 1,000, repeated: harmless on a compacted topic).
            # The killed worker may not have committed the second command: its repeat reads the
            # recovered state too. Either way the 10 later orders are retired, and nothing that
            # is open: the topic read as a table is exactly the venue's book.
            await state.wait_for(lambda: set(later) <= state.retired_except(first, second))
            after_kill = state.retired_except(first, second)
            assert set(later) <= after_kill <= set(gone) | set(later)
            assert state.open == {r["trackingNo"] for r in rows[1010:]}
            small3 = await stack.commands.send(request_id=rid("small-3"), exchange="bitget",
                                               account=SMALL)  # fmt: skip
            assert (await stack.outputs.answer(small3)).result["status"] == "OK"
            notes.append(f"restart: ready after {ready:.1f}s (table recovered); new worker "
                         f"peak RSS {peak_rss_mb(stack.worker.proc.pid):.0f} MB")  # fmt: skip
        finally:
            await state.stop()
            print("\n" + "\n".join(notes))
