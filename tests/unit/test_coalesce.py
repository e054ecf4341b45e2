"""Fetch coalescing: shared only with a fetch still waiting for the rate limiter, i.e. one that
starts after every sharer arrived; never with one that has sent a request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from connector import codec
from connector.account import Account, Accounts
from connector.devstack import wait_until
from connector.errors import ExchangeUnavailable
from connector.model import FetchResult, Order, OrderQuery, OrderStatus, Side
from connector.pipeline import Pipeline
from connector.resilience import FetchCoalescer, SlidingWindowLimiter
from connector.secrets import Secret
from connector.settings import Settings


class GatedAdapter:
    """One request per fetch through a limiter of one slot per account (as a venue does); the
    request records when it was sent and for which command, then waits for a gate."""

    exchange = "ascendex"

    def __init__(self, orders: int = 3) -> None:
        self.started: list[tuple[str, float]] = []  # (request_id, loop time) of each request
        self.gate = asyncio.Event()
        self.orders = orders
        self.fail: Exception | None = None
        self.limiters: dict[str, SlidingWindowLimiter] = {}

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        limiter = self.limiters.setdefault(account.alias, SlidingWindowLimiter(1, 0.001))
        await limiter.acquire(deadline)
        try:
            self.started.append((query.request_id, asyncio.get_running_loop().time()))
            await self.gate.wait()
        finally:
            limiter.release()
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


async def until(condition: Callable[[], bool]) -> None:
    await wait_until(condition, timeout=5, what="the pipeline's state", interval=0)


async def test_commands_waiting_for_the_limiter_share_one_fetch_that_starts_after_them() -> None:
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
    # r1 started its own fetch (r0's had sent its request: never joinable); it waits for the
    # limiter, and r2..r29 joined it. Nothing else reached the exchange.
    assert len(adapter.started) == 1
    assert pipe.coalescer.fetches == 2 and pipe.coalescer.joined == 28
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


async def test_without_a_limiter_wait_every_command_fetches_at_once() -> None:
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
    await until(lambda: len(adapter.started) == 2)  # desk's limiter admits one at a time
    more = [
        asyncio.create_task(pipe.process(cmd("d"))),  # joins "a"? no: a has started; own fetch
        asyncio.create_task(pipe.process(cmd("e", symbol="BTC-PERP"))),  # another key
    ]
    await asyncio.sleep(0.01)
    adapter.gate.set()
    assert all(o.ok for o in await asyncio.gather(*tasks, *more))
    assert pipe.coalescer.joined == 0 and pipe.coalescer.fetches == 5
    assert len(adapter.started) == 5


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
    # All five arrived before f0's fetch first ran (it had sent nothing): one fetch for all.
    assert len(adapter.started) == 1 and pipe.coalescer.joined == 4


async def test_a_sharer_giving_up_does_not_cancel_the_others() -> None:
    co: FetchCoalescer[str] = FetchCoalescer()
    limiter = SlidingWindowLimiter(1, 0.001)
    gate = asyncio.Event()
    sent: list[float] = []

    async def fetch() -> str:
        await limiter.acquire()
        try:
            sent.append(asyncio.get_running_loop().time())
            await gate.wait()
            return "snapshot"
        finally:
            limiter.release()

    first = asyncio.create_task(co.run("k", fetch))
    await until(lambda: len(sent) == 1)
    starter = asyncio.create_task(co.run("k", fetch))  # waits for the limiter
    await asyncio.sleep(0)
    quitter = asyncio.create_task(co.run("k", fetch))
    stayer = asyncio.create_task(co.run("k", fetch))
    await asyncio.sleep(0)
    assert co.joined == 2
    quitter.cancel()
    gate.set()
    assert await first == "snapshot" and await starter == "snapshot"
    assert await stayer == "snapshot"
    assert len(sent) == 2
    assert co.pending_keys() == 0
