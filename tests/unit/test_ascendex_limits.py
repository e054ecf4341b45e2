"""AscendEX at scale, against the in-process simulator enforcing the exchange's per-IP rules:
session caps per account group, idle closing, the connection budget, bans at the upgrade,
message thresholds, clock skew, key expiry and order intent (``execInst``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connector.errors import AuthFailed, ExchangeUnavailable, RateLimited
from connector.exchanges.ascendex import AscendexAdapter, create_adapter
from connector.exchanges.ascendex.config import AscendexSettings
from connector.exchanges.ascendex.parsing import parse_exec_inst, pong_server_time_ms
from connector.exchanges.ascendex.simulator import (
    GROUP_ACCOUNT_COUNT,
    GROUP_ACCOUNT_GROUP,
    group_alias,
)
from connector.settings import Settings

from .test_ascendex_adapter import Sim, account, deadline, query, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with running_sim() as running:
        yield running


@contextlib.asynccontextmanager
async def adapter(sim: Sim, **venue: Any) -> AsyncIterator[AscendexAdapter]:
    settings = Settings(
        request_timeout_s=venue.pop("request_timeout_s", 3.0),
        max_attempts=venue.pop("max_attempts", 3),
        retry_backoff_s=venue.pop("retry_backoff_s", 0.01),
        ws_ping_interval_s=60.0,
    )
    made = create_adapter(
        settings, AscendexSettings(rest_url=sim.base, ws_url=sim.ws_base, **venue)
    )
    try:
        yield made
    finally:
        await made.aclose()


async def fetch(a: AscendexAdapter, alias: str, seconds: float = 10.0) -> Any:
    return await a.fetch_open_orders(account(alias), query(alias), deadline=deadline(seconds))


# --- order intent ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reduce_only", "post_only", "liquidation", "known"),
    [
        ("NULL_VAL", False, False, False, True),
        ("ReduceOnly", True, False, False, True),
        ("reduceOnly", True, False, False, True),  # casing is not trusted
        ("PosStopMkt", True, False, False, True),  # position TP/SL never adds exposure
        ("PostReduceMark", True, True, False, True),
        ("Post", False, True, False, True),
        ("Liquidation", False, False, True, True),
        ("OpenStopMkt", False, False, False, True),  # opens a position: adds exposure
        ("SomethingNew", False, False, False, False),  # unknown: kept, no intent assumed
    ],
)
def test_exec_inst_is_read_case_insensitively_and_kept_verbatim(
    value: str, reduce_only: bool, post_only: bool, liquidation: bool, known: bool
) -> None:
    intent = parse_exec_inst(value)
    assert (intent.reduce_only, intent.post_only, intent.liquidation, intent.known) == (
        reduce_only,
        post_only,
        liquidation,
        known,
    )
    assert intent.instructions == (() if value == "NULL_VAL" else (value,))


def test_pong_ts_in_seconds_or_milliseconds() -> None:
    assert pong_server_time_ms(1614164189) == 1614164189000
    assert pong_server_time_ms("1574260701259") == 1574260701259
    assert pong_server_time_ms(None) is None


async def test_intent_orders_with_live_quirks(sim: Sim) -> None:
    async with adapter(sim) as a:
        result = await fetch(a, "ascendex-intent")
    by_id = {o.order_id: o for o in result.orders}
    assert len(by_id) == 6
    assert by_id["intentReduceOnly0001"].reduce_only
    assert by_id["intentReduceOnly0001"].created_at == 1640217303541  # string time
    assert by_id["intentLiquidation0002"].liquidation
    assert by_id["intentPosStopMkt0003"].reduce_only
    assert by_id["intentPostOnly0004"].post_only and not by_id["intentPostOnly0004"].reduce_only
    assert not by_id["intentOpenStop0005"].reduce_only
    assert by_id["intentLowerCase0006"].exec_instructions == ("reduceOnly",)
    assert by_id["intentLowerCase0006"].reduce_only
    assert '"liquidityInd":"n"' in by_id["intentReduceOnly0001"].raw


# --- session caps, idle closing, connection budget -------------------------------------------


async def test_thirty_accounts_of_one_group_share_the_configured_sessions(sim: Sim) -> None:
    async with adapter(sim, max_sessions_per_group=4) as a:
        aliases = [group_alias(n) for n in range(1, GROUP_ACCOUNT_COUNT + 1)]
        results = await asyncio.gather(*(fetch(a, alias) for alias in aliases))
        assert all(len(r.orders) == 1 for r in results)
        assert a.pool.max_open_per_group[GROUP_ACCOUNT_GROUP] == 4
    stats = sim.state.snapshot()
    assert stats["max_open_in_group"] <= 4
    assert stats["upgrades_refused"] == 0 and stats["bans"] == 0
    assert stats["connections"] >= GROUP_ACCOUNT_COUNT  # one authenticated session per account


async def test_sessions_are_not_opened_beyond_the_exchange_cap(sim: Sim) -> None:
    # Our cap above the exchange's: the exchange refuses, we never get AUTH_FAILED.
    sim.faults(max_sessions_per_group=2)
    async with adapter(sim, max_sessions_per_group=3, max_attempts=1) as a:
        await fetch(a, group_alias(1))
        await fetch(a, group_alias(2))
        with pytest.raises(RateLimited):
            await fetch(a, group_alias(3), seconds=0.5)
    assert sim.state.stats["upgrades_refused_at_cap"] >= 1


async def test_idle_sessions_are_closed(sim: Sim) -> None:
    async with adapter(sim, session_idle_timeout_s=0.2) as a:
        await fetch(a, "ascendex-demo")
        await sim.state.wait_for(lambda s: len(s.sessions) == 0, 5)
        assert a.pool.open_total == 0
        again = await fetch(a, "ascendex-demo")  # reconnects on demand
        assert len(again.orders) == 5


async def test_reconnect_storm_stays_within_the_connection_budget(sim: Sim) -> None:
    sim.faults(connect_limit=8, connect_window_s=1.0)
    async with adapter(sim, connect_budget=6, connect_budget_window_s=1.0) as a:
        aliases = [group_alias(n) for n in range(1, 13)]
        await asyncio.gather(*(fetch(a, alias) for alias in aliases))
        sim.faults(disconnect_all=True)  # the blip
        for session in list(sim.state.sessions):
            await session.ws.close()
        await asyncio.gather(*(fetch(a, alias) for alias in aliases))
    stats = sim.state.snapshot()
    assert stats["bans"] == 0 and stats["upgrades_refused"] == 0
    assert stats["connections"] == 24


# --- bans read as what they are -------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [(403, RateLimited), (429, RateLimited),
                                               (502, ExchangeUnavailable)])  # fmt: skip
async def test_refused_upgrade_is_throttling_and_keeps_the_account_group(
    sim: Sim, status: int, error: type[Exception]
) -> None:
    sim.faults(refuse_upgrades_next=1000, refuse_status=status)
    async with adapter(sim) as a:
        with pytest.raises(error) as caught:
            await fetch(a, "ascendex-demo", seconds=0.5)
        assert not isinstance(caught.value, AuthFailed)
        sim.faults(refuse_upgrades_next=0)
        result = await fetch(a, "ascendex-demo")
    assert len(result.orders) == 5
    assert sim.state.stats["rest_info_calls"] == 1  # the account group was kept


async def test_connection_ban_is_rate_limited_with_code_100014(sim: Sim) -> None:
    sim.faults(connect_limit=1, connect_window_s=60.0)
    async with adapter(sim, max_attempts=1) as a:
        await fetch(a, "ascendex-demo")
        with pytest.raises(RateLimited) as caught:
            await fetch(a, "ascendex-empty", seconds=0.5)
    assert caught.value.exchange_code == "100014"
    assert sim.state.stats["bans"] == 1
    async with sim_client(sim) as http:
        info = (await http.get("/api/pro/v2/risk-limit-info")).json()
    status = info["data"]["webSocket"]["status"]
    assert status["isBanned"] and status["violationCode"] == 100014


@contextlib.asynccontextmanager
async def sim_client(sim: Sim) -> AsyncIterator[Any]:
    import httpx

    async with httpx.AsyncClient(base_url=sim.base) as http:
        yield http


async def test_ignored_requests_fail_and_are_never_an_empty_snapshot(sim: Sim) -> None:
    sim.faults(req_level1=1, req_level2=100)
    async with adapter(sim, request_timeout_s=0.3, max_attempts=1) as a:
        await fetch(a, "ascendex-demo")
        with pytest.raises(ExchangeUnavailable) as caught:
            await fetch(a, "ascendex-demo")
    assert "threshold" in caught.value.message
    assert sim.state.stats["messages_ignored"] == 1


# --- clock and keys -------------------------------------------------------------------------


async def test_a_45s_clock_skew_is_measured_and_signed_around(sim: Sim) -> None:
    sim.faults(clock_offset_ms=45_000)
    async with adapter(sim) as a:
        result = await fetch(a, "ascendex-demo")
        offset = a._http.clock.offset_ms
    assert len(result.orders) == 5
    assert offset is not None and 44_000 <= offset <= 46_000
    assert sim.state.stats["timestamp_rejections"] == 0


async def test_skew_appearing_later_is_corrected_on_invalid_timestamp(sim: Sim) -> None:
    async with adapter(sim) as a:
        await fetch(a, "ascendex-demo")
        sim.faults(clock_offset_ms=45_000)
        result = await fetch(a, "ascendex-empty")  # a new account: signed REST + WS auth
        offset = a._http.clock.offset_ms
    assert result.orders == []
    assert sim.state.stats["timestamp_rejections"] == 1
    assert offset is not None and 44_000 <= offset <= 46_000


async def test_key_expiry_metric_and_warning(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        async with adapter(sim, key_expiry_warn_days=7) as a:
            await fetch(a, "ascendex-expiring")
    expiry = REGISTRY.get_sample_value(
        "connector_api_key_expiry_timestamp_seconds",
        {"exchange": "ascendex", "account": "ascendex-expiring"},
    )
    assert expiry is not None
    assert any("expires in 3.0 days" in r.getMessage() for r in caplog.records)
    secret = account("ascendex-expiring").api_secret.reveal()
    assert secret not in caplog.text


async def test_an_expired_key_is_reported_as_expired(sim: Sim) -> None:
    async with adapter(sim) as a:
        with pytest.raises(AuthFailed) as caught:
            await fetch(a, "ascendex-expired")
    assert "expired" in caught.value.message
    assert sim.state.stats["connections"] == 0  # known expired: no login attempted


async def test_a_known_ban_fails_fast_until_banned_until(sim: Sim) -> None:
    sim.faults(connect_limit=1, connect_window_s=60.0, ban_s=600.0)
    async with adapter(sim, max_attempts=1) as a:
        await fetch(a, "ascendex-demo")
        with pytest.raises(RateLimited) as first:
            await fetch(a, "ascendex-empty", seconds=0.5)
        assert "IP banned until" in first.value.message
        assert first.value.retry_after is not None and first.value.retry_after > 500
        attempts = sim.state.stats["upgrade_attempts"]
        with pytest.raises(RateLimited) as second:
            await fetch(a, "ascendex-intent", seconds=0.5)
    assert "banned by AscendEX until" in second.value.message
    assert second.value.exchange_code == "100014"
    assert sim.state.stats["upgrade_attempts"] == attempts  # no attempt spent while banned
    assert sim.state.stats["risk_limit_calls"] == 1


# --- recorded payloads ----------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ascendex"


def test_server_time_and_ban_from_recorded_payloads() -> None:
    from connector.exchanges._json import decode
    from connector.exchanges.ascendex import schemas
    from connector.exchanges.ascendex.parsing import parse_ban, parse_server_time

    info = decode(schemas.ExchangeInfoReply, (FIXTURES / "exchange_info.json").read_bytes(), "x")
    assert parse_server_time(info) == 1640052379063
    risk = (FIXTURES / "risk_limit_info_banned.json").read_bytes()
    assert parse_ban(decode(schemas.RiskLimitReply, risk, "x")) == (
        1644807691158,
        "exceeds MAX_REQ_COUNT_PER_IP[45], 49 requests recently",
    )


def test_live_quirks_reply_parses() -> None:
    from connector.exchanges._json import decode
    from connector.exchanges.ascendex import schemas
    from connector.exchanges.ascendex.parsing import parse_open_orders
    from connector.model import OrderStatus

    data = (FIXTURES / "open_orders_live_quirks.json").read_bytes()
    reduce, ack = parse_open_orders(decode(schemas.OpenOrdersReply, data, "x"))
    assert reduce.reduce_only and reduce.created_at == 1640217303541
    assert reduce.exec_instructions == ("ReduceOnly",) and reduce.fee_asset is None
    assert ack.status is OrderStatus.ACK and ack.exec_instructions == () and not ack.reduce_only
