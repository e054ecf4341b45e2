"""Bitget end to end through the broker: paging, rate limiting, errors, retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .harness import Commands, Outputs, Worker, rid

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("account", "rows", "pages"),
    [
        ("bitget-empty", 0, 1),
        ("bitget-1", 1, 1),
        ("bitget-50", 50, 2),
        ("bitget-51", 51, 2),
        ("bitget-120", 120, 3),
    ],
)
async def test_paging_to_the_end(
    worker: Worker, commands: Commands, outputs: Outputs, account: str, rows: int, pages: int
) -> None:
    request_id = await commands.send(request_id=rid(account), exchange="bitget", account=account)
    answer = await outputs.answer(request_id)
    result = answer.result
    assert (result["status"], result["order_count"], result["exchange_calls"]) == (
        "OK",
        rows,
        pages,
    )
    ids = [o.value["order_id"] for o in answer.orders]
    assert len(ids) == len(set(ids)) == rows
    assert sorted(o.value["snapshot_seq"] for o in answer.orders) == list(range(1, rows + 1))
    assert all(o.value["product_type"] == "USDT-FUTURES" for o in answer.orders)
    assert all(o.key == f"bitget:{account}:{o.value['order_id']}" for o in answer.orders)


async def test_copy_trading_fields(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    request_id = await commands.send(
        request_id=rid("bg-demo"), exchange="bitget", account="bitget-demo"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["order_count"] == 3
    for o in answer.orders:
        v = o.value
        assert v["copy_trading"] is not None and v["copy_trading"]["trader_id"]
        assert v["position_side"] in ("LONG", "SHORT")
        assert v["side"] == ("BUY" if v["position_side"] == "LONG" else "SELL")
        assert v["unified_symbol"] in ("BTC/USDT:USDT", "ETH/USDT:USDT")
        assert "." not in v["quantity"] or not v["quantity"].endswith("0")  # canonical decimals


async def test_thirty_concurrent_commands_never_exceed_the_rate_limit(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    ids = [rid(f"bg-rate-{i}") for i in range(30)]
    await asyncio.gather(
        *(commands.send(request_id=r, exchange="bitget", account="bitget-51") for r in ids)
    )
    answers = [await outputs.answer(r, timeout=120) for r in ids]
    assert all(a.result["status"] == "OK" and a.result["order_count"] == 51 for a in answers)
    stats = (await control.get(f"{base}/__sandbox/stats")).json()
    assert stats["by_account"]["bitget-51"]["requests"] >= 60  # 30 commands x 2 pages
    assert stats["rate_limit_violations"] == 0


async def test_wrong_passphrase_is_auth_failed_with_bitgets_code(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(
        request_id=rid("bg-pass"), exchange="bitget", account="bitget-badpass"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["error_code"] == "AUTH_FAILED"
    (error,) = answer.errors
    assert error.value["code"] == "AUTH_FAILED"
    assert error.value["exchange_code"] == "40012"


async def test_server_error_mid_paging_is_retried_into_a_complete_snapshot(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    fault = {"fail_on_page": 2, "times": 1, "status": 503}
    (await control.post(f"{base}/__sandbox/faults", json=fault)).raise_for_status()
    request_id = await commands.send(
        request_id=rid("bg-5xx"), exchange="bitget", account="bitget-120"
    )
    answer = await outputs.answer(request_id)
    assert (answer.result["status"], answer.result["order_count"]) == ("OK", 120)
    assert answer.result["exchange_calls"] == 4  # 3 pages + the retried one
    assert len({o.value["order_id"] for o in answer.orders}) == 120


async def test_exchange_down_publishes_no_partial_snapshot(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    fault = {"fail_on_page": 2, "times": 100, "status": 502}
    (await control.post(f"{base}/__sandbox/faults", json=fault)).raise_for_status()
    request_id = await commands.send(
        request_id=rid("bg-down"), exchange="bitget", account="bitget-120"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "FAILED"
    assert answer.result["error_code"] == "EXCHANGE_UNAVAILABLE"
    assert answer.orders == []  # page 1 succeeded, yet nothing of it was published
    assert answer.result["exchange_calls"] >= 2  # page 1 + the failing page 2 attempts
    assert answer.errors[0].value["retryable"] is True


async def test_bad_product_type_is_invalid(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(
        request_id=rid("bg-pt"), exchange="bitget", account="bitget-demo", product_type="SPOT"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["error_code"] == "INVALID_COMMAND"
