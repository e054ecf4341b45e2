"""Requests per snapshot (issue 22, docs/bitget.md "Requests per snapshot"): a repeated snapshot
of a scope walks back only to the oldest tracking order the last complete one listed, and still
misses nothing. The adapter runs against the simulator (which enforces Bitget's windows: 90 days
at most, history, time filter on creation time) with the default 365-day horizon, counting the
requests the simulator received."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connector.errors import ExchangeUnavailable
from connector.exchanges.bitget import BitgetAdapter, create_adapter
from connector.exchanges.bitget import simulator as sim
from connector.exchanges.bitget.http import BitgetHttpClient
from connector.exchanges.bitget.parsing import DAY_MS
from connector.exchanges.bitget.scopes import ScopeMemory, scope_key
from connector.model import FetchResult

from .test_bitget_adapter import Sim, _start, account, query, settings

DEMO = "bitget-demo"  # 3 tracking orders opened a day ago
MARGIN_MS = 300_000  # CONNECTOR_BITGET_SKEW_MARGIN_S default
FULL = 6  # 365 days = 5 windows; the newest has the rows and ends with an empty page


@pytest.fixture
async def simulator() -> AsyncIterator[Sim]:
    s, runner = await _start()
    await s.config(rate_limit=100)
    try:
        yield s
    finally:
        await runner.cleanup()


def make(s: Sim, **venue: Any) -> BitgetAdapter:
    overrides = {f"bitget_{k}": v for k, v in venue.items()}
    return create_adapter(
        *settings(s.url, bitget_rate_limit_per_s=100, bitget_history_days=365, **overrides)
    )


@pytest.fixture
async def adapter(simulator: Sim) -> AsyncIterator[BitgetAdapter]:
    a = make(simulator)
    try:
        yield a
    finally:
        await a.aclose()


async def snapshot(a: BitgetAdapter, s: Sim, alias: str = DEMO, **kw: Any) -> tuple[set[str], int]:
    """(tracking numbers listed, requests the simulator received for them)."""
    before = (await s.stats())["by_account"].get(alias, {}).get("requests", 0)
    deadline = asyncio.get_running_loop().time() + 30
    result: FetchResult = await a.fetch_open_orders(
        account(alias), query(alias, **kw), deadline=deadline
    )
    received = (await s.stats())["by_account"][alias]["requests"] - before
    assert received == result.calls  # exchange_calls is what the exchange saw
    return {o.order_id for o in result.orders}, result.calls


async def upsert(s: Sim, *rows: dict[str, Any], alias: str = DEMO) -> None:
    async with httpx.AsyncClient() as c:
        spec = {"account": alias, "upsert": list(rows)}
        (await c.post(f"{s.url}/__sandbox/orders", json=spec)).raise_for_status()


def row(tracking_no: str, open_time_ms: int) -> dict[str, Any]:
    return {**sim.DEMO_ROWS[DEMO][0], "trackingNo": tracking_no, "openTime": str(open_time_ms)}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


DEMO_IDS = {r["trackingNo"] for r in sim.DEMO_ROWS[DEMO]}


async def test_first_snapshot_walks_the_full_horizon_repeated_ones_cost_2(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    assert await snapshot(adapter, simulator) == (DEMO_IDS, FULL)
    for _ in range(3):
        # One window from the oldest listed order (a day ago) minus the margin: its page of 3
        # rows and the empty page that proves its end.
        assert await snapshot(adapter, simulator) == (DEMO_IDS, 2)


async def test_an_old_order_still_open_is_listed_on_every_repeated_snapshot(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    old = row("1170000000000000000", now_ms() - 200 * DAY_MS)  # opened 200 days ago
    await upsert(simulator, old)
    # Full: windows 1 and 3 (of 5) have rows, each ends with an empty page.
    assert await snapshot(adapter, simulator) == ({*DEMO_IDS, old["trackingNo"]}, 7)
    for _ in range(2):
        # Back to 200 days + the margin: 3 windows (89 + 89 + 22 days), 2 of them with rows.
        assert await snapshot(adapter, simulator) == ({*DEMO_IDS, old["trackingNo"]}, 5)
    # Once it is closed, repeated snapshots shrink to one window again.
    async with httpx.AsyncClient() as c:
        spec = {"account": DEMO, "remove": [old["trackingNo"]]}
        (await c.post(f"{simulator.url}/__sandbox/orders", json=spec)).raise_for_status()
    # The next still covers its range (it was listed last time), now with one empty window less.
    assert await snapshot(adapter, simulator) == (DEMO_IDS, 4)
    assert await snapshot(adapter, simulator) == (DEMO_IDS, 2)


async def test_an_order_created_after_the_last_snapshot_is_seen(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    assert await snapshot(adapter, simulator) == (DEMO_IDS, FULL)
    new = row("1170000000000000004", now_ms())
    await upsert(simulator, new)
    assert await snapshot(adapter, simulator) == ({*DEMO_IDS, new["trackingNo"]}, 2)


async def test_an_order_that_shows_up_late_within_the_margin_is_seen(
    simulator: Sim,
) -> None:
    """The margin at work: an account with no orders is covered from its last snapshot's start
    minus the margin, so an order stamped a minute before that snapshot but listed only after
    it (clock skew, listing delay) is still found."""
    a = make(simulator)
    try:
        assert await snapshot(a, simulator, "bitget-empty") == (set(), 5)
        late = row("1170000000000000005", now_ms() - 60_000)
        await upsert(simulator, late, alias="bitget-empty")
        assert await snapshot(a, simulator, "bitget-empty") == ({late["trackingNo"]}, 2)
    finally:
        await a.aclose()


async def test_after_a_failed_snapshot_the_next_walks_the_full_horizon(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    assert await snapshot(adapter, simulator) == (DEMO_IDS, FULL)
    assert await snapshot(adapter, simulator) == (DEMO_IDS, 2)
    await simulator.fault(fail_next=3, status=503)
    with pytest.raises(ExchangeUnavailable):
        await snapshot(adapter, simulator)
    assert await snapshot(adapter, simulator) == (DEMO_IDS, FULL)
    assert await snapshot(adapter, simulator) == (DEMO_IDS, 2)


async def test_another_scope_walks_the_full_horizon(adapter: BitgetAdapter, simulator: Sim) -> None:
    assert await snapshot(adapter, simulator) == (DEMO_IDS, FULL)
    btc = {r["trackingNo"] for r in sim.DEMO_ROWS[DEMO] if r["symbol"] == "BTCUSDT"}
    assert await snapshot(adapter, simulator, symbol="BTCUSDT") == (btc, FULL)
    trader = {"trader_id": "4192835710"}
    assert await snapshot(adapter, simulator, **trader) == (DEMO_IDS, FULL)
    assert await snapshot(adapter, simulator, product_type="COIN-FUTURES") == (set(), 5)
    # Each scope has its own memory now.
    assert await snapshot(adapter, simulator, symbol="btcusdt") == (btc, 2)
    assert await snapshot(adapter, simulator, **trader) == (DEMO_IDS, 2)
    assert await snapshot(adapter, simulator) == (DEMO_IDS, 2)


async def test_every_nth_snapshot_walks_the_full_horizon_and_finds_what_the_range_missed(
    simulator: Sim,
) -> None:
    """An order whose openTime lies before the covered range can only appear if the argument's
    assumptions failed (here: the simulator back-dates it a month); the periodic full check is
    what finds it."""
    a = make(simulator, full_scan_every=3)
    try:
        assert await snapshot(a, simulator) == (DEMO_IDS, FULL)
        backdated = row("1170000000000000006", now_ms() - 30 * DAY_MS)
        await upsert(simulator, backdated)
        assert await snapshot(a, simulator) == (DEMO_IDS, 2)
        assert await snapshot(a, simulator) == (DEMO_IDS, 2)
        assert await snapshot(a, simulator) == ({*DEMO_IDS, backdated["trackingNo"]}, FULL)
        assert await snapshot(a, simulator) == ({*DEMO_IDS, backdated["trackingNo"]}, 2)
    finally:
        await a.aclose()


async def test_full_scan_every_1_turns_it_off(simulator: Sim) -> None:
    a = make(simulator, full_scan_every=1)
    try:
        for _ in range(3):
            assert await snapshot(a, simulator) == (DEMO_IDS, FULL)
    finally:
        await a.aclose()


async def test_a_repeated_snapshot_asks_from_the_oldest_listed_order_minus_the_margin() -> None:
    """The exact window, seen by a mock Bitget that filters on openTime like the real one."""
    server_now = 1_800_000_000_000
    opened = [server_now - 3 * DAY_MS, server_now - 2 * DAY_MS, server_now - DAY_MS]
    windows: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v2/public/time":
            data: Any = {"serverTime": str(server_now)}
        elif path == "/api/v2/mix/market/contracts":
            data = []
        else:
            start, end = int(request.url.params["startTime"]), int(request.url.params["endTime"])
            windows.append((start, end))
            data = [
                {**sim.DEMO_ROWS[DEMO][0], "trackingNo": str(9000 + i), "openTime": str(t)}
                for i, t in enumerate(opened)
                if start <= t <= end and "idLessThan" not in request.url.params
            ]
        return httpx.Response(200, json={"code": "00000", "msg": "success", "data": data})

    http = BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    a = BitgetAdapter(*settings("http://127.0.0.1:9", bitget_history_days=365), http=http)
    deadline = asyncio.get_running_loop().time() + 30
    try:
        first = await a.fetch_open_orders(account(DEMO), query(DEMO), deadline=deadline)
        assert (len(first.orders), first.calls) == (3, 6)
        assert min(start for start, _ in windows) <= windows[0][1] - 365 * DAY_MS
        windows.clear()
        second = await a.fetch_open_orders(account(DEMO), query(DEMO), deadline=deadline)
    finally:
        await a.aclose()
    assert (len(second.orders), second.calls) == (3, 2)
    assert [start for start, _ in windows] == [opened[0] - MARGIN_MS] * 2
    assert all(end >= server_now for _, end in windows)


# --- the memory itself (pure) ----------------------------------------------------------------

NOW = 1_800_000_000_000
HORIZON = NOW - 365 * DAY_MS


def memory(
    *, full_every: int = 60, interval_ms: int = 600_000, capacity: int = 10_000
) -> ScopeMemory:
    return ScopeMemory(
        margin_ms=MARGIN_MS, full_every=full_every, full_interval_ms=interval_ms, capacity=capacity
    )


def test_scope_is_the_key_and_the_filters_without_holding_the_key() -> None:
    demo = account(DEMO)
    key = scope_key(demo, "USDT-FUTURES", None, None)
    assert key == scope_key(account(DEMO), "USDT-FUTURES", None, None)
    assert len(key) == 16 and demo.api_key.reveal().encode() not in key
    others = {
        scope_key(demo, "COIN-FUTURES", None, None),
        scope_key(demo, "USDT-FUTURES", "BTCUSDT", None),
        scope_key(demo, "USDT-FUTURES", None, "1"),
        scope_key(account("bitget-1"), "USDT-FUTURES", None, None),
    }
    assert len(others) == 4 and key not in others


def test_plan_covers_from_the_oldest_listed_or_the_last_start() -> None:
    m = memory()
    first = m.plan(b"s", now_ms=NOW, horizon_ms=HORIZON)
    assert (first.full, first.start_ms) == (True, HORIZON)
    m.complete(first, now_ms=NOW, created_ms=[NOW - DAY_MS, NOW - 5 * DAY_MS])
    later = NOW + 5_000
    second = m.plan(b"s", now_ms=later, horizon_ms=later - 365 * DAY_MS)
    assert (second.full, second.start_ms) == (False, NOW - 5 * DAY_MS - MARGIN_MS)
    m.complete(second, now_ms=later, created_ms=[])  # nothing open any more
    third = m.plan(b"s", now_ms=later + 5_000, horizon_ms=HORIZON)
    assert (third.full, third.start_ms) == (False, later - MARGIN_MS)


def test_a_range_reaching_the_horizon_is_the_full_horizon() -> None:
    m = memory()
    m.complete(m.plan(b"s", now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[HORIZON])
    plan = m.plan(b"s", now_ms=NOW + 1, horizon_ms=HORIZON + 1)
    assert (plan.full, plan.start_ms) == (True, HORIZON + 1)


def test_a_row_without_a_creation_time_makes_the_next_snapshot_full() -> None:
    m = memory()
    m.complete(m.plan(b"s", now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[NOW, None])
    assert m.plan(b"s", now_ms=NOW + 1, horizon_ms=HORIZON).full


def test_the_full_horizon_every_n_snapshots_and_every_interval() -> None:
    m = memory(full_every=3, interval_ms=60_000)
    fulls = []
    for i in range(7):
        plan = m.plan(b"s", now_ms=NOW + i, horizon_ms=HORIZON)
        fulls.append(plan.full)
        m.complete(plan, now_ms=NOW + i, created_ms=[NOW - DAY_MS])
    assert fulls == [True, False, False, True, False, False, True]
    # By time: the last full one (NOW + 6) is a minute old.
    assert not m.plan(b"s", now_ms=NOW + 6 + 59_999, horizon_ms=HORIZON).full
    assert m.plan(b"s", now_ms=NOW + 6 + 60_000, horizon_ms=HORIZON).full


def test_a_failure_wins_over_a_snapshot_that_started_before_it() -> None:
    m = memory()
    m.complete(m.plan(b"s", now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[NOW])
    slow = m.plan(b"s", now_ms=NOW + 1, horizon_ms=HORIZON)  # incremental, still walking
    assert not slow.full
    m.failed(b"s")  # a concurrent snapshot of the scope failed
    m.complete(slow, now_ms=NOW + 1, created_ms=[NOW])  # finishes after the failure
    after = m.plan(b"s", now_ms=NOW + 2, horizon_ms=HORIZON)
    assert after.full
    m.complete(after, now_ms=NOW + 2, created_ms=[NOW])
    assert not m.plan(b"s", now_ms=NOW + 3, horizon_ms=HORIZON).full


def test_memory_is_bounded_least_recently_used_first_out() -> None:
    m = memory(capacity=2)
    for scope in (b"a", b"b"):
        m.complete(m.plan(scope, now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[])
    assert not m.plan(b"a", now_ms=NOW, horizon_ms=HORIZON).full  # "a" is now the most recent
    m.complete(m.plan(b"c", now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[])
    assert len(m) == 2
    assert m.plan(b"b", now_ms=NOW, horizon_ms=HORIZON).full  # forgotten
    assert not m.plan(b"a", now_ms=NOW, horizon_ms=HORIZON).full
    off = memory(capacity=0)
    off.complete(off.plan(b"a", now_ms=NOW, horizon_ms=HORIZON), now_ms=NOW, created_ms=[])
    assert len(off) == 0 and off.plan(b"a", now_ms=NOW, horizon_ms=HORIZON).full
