"""The adapter against the in-process Bitget simulator (127.0.0.1, ephemeral port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from connector.account import Account
from connector.commands import RawCommand, validate_command
from connector.errors import (
    AuthFailed,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidCommand,
    MalformedResponse,
    RateLimited,
    SnapshotIncomplete,
    SnapshotTooLarge,
)
from connector.exchanges.bitget import BitgetAdapter, create_adapter
from connector.exchanges.bitget import simulator as sim
from connector.exchanges.bitget.config import BitgetOptions, BitgetSettings
from connector.exchanges.bitget.http import BitgetHttpClient
from connector.model import FetchResult, OrderQuery, OrderStatus, Side
from connector.secrets import Secret
from connector.settings import Settings


@dataclass
class Sim:
    url: str
    app: web.Application

    async def fault(self, **spec: Any) -> None:
        async with httpx.AsyncClient() as c:
            (await c.post(f"{self.url}/__sandbox/faults", json=spec)).raise_for_status()

    async def config(self, **spec: Any) -> None:
        async with httpx.AsyncClient() as c:
            (await c.post(f"{self.url}/__sandbox/config", json=spec)).raise_for_status()

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as c:
            response = await c.get(f"{self.url}/__sandbox/stats")
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result


async def _start(orders_file: str | None = None) -> tuple[Sim, web.AppRunner]:
    app = sim.create_app(orders_file=orders_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Sim(f"http://127.0.0.1:{port}", app), runner


@pytest.fixture
async def simulator() -> AsyncIterator[Sim]:
    s, runner = await _start()
    try:
        yield s
    finally:
        await runner.cleanup()


def settings(url: str, **overrides: Any) -> tuple[Settings, BitgetSettings]:
    values: dict[str, Any] = {
        "retry_backoff_s": 0.01,
        "request_timeout_s": 5.0,
        "max_attempts": 3,
        # One 89-day window keeps these tests to one request per page; the window walk has
        # its own tests.
        "bitget_history_days": 89,
    }
    values.update(overrides)
    venue = {
        k.removeprefix("bitget_"): values.pop(k) for k in list(values) if k.startswith("bitget_")
    }
    return Settings(**values), BitgetSettings(rest_url=url, **venue)


@pytest.fixture
async def adapter(simulator: Sim) -> AsyncIterator[BitgetAdapter]:
    a = create_adapter(*settings(simulator.url))
    try:
        yield a
    finally:
        await a.aclose()


def account(alias: str) -> Account:
    creds = sim.demo_accounts()[alias]
    return Account(
        alias=alias,
        exchange="bitget",
        api_key=Secret(creds["api_key"]),
        api_secret=Secret(creds["api_secret"]),
        passphrase=Secret(creds["passphrase"]),
    )


def query(alias: str, symbol: str | None = None, **options: Any) -> OrderQuery:
    return OrderQuery(
        request_id="r-1",
        exchange="bitget",
        account=alias,
        symbol=symbol,
        options=BitgetOptions(**options),
    )


async def fetch(a: BitgetAdapter, alias: str, budget_s: float = 30.0, **kw: Any) -> FetchResult:
    deadline = asyncio.get_running_loop().time() + budget_s
    return await a.fetch_open_orders(account(alias), query(alias, **kw), deadline=deadline)


@pytest.mark.parametrize(
    ("alias", "rows", "pages"),
    [
        # Pages with rows, then the empty page that proves the end (endId "" is not relied on).
        ("bitget-empty", 0, 1),
        ("bitget-1", 1, 2),
        ("bitget-50", 50, 2),
        ("bitget-51", 51, 3),
        ("bitget-120", 120, 4),
    ],
)
async def test_pages_to_the_end(
    adapter: BitgetAdapter, simulator: Sim, alias: str, rows: int, pages: int
) -> None:
    result = await fetch(adapter, alias)
    ids = [o.order_id for o in result.orders]
    assert len(ids) == rows
    assert len(set(ids)) == rows
    assert set(ids) == {r["trackingNo"] for r in sim.DEMO_ROWS[alias]}
    assert result.calls == pages
    assert (await simulator.stats())["by_account"].get(alias, {}).get("requests") == pages


async def test_demo_account_normalized(adapter: BitgetAdapter) -> None:
    result = await fetch(adapter, "bitget-demo")
    by_id = {o.order_id: o for o in result.orders}
    assert len(by_id) == 3
    first = by_id["1170000000000000001"]
    assert first.unified_symbol == "BTC/USDT:USDT"
    assert first.product_type == "USDT-FUTURES"
    assert first.side is Side.BUY and first.status is OrderStatus.NEW
    assert first.fee_asset == "USDT"
    second = by_id["1170000000000000002"]  # uses the docs' "openPriceAvg" spelling
    assert second.side is Side.SELL and second.price == Decimal("3512.40")
    third = by_id["1170000000000000003"]  # partly closed
    assert third.status is OrderStatus.PARTIALLY_FILLED
    assert third.remaining_quantity == Decimal("0.015")
    assert third.copy_trading is not None and third.copy_trading.close_time is not None


async def test_symbol_and_trader_filters(adapter: BitgetAdapter) -> None:
    only_eth = await fetch(adapter, "bitget-demo", symbol="ethusdt")
    assert [o.symbol for o in only_eth.orders] == ["ETHUSDT"]
    one_trader = await fetch(adapter, "bitget-120", trader_id="5307719246")
    assert len(one_trader.orders) == 60
    assert one_trader.calls == 3
    assert {o.copy_trading.trader_id for o in one_trader.orders if o.copy_trading} == {"5307719246"}


async def test_product_type_validation_sends_nothing(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    # Bitget's options model rejects it while the command is validated, before any request.
    with pytest.raises(InvalidCommand, match="product_type must be one of"):
        validate_command(RawCommand({"request_id": "r", "exchange": "bitget", "account": "a",
                                     "product_type": "SPOT"}))  # fmt: skip
    assert (await simulator.stats())["requests"] == 0
    # Case-insensitive like Bitget; no COIN-FUTURES rows on the demo account.
    result = await fetch(adapter, "bitget-demo", product_type="coin-futures")
    assert result.orders == [] and result.calls == 1


async def test_coin_futures_from_an_orders_file(tmp_path: Path) -> None:
    row = {
        "trackingNo": "9001",
        "traderId": "1",
        "traderName": "coin",
        "openOrderId": "2",
        "closeOrderId": "",
        "symbol": "BTCUSD",
        "posSide": "short",
        "openLeverage": "5",
        "openAvgPrice": "60000",
        "openTime": str(sim._NOW0 - 3_600_000),
        "openSize": "1",
        "closeAvgPrice": "0",
        "closeSize": "0",
        "openMarginSz": "0.0003",
        "openFee": "-0.00001",
        "closeTime": "0",
    }
    orders_file = tmp_path / "orders.yaml"
    orders_file.write_text(yaml.safe_dump({"bitget-demo": [row], "ascendex-demo": []}))
    s, runner = await _start(str(orders_file))
    a = create_adapter(*settings(s.url))
    try:
        assert (await fetch(a, "bitget-demo")).orders == []  # USDT-FUTURES: nothing
        result = await fetch(a, "bitget-demo", product_type="COIN-FUTURES")
    finally:
        await a.aclose()
        await runner.cleanup()
    (order,) = result.orders
    assert order.unified_symbol == "BTC/USD:BTC"
    assert order.fee_asset == "BTC"
    assert order.fee == Decimal("0.00001")  # paid by the account: positive
    assert order.product_type == "COIN-FUTURES"


async def test_thirty_concurrent_fetches_never_trip_the_rate_limit(simulator: Sim) -> None:
    # 20/s on both sides keeps this quick; 5/s is the integration test.
    await simulator.config(rate_limit=20)
    adapter = create_adapter(*settings(simulator.url, bitget_rate_limit_per_s=20))
    try:
        results = await asyncio.gather(*(fetch(adapter, "bitget-demo") for _ in range(30)))
    finally:
        await adapter.aclose()
    assert all(len(r.orders) == 3 for r in results)
    stats = await simulator.stats()
    assert stats["rate_limit_violations"] == 0
    assert stats["by_account"]["bitget-demo"]["requests"] == 60  # a page + the empty one


async def test_wrong_passphrase_is_auth_failed_with_bitgets_code(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    with pytest.raises(AuthFailed) as info:
        await fetch(adapter, "bitget-badpass")
    assert info.value.exchange_code == "40012"
    assert "apikey/password is incorrect" in info.value.message
    # Not retried: a wrong passphrase stays wrong.
    assert (await simulator.stats())["by_account"]["bitget-badpass"]["requests"] == 1


async def test_wrong_secret_and_unknown_key(adapter: BitgetAdapter) -> None:
    good = account("bitget-demo")
    bad_secret = Account(
        alias="x",
        exchange="bitget",
        api_key=good.api_key,
        api_secret=Secret("not-the-secret"),
        passphrase=good.passphrase,
    )
    deadline = asyncio.get_running_loop().time() + 10
    with pytest.raises(AuthFailed) as info:
        await adapter.fetch_open_orders(bad_secret, query("x"), deadline=deadline)
    assert info.value.exchange_code == "40009"
    unknown = Account(
        alias="y",
        exchange="bitget",
        api_key=Secret("bg_00000000000000000000000000000000"),
        api_secret=Secret("s" * 64),
        passphrase=Secret("whatever1"),
    )
    with pytest.raises(AuthFailed) as info:
        await adapter.fetch_open_orders(unknown, query("y"), deadline=deadline)
    assert info.value.exchange_code == "40037"


async def test_a_5xx_page_mid_way_is_retried_and_the_snapshot_is_complete(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.fault(fail_on_page=2, times=1, status=503)
    result = await fetch(adapter, "bitget-120")
    assert len({o.order_id for o in result.orders}) == 120
    assert len(result.orders) == 120
    assert result.calls == 5  # 3 pages + the empty 4th + the retried one


async def test_persistent_5xx_fails_after_max_attempts(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.fault(fail_next=10, status=503)
    with pytest.raises(ExchangeUnavailable) as info:
        await fetch(adapter, "bitget-demo")
    assert info.value.attempts == 3


async def test_exchange_throttling_backs_off_then_fails_as_rate_limited(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.fault(fail_next=1, status=429)
    assert len((await fetch(adapter, "bitget-demo")).orders) == 3
    # Throttling is retried until the deadline, not given up after max_attempts (3 here).
    await simulator.fault(fail_next=6, status=429)
    result = await fetch(adapter, "bitget-demo")
    assert (len(result.orders), result.calls) == (3, 8)
    # Throttled for longer than the command's budget: RATE_LIMITED, within the deadline.
    await simulator.fault(fail_next=10_000, status=429)
    with pytest.raises(RateLimited) as info:
        await fetch(adapter, "bitget-demo", budget_s=1.0)
    assert info.value.exchange_code == "429"
    assert info.value.attempts > 3


async def test_unreadable_body_is_retried(adapter: BitgetAdapter, simulator: Sim) -> None:
    await simulator.fault(malformed_next=1)
    result = await fetch(adapter, "bitget-demo")
    assert len(result.orders) == 3
    assert result.calls == 3


async def test_clock_skew_is_measured_before_signing(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.fault(clock_skew_ms=45_000)
    result = await fetch(adapter, "bitget-demo")
    assert len(result.orders) == 3
    assert result.calls == 2
    offset = adapter.http.clock_offset_ms
    assert offset is not None and abs(offset - 45_000) < 2_000


async def test_timestamp_expired_resyncs_and_retries_once(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await fetch(adapter, "bitget-demo")  # synced with no skew
    await simulator.fault(clock_skew_ms=-45_000)
    result = await fetch(adapter, "bitget-demo")
    assert len(result.orders) == 3
    assert result.calls == 3  # the 40008 answer + the re-signed request + the empty page
    offset = adapter.http.clock_offset_ms
    assert offset is not None and abs(offset + 45_000) < 2_000


async def test_deadline_passes_while_exchange_is_slow(
    adapter: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.fault(delay_ms=400)
    with pytest.raises(ExchangeTimeout):
        await fetch(adapter, "bitget-demo", budget_s=0.3)


async def test_page_cap_fails_clearly(simulator: Sim) -> None:
    a = create_adapter(*settings(simulator.url, bitget_max_pages=3))
    try:
        with pytest.raises(SnapshotTooLarge, match="CONNECTOR_BITGET_MAX_PAGES"):
            await fetch(a, "bitget-120")
        assert len((await fetch(a, "bitget-51")).orders) == 51  # 3 pages is fine
    finally:
        await a.aclose()


async def test_rows_shifting_between_pages_are_deduplicated() -> None:
    """Offset paging over a live set: a row pushed from page 1 to page 2 appears twice."""
    rows = sim.DEMO_ROWS["bitget-120"]
    pages = {1: rows[0:50], 2: rows[49:99], 3: rows[99:110]}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        if path == "/api/v2/mix/market/contracts":
            return httpx.Response(200, json={"code": "00000", "data": []})
        page = pages.get(int(request.url.params["pageNo"]), [])
        return httpx.Response(200, json={"code": "00000", "msg": "success", "data": page})

    http = BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    a = BitgetAdapter(*settings("http://127.0.0.1:9"), http=http)
    try:
        result = await fetch(a, "bitget-120")
    finally:
        await a.aclose()
    ids = [o.order_id for o in result.orders]
    assert len(ids) == len(set(ids)) == 110
    assert result.calls == 4  # a short page is not the end: page 4 is empty
    assert all(o.unified_symbol is None for o in result.orders)  # symbol not listed: null


async def test_a_malformed_row_fails_the_snapshot(tmp_path: Path) -> None:
    orders_file = tmp_path / "orders.yaml"
    orders_file.write_text(
        yaml.safe_dump({"bitget-demo": [{"trackingNo": "1", "symbol": "BTCUSDT", "posSide": "up"}]})
    )
    s, runner = await _start(str(orders_file))
    a = create_adapter(*settings(s.url))
    try:
        with pytest.raises(MalformedResponse, match="posSide"):
            await fetch(a, "bitget-demo")
    finally:
        await a.aclose()
        await runner.cleanup()


# --- completeness against every documented version (docs/bitget.md) --------------------------


@pytest.fixture
async def fast(simulator: Sim) -> AsyncIterator[BitgetAdapter]:
    """Rate limits out of the way (100/s on both sides) and the default 365-day horizon."""
    await simulator.config(rate_limit=100)
    a = create_adapter(
        *settings(simulator.url, bitget_rate_limit_per_s=100, bitget_history_days=365)
    )
    try:
        yield a
    finally:
        await a.aclose()


@pytest.mark.parametrize(
    ("version", "calls"),
    [
        # 3 pages (50, 50, 37) + an empty page 4; windows 2-5 each answer page 1 again (the
        # reference version has no time filter): nothing new there ends each window.
        ("reference", 8),
        # 3 pages + the empty 4th (a list has no endId), then 4 empty windows.
        ("current-list", 8),
        # the same: endId "" on the 3rd page is not taken as the end.
        ("current-object", 8),
    ],
)
async def test_137_rows_on_every_version(
    fast: BitgetAdapter, simulator: Sim, version: str, calls: int
) -> None:
    await simulator.config(version=version)
    result = await fetch(fast, "bitget-137")
    ids = [o.order_id for o in result.orders]
    assert len(ids) == len(set(ids)) == 137
    assert set(ids) == {r["trackingNo"] for r in sim.DEMO_ROWS["bitget-137"]}
    assert result.calls == calls


@pytest.mark.parametrize("version", ["current-list", "current-object"])
async def test_rows_older_than_three_months_are_walked_to(
    fast: BitgetAdapter, simulator: Sim, version: str
) -> None:
    await simulator.config(version=version)
    result = await fetch(fast, "bitget-250-old")
    assert len({o.order_id for o in result.orders}) == len(result.orders) == 250


async def test_history_refused_before_the_horizon_fails(
    fast: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.config(history_days=100)
    with pytest.raises(SnapshotIncomplete, match="cannot be proven complete") as info:
        await fetch(fast, "bitget-250-old")
    assert info.value.exchange_code == "40704"
    assert info.value.code == "EXCHANGE_REJECTED" and not info.value.retryable


@pytest.mark.parametrize(
    ("version", "ignored"),
    [("reference", ["pageSize"]), ("current-object", ["limit"]), ("current-list", ["limit"])],
)
async def test_a_server_ignoring_the_page_size_still_pages_to_the_end(
    fast: BitgetAdapter, simulator: Sim, version: str, ignored: list[str]
) -> None:
    await simulator.config(version=version, ignore_params=ignored)  # pages of 20
    result = await fetch(fast, "bitget-137")
    assert len({o.order_id for o in result.orders}) == 137


@pytest.mark.parametrize("version", ["reference", "current-list", "current-object"])
async def test_a_server_ignoring_every_paging_parameter_fails(
    fast: BitgetAdapter, simulator: Sim, version: str
) -> None:
    await simulator.config(version=version, ignore_params=["pageNo", "idLessThan"])
    with pytest.raises(SnapshotIncomplete, match="repeated page 1"):
        await fetch(fast, "bitget-137")


async def test_over_maximum_page_size_is_not_taken_for_the_end(
    fast: BitgetAdapter, simulator: Sim
) -> None:
    await simulator.config(max_limit=30)  # our limit=50 is over it: 20 rows a page
    result = await fetch(fast, "bitget-137")
    assert len({o.order_id for o in result.orders}) == 137


async def test_a_server_that_never_fills_in_end_id(fast: BitgetAdapter, simulator: Sim) -> None:
    await simulator.config(end_id="never")  # "" on every page, even the first of three
    result = await fetch(fast, "bitget-137")
    assert len({o.order_id for o in result.orders}) == 137


async def test_not_a_follower_says_so(fast: BitgetAdapter) -> None:
    with pytest.raises(ExchangeRejected, match="not a copy-trading follower") as info:
        await fetch(fast, "bitget-notfollower")
    assert info.value.exchange_code == "40017"


async def test_non_ascii_symbol(fast: BitgetAdapter) -> None:
    result = await fetch(fast, "bitget-unicode", symbol="龙虾USDT")
    assert {o.symbol for o in result.orders} == {"龙虾USDT"} and len(result.orders) == 3
    assert {o.unified_symbol for o in result.orders} == {"龙虾/USDT:USDT"}


def _mock_adapter(handler: Any) -> BitgetAdapter:
    http = BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    return BitgetAdapter(*settings("http://127.0.0.1:9"), http=http)


async def test_40010_is_sent_again_once_then_auth_failed() -> None:
    answers = iter([400, 200, 400, 400])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        if request.url.path == "/api/v2/mix/market/contracts":
            return httpx.Response(200, json={"code": "00000", "data": []})
        if next(answers) == 400:
            return httpx.Response(400, json={"code": "40010", "msg": "Request timed out"})
        return httpx.Response(200, json={"code": "00000", "data": []})

    a = _mock_adapter(handler)
    try:
        assert (await fetch(a, "bitget-demo")).calls == 2  # a timeout that passed
        with pytest.raises(AuthFailed, match="signature") as info:
            await fetch(a, "bitget-demo")
        assert info.value.exchange_code == "40010" and info.value.calls == 2
    finally:
        await a.aclose()
    assert list(answers) == []


@pytest.mark.parametrize("code", ["40009", "40506", "40507", "40036", "40038"])
async def test_signature_codes_are_auth_failed(code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        return httpx.Response(400, json={"code": code, "msg": "signature error"})

    a = _mock_adapter(handler)
    try:
        with pytest.raises(AuthFailed) as info:
            await fetch(a, "bitget-demo")
    finally:
        await a.aclose()
    assert (info.value.exchange_code, info.value.calls) == (code, 1)


async def test_an_unknown_data_shape_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        return httpx.Response(200, json={"code": "00000", "data": "twenty rows"})

    a = _mock_adapter(handler)
    try:
        with pytest.raises(MalformedResponse, match="neither a list nor"):
            await fetch(a, "bitget-demo")
    finally:
        await a.aclose()
