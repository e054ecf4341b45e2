"""AscendexAdapter against the in-process AscendEX simulator (127.0.0.1, port 0, no Kafka).

Synchronization waits on the simulator's counters (``SimState.wait_for``) with timeouts; no test
sleeps in place of an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.client import connect

from connector import metrics
from connector.account import Account
from connector.errors import AuthFailed, ExchangeRejected, ExchangeTimeout, RateLimited
from connector.exchanges.ascendex import AscendexAdapter, create_adapter
from connector.exchanges.ascendex.auth import SignKey, ws_auth_message
from connector.exchanges.ascendex.config import AscendexSettings
from connector.exchanges.ascendex.simulator import SimState, create_app, demo_accounts, get_state
from connector.model import OrderQuery, OrderStatus, now_ms
from connector.secrets import Secret
from connector.settings import Settings

WAIT = 5.0


@dataclass
class Sim:
    app: web.Application
    base: str
    ws_base: str

    @property
    def state(self) -> SimState:
        return get_state(self.app)

    def faults(self, **faults: Any) -> None:
        # Same effect as POST /__sandbox/faults, applied in-process.
        for name, value in faults.items():
            setattr(self.state.faults, name, value)
        self.state._wake_sessions()


@contextlib.asynccontextmanager
async def running_sim() -> AsyncIterator[Sim]:
    """The simulator on 127.0.0.1, any free port, for the duration of the block."""
    app = create_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield Sim(app, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


AdapterFactory = Callable[..., AscendexAdapter]


@contextlib.asynccontextmanager
async def adapter_factory(sim: Sim) -> AsyncIterator[AdapterFactory]:
    """Adapters pointed at ``sim`` with fast retries; all closed at the end of the block."""
    made: list[AscendexAdapter] = []

    def factory(**overrides: Any) -> AscendexAdapter:
        settings = Settings(
            request_timeout_s=overrides.pop("request_timeout_s", 3.0),
            max_attempts=overrides.pop("max_attempts", 3),
            retry_backoff_s=overrides.pop("retry_backoff_s", 0.01),
            ws_ping_interval_s=overrides.pop("ws_ping_interval_s", 60.0),
            **overrides,
        )
        adapter = create_adapter(settings, AscendexSettings(rest_url=sim.base, ws_url=sim.ws_base))
        made.append(adapter)
        return adapter

    try:
        yield factory
    finally:
        for adapter in made:
            await adapter.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with running_sim() as running:
        yield running


@pytest.fixture
async def make_adapter(sim: Sim) -> AsyncIterator[AdapterFactory]:
    async with adapter_factory(sim) as factory:
        yield factory


def account(alias: str, **options: str) -> Account:
    entry = demo_accounts()[alias]
    return Account(
        alias=alias,
        exchange="ascendex",
        api_key=Secret(entry["api_key"]),
        api_secret=Secret(entry["api_secret"]),
        options={**entry.get("options", {}), **options},
    )


def query(alias: str, symbol: str | None = None) -> OrderQuery:
    return OrderQuery(request_id="req-1", exchange="ascendex", account=alias, symbol=symbol)


def deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_demo_all_symbols(sim: Sim, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter()
    result = await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    by_id = {o.order_id: o for o in result.orders}
    assert len(result.orders) == 5
    assert {o.symbol for o in result.orders} == {"BTC-PERP", "ETH-PERP"}
    assert {o.status for o in result.orders} >= {
        OrderStatus.ACK,
        OrderStatus.PENDING_NEW,
        OrderStatus.PARTIALLY_FILLED,
    }
    ack = by_id["r1782f1a90c1U3792951278sethpAckQ"]
    assert ack.price == Decimal("3900.25")  # sent as orderPrice
    assert ack.unified_symbol == "ETH/USDT:USDT"
    # exchange_calls is the WS request only: account info and contracts are shared metadata.
    assert result.calls == 1

    again = await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert again.calls == 1  # the same, and the socket is reused
    assert sim.state.stats["connections"] == 1
    assert sim.state.stats["rest_info_calls"] == 1


async def test_demo_symbol_filter(sim: Sim, make_adapter: AdapterFactory) -> None:
    result = await make_adapter().fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo", "BTC-PERP"), deadline=deadline()
    )
    assert len(result.orders) == 2
    assert {o.symbol for o in result.orders} == {"BTC-PERP"}
    assert {o.unified_symbol for o in result.orders} == {"BTC/USDT:USDT"}


async def test_empty_account(sim: Sim, make_adapter: AdapterFactory) -> None:
    result = await make_adapter().fetch_open_orders(
        account("ascendex-empty"), query("ascendex-empty"), deadline=deadline()
    )
    assert result.orders == []
    assert result.calls == 1


async def test_badkey_is_auth_failed(sim: Sim, make_adapter: AdapterFactory) -> None:
    with pytest.raises(AuthFailed) as info:
        await make_adapter().fetch_open_orders(
            account("ascendex-badkey"), query("ascendex-badkey"), deadline=deadline()
        )
    assert info.value.exchange_code == "200001"
    assert info.value.attempts == 1  # not retried
    assert sim.state.stats["rest_auth_failed"] == 1


async def test_wrong_ws_sign_key_fails_websocket_auth(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    # REST passes (it always signs with the raw secret); the simulator, like the live exchange,
    # accepts only base64-decoded-key WebSocket signatures, so raw mode must be refused.
    with pytest.raises(AuthFailed) as info:
        await make_adapter().fetch_open_orders(
            account("ascendex-demo", ws_sign_key="raw"),
            query("ascendex-demo"),
            deadline=deadline(),
        )
    assert info.value.exchange_code == "200001"
    assert sim.state.stats["ws_auth_failed"] == 1
    assert sim.state.stats["auth_ok"] == 0


async def test_raw_mode_accepted_when_exchange_uses_it(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    sim.state.accounts["ascendex-demo"].ws_sign_key = "raw"
    result = await make_adapter().fetch_open_orders(
        account("ascendex-demo", ws_sign_key="raw"), query("ascendex-demo"), deadline=deadline()
    )
    assert len(result.orders) == 5
    assert sim.state.stats["auth_ok"] == 1


async def test_dropped_socket_is_retried_on_a_new_connection(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    reconnects = metrics.WS_RECONNECTS.labels("ascendex")
    before = reconnects._value.get()
    sim.faults(drop_next_requests=1)
    result = await make_adapter().fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert len(result.orders) == 5
    stats = sim.state.stats
    assert stats["dropped"] == 1
    assert stats["connections"] == 2
    assert stats["auth_ok"] == 2
    assert stats["requests"] == 2
    assert reconnects._value.get() == before + 1
    assert result.calls == 2  # the dropped request + the retried one


async def test_concurrent_fetches_share_one_socket(sim: Sim, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter()
    sim.faults(delay_ms=100)
    results = await asyncio.gather(
        *(
            adapter.fetch_open_orders(
                account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
            )
            for _ in range(20)
        )
    )
    assert all(len(r.orders) == 5 for r in results)
    stats = sim.state.stats
    assert stats["connections"] == 1
    assert stats["auth_ok"] == 1
    assert stats["requests"] == 20
    assert stats["max_in_flight_requests"] > 1  # they really overlapped on that one socket
    assert stats["rest_info_calls"] == 1 and stats["rest_contract_calls"] == 1


async def test_server_pings_are_answered(sim: Sim, make_adapter: AdapterFactory) -> None:
    sim.faults(ping_interval_s=0.1)
    adapter = make_adapter(ws_ping_interval_s=60.0)  # only pongs can keep this session alive
    await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    await sim.state.wait_for(lambda s: s.stats["pongs_received"] >= 6, WAIT)
    assert sim.state.stats["disconnects_for_missed_pings"] == 0
    assert sim.state.stats["client_pings"] == 0
    await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert sim.state.stats["connections"] == 1


async def test_client_ignoring_pings_is_disconnected_after_two(sim: Sim) -> None:
    sim.faults(ping_interval_s=0.1)
    acct = account("ascendex-demo")
    received: list[dict[str, Any]] = []
    async with connect(f"{sim.ws_base}/7/api/pro/v2/stream") as ws:
        received.append(json.loads(await ws.recv()))
        auth = ws_auth_message(
            acct.api_key.reveal(), acct.api_secret.reveal(), now_ms(), "a1", SignKey.RAW
        )
        await ws.send(json.dumps(auth))
        async with asyncio.timeout(WAIT):
            async for frame in ws:  # never answers: ends when the server closes the socket
                received.append(json.loads(frame))
    kinds = [m.get("m") for m in received]
    assert kinds[:2] == ["connected", "auth"]
    assert kinds.count("ping") == 2
    assert kinds[-1] == "disconnected"
    assert received[-1]["code"] == 100005
    assert "missing pong" in received[-1]["info"]
    assert sim.state.stats["disconnects_for_missed_pings"] == 1


async def test_adapter_kicked_for_missed_pongs_reconnects(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter()
    await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    sim.faults(ping_interval_s=0.05, ignore_pongs=True)
    await sim.state.wait_for(lambda s: s.stats["disconnects_for_missed_pings"] == 1, WAIT)
    sim.faults(ping_interval_s=60.0, ignore_pongs=False)
    result = await adapter.fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert len(result.orders) == 5
    assert sim.state.stats["connections"] == 2


async def test_unknown_symbol_is_rejected_with_exchange_code(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    with pytest.raises(ExchangeRejected) as info:
        await make_adapter().fetch_open_orders(
            account("ascendex-demo"), query("ascendex-demo", "FOO-PERP"), deadline=deadline()
        )
    assert info.value.exchange_code == "100008"
    assert "SYMBOL_ERROR" in str(info.value)
    assert info.value.attempts == 1
    assert sim.state.stats["requests"] == 1


async def test_rest_5xx_is_retried(sim: Sim, make_adapter: AdapterFactory) -> None:
    sim.faults(rest_errors_next=1)
    result = await make_adapter().fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert len(result.orders) == 5
    assert result.calls == 1  # the retried account lookup is metadata, not this command's work
    assert sim.state.stats["rest_info_calls"] == 2


async def test_throttling_is_retried_until_the_deadline(
    sim: Sim, make_adapter: AdapterFactory
) -> None:
    # HTTP 429 does not use up max_attempts: it is retried with backoff while time is left...
    sim.faults(rate_limit_next=4)
    result = await make_adapter(max_attempts=2).fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    assert len(result.orders) == 5
    assert sim.state.stats["rest_info_calls"] == 5
    # ...and ends as RATE_LIMITED, keeping the status, when the deadline comes first.
    sim.faults(rate_limit_next=10_000)
    loop = asyncio.get_running_loop()
    until = deadline(1.0)
    with pytest.raises(RateLimited) as info:
        await make_adapter(max_attempts=2).fetch_open_orders(
            account("ascendex-empty"), query("ascendex-empty"), deadline=until
        )
    assert loop.time() <= until
    assert info.value.exchange_code == "429"
    assert info.value.attempts > 2


async def test_deadline_raises_exchange_timeout(sim: Sim, make_adapter: AdapterFactory) -> None:
    sim.faults(delay_ms=5000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ExchangeTimeout):
        await make_adapter().fetch_open_orders(
            account("ascendex-demo"), query("ascendex-demo"), deadline=deadline(0.5)
        )
    assert loop.time() - started < 2.0


async def test_expired_deadline_sends_nothing(sim: Sim, make_adapter: AdapterFactory) -> None:
    with pytest.raises(ExchangeTimeout):
        await make_adapter().fetch_open_orders(
            account("ascendex-demo"), query("ascendex-demo"), deadline=deadline(-1)
        )
    assert sim.state.stats["rest_info_calls"] == 0


async def test_simulator_protocol_errors(sim: Sim) -> None:
    acct = account("ascendex-demo")
    async with connect(f"{sim.ws_base}/7/api/pro/v2/stream") as ws:

        async def send(payload: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(payload))
            async with asyncio.timeout(WAIT):
                return dict(json.loads(await ws.recv()))

        assert json.loads(await ws.recv()) == {"m": "connected", "type": "unauth"}
        before_auth = await send(
            {"op": "req", "id": "r0", "action": "futures-open-orders", "args": {}}
        )
        assert before_auth["m"] == "error" and before_auth["id"] == "r0"
        assert (before_auth["code"], before_auth["reason"]) == (100009, "AUTHORIZATION_NEEDED")

        bad = ws_auth_message(acct.api_key.reveal(), "x" * 64, now_ms(), "a0", SignKey.RAW)
        refused = await send(bad)
        assert refused["m"] == "auth" and refused["code"] == 200001 and refused["id"] == "a0"

        good = ws_auth_message(
            acct.api_key.reveal(), acct.api_secret.reveal(), now_ms(), "a1", SignKey.BASE64
        )
        assert await send(good) == {"m": "auth", "id": "a1", "code": 0}

        missing_args = await send({"op": "req", "id": "r1", "action": "futures-open-orders"})
        assert missing_args == {
            "m": "error",
            "id": "r1",
            "code": 100005,
            "reason": "INVALID_WS_REQUEST_DATA",
            "info": "Missing required parameter: args",
        }
        pong = await send({"op": "ping"})
        assert pong["m"] == "pong" and pong["code"] == 0
        reply = await send(
            {
                "op": "req",
                "id": "r2",
                "action": "futures-open-orders",
                "args": {"symbol": "ETH-PERP"},
            }
        )
        assert reply["m"] == "futures-open-orders" and reply["id"] == "r2"
        assert reply["ac"] == "FUTURES" and len(reply["data"]) == 3


async def test_control_api_over_http(sim: Sim) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=sim.base) as client:
        response = await client.post("/__sandbox/faults", json={"drop_next_requests": 2})
        assert response.status_code == 200
        assert sim.state.faults.drop_next_requests == 2
        assert (await client.post("/__sandbox/faults", json={"nope": 1})).status_code == 400
        stats = (await client.get("/__sandbox/stats")).json()
        assert stats["connections"] == 0 and "disconnects_for_missed_pings" in stats
        assert (await client.post("/__sandbox/reset")).status_code == 200
        assert sim.state.faults.drop_next_requests == 0
        contracts = (await client.get("/api/pro/v2/futures/contract")).json()
        assert {c["symbol"] for c in contracts["data"]} >= {"BTC-PERP", "ETH-PERP"}
        unsigned = (await client.get("/api/pro/v1/info")).json()
        assert unsigned["code"] == 100009


def test_orders_file_overrides_defaults(tmp_path: Path) -> None:
    orders_file = tmp_path / "orders.yaml"
    orders_file.write_text(
        "ascendex-empty:\n"
        "  - {orderId: o-1, symbol: BTC-PERP, side: Buy, orderType: Limit, status: New,\n"
        "     price: 1.5, orderQty: 2, time: 1615696544843}\n"
        "bitget-follower: [{trackingNo: '1'}]\n",  # another simulator's alias: ignored
        encoding="utf-8",
    )
    state = get_state(create_app(orders_file=str(orders_file)))
    [row] = state.accounts["ascendex-empty"].orders
    assert row["price"] == "1.5" and row["orderQty"] == "2"  # decimals as strings, like AscendEX
    assert row["time"] == 1615696544843
    assert len(state.accounts["ascendex-demo"].orders) == 5  # untouched alias keeps defaults
