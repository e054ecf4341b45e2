"""Fetch coalescing: shared only with a fetch that starts after every sharer arrived."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from connector import codec
from connector.accounts import Account, Accounts, Secret
from connector.errors import ExchangeUnavailable
from connector.model import FetchResult, Order, OrderQuery, OrderStatus, Side
from connector.pipeline import Pipeline
from connector.resilience import FetchCoalescer
from connector.settings import Settings


class GatedAdapter:
    """Each fetch records when it started and which command started it, then waits for a gate."""

    exchange = "ascendex"

    def __init__(self, orders: int = 3) -> None:
        self.started: list[tuple[str, float]] = []  # (request_id, loop time)
        self.gate = asyncio.Event()
        self.orders = orders
        self.fail: Exception | None = None

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.started.append((query.request_id, asyncio.get_running_loop().time()))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        rows = [
            Order(exchange="ascendex", order_id=f"o{i}", symbol="BTC-PERP", raw="{}",
                  side=Side.BUY, status=OrderStatus.NEW)
            for i in range(self.orders)
        ]  # fmt: skip
        return FetchResult(rows, calls=1)

    async def aclose(self) -> None:
        pass


def make_pipeline(adapter: GatedAdapter) -> Pipeline:
    accounts = Accounts(
        [
            Account("desk", "ascendex", Secret("key-abcdef"), Secret("secret-xyz")),
            Account("other", "ascendex", Secret("key-2"), Secret("secret-2")),
        ]
    )
    return Pipeline(Settings(), accounts, {"ascendex": adapter}, codec.Serializer())


def cmd(request_id: str, **fields: Any) -> bytes:
    base = {"request_id": request_id, "exchange": "ascendex", "account": "desk"}
    return json.dumps({**base, **fields}).encode()


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_commands_arriving_during_a_fetch_share_the_next_one_only() -> None:
    adapter = GatedAdapter()
    pipe = make_pipeline(adapter)
    first = asyncio.create_task(pipe.process(cmd("r0")))
    await until(lambda: len(adapter.started) == 1)  # r0's fetch is running
    arrived: dict[str, float] = {}
    later = []
    for i in range(1, 30):
        arrived[f"r{i}"] = asyncio.get_running_loop().time()
        later.append(asyncio.create_task(pipe.process(cmd(f"r{i}"))))
    await asyncio.sleep(0.01)
    assert len(adapter.started) == 1  # nobody joined the running fetch, nobody started another
    adapter.gate.set()
    outcomes = [await first, *await asyncio.gather(*later)]
    # Two fetches for 30 commands, the second one started after all 29 of its sharers arrived.
    assert len(adapter.started) == 2 and pipe.coalescer.fetches == 2
    assert pipe.coalescer.joined == 28
    assert adapter.started[1][1] >= max(arrived.values())
    # Each command: its own events and exactly one result.
    assert [o.request_id for o in outcomes] == [f"r{i}" for i in range(30)]
    event_ids = set()
    for o in outcomes:
        assert o.ok and o.result is not None
        assert o.result.value["request_id"] == o.request_id
        assert o.result.value["order_count"] == 3
        assert [r.value["snapshot_seq"] for r in o.orders] == [1, 2, 3]
        assert {r.value["request_id"] for r in o.orders} == {o.request_id}
        event_ids.update(r.value["event_id"] for r in o.orders)
    assert len(event_ids) == 90
    assert pipe.coalescer.pending_keys() == 0


async def test_a_command_with_nothing_running_starts_at_once() -> None:
    adapter = GatedAdapter()
    adapter.gate.set()
    pipe = make_pipeline(adapter)
    for i in range(3):  # sequential: each starts its own fetch, no waiting for anyone
        assert (await pipe.process(cmd(f"s{i}"))).ok
    assert [r for r, _ in adapter.started] == ["s0", "s1", "s2"]


async def test_different_keys_are_never_shared() -> None:
    adapter = GatedAdapter()
    pipe = make_pipeline(adapter)
    tasks = [
        asyncio.create_task(pipe.process(cmd("a"))),
        asyncio.create_task(pipe.process(cmd("b", symbol="ETH-PERP"))),
        asyncio.create_task(pipe.process(cmd("c", account="other"))),
    ]
    await until(lambda: len(adapter.started) == 3)  # all three run at once
    adapter.gate.set()
    assert all(o.ok for o in await asyncio.gather(*tasks))
    assert pipe.coalescer.joined == 0


async def test_a_shared_failure_fails_every_sharer_once() -> None:
    adapter = GatedAdapter()
    adapter.fail = ExchangeUnavailable("venue down")
    pipe = make_pipeline(adapter)
    tasks = [asyncio.create_task(pipe.process(cmd(f"f{i}"))) for i in range(5)]
    await until(lambda: len(adapter.started) == 1)
    adapter.gate.set()
    outcomes = await asyncio.gather(*tasks)
    for i, o in enumerate(outcomes):
        assert not o.ok and o.request_id == f"f{i}"
        assert o.result is not None and o.result.value["error_code"] == "EXCHANGE_UNAVAILABLE"
        assert o.error is not None and o.error.value["request_id"] == f"f{i}"
    assert len(adapter.started) == 2  # f0 alone, then f1..f4 together


async def test_a_sharer_giving_up_does_not_cancel_the_others() -> None:
    co: FetchCoalescer[str] = FetchCoalescer()
    gate = asyncio.Event()
    runs: list[float] = []

    async def fetch(deadline: float) -> str:
        runs.append(deadline)
        await gate.wait()
        return "snapshot"

    first = asyncio.create_task(co.run("k", fetch, deadline=1.0))
    await until(lambda: len(runs) == 1)
    quitter = asyncio.create_task(co.run("k", fetch, deadline=2.0))
    stayer = asyncio.create_task(co.run("k", fetch, deadline=5.0))
    await asyncio.sleep(0)
    quitter.cancel()
    gate.set()
    assert await first == "snapshot" and await stayer == "snapshot"
    assert runs == [1.0, 5.0]  # the shared fetch runs with its latest sharer's deadline
    assert co.pending_keys() == 0
