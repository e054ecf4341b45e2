"""Bitget end to end through the broker: paging, rate limiting, errors, retries, and every
hazard of the endpoint's documented versions (docs/bitget.md). The worker walks two 89-day
windows here (``CONNECTOR_BITGET_HISTORY_DAYS=178`` in conftest) on the first snapshot of a
scope; the worker lives for the whole session, so a later snapshot of the same scope walks back
only to the oldest order the last one listed (docs/bitget.md "Requests per snapshot"): where a
test repeats a scope, it accepts either count."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from .harness import Answer, Commands, Outputs, Worker, rid

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("account", "rows", "pages"),
    [
        # Pages in the newest window + the empty page that ends it, + 1 for the older window.
        ("bitget-empty", 0, 2),
        ("bitget-1", 1, 3),
        ("bitget-50", 50, 3),
        ("bitget-51", 51, 4),
        ("bitget-120", 120, 5),
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

    # Repeated: the rows are a day old, so one window from the oldest (minus the margin); the
    # older window is not asked again. An empty account is covered from the last start.
    again = await commands.send(request_id=rid(account), exchange="bitget", account=account)
    result = (await outputs.answer(again)).result
    assert (result["status"], result["order_count"]) == ("OK", rows)
    assert result["exchange_calls"] == pages - 1


async def test_repeated_snapshots_ask_less_and_miss_nothing(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """Issue 22 through the worker: an order opened 150 days ago and still open stays listed,
    an order opened after a snapshot is in the next one, and once nothing old is open a
    repeated snapshot is one window: its page and the empty page that ends it."""
    base, account, day = sandbox["CONNECTOR_BITGET_REST_URL"], "bitget-20", 86_400_000

    async def change(**spec: Any) -> None:
        r = await control.post(f"{base}/__sandbox/orders", json={"account": account, **spec})
        r.raise_for_status()

    async def listed() -> tuple[set[str], int]:
        request_id = await commands.send(request_id=rid("bg-rep"), exchange="bitget",
                                         account=account)  # fmt: skip
        answer = await outputs.answer(request_id)
        assert answer.result["status"] == "OK"
        return {o.value["order_id"] for o in answer.orders}, answer.result["exchange_calls"]

    r = await control.get(f"{base}/__sandbox/orders", params={"account": account})
    rows = r.json()["rows"]
    ids = {row["trackingNo"] for row in rows}
    now = time.time_ns() // 1_000_000
    old = {**rows[0], "trackingNo": "1290000000000000001", "openTime": str(now - 150 * day)}
    await change(upsert=[old])
    # First of this scope: both windows, each with rows.
    assert await listed() == ({*ids, old["trackingNo"]}, 4)
    new = {**rows[0], "trackingNo": "1290000000000000002", "openTime": str(now + 1)}
    await change(upsert=[new])
    assert await listed() == ({*ids, old["trackingNo"], new["trackingNo"]}, 4)
    await change(remove=[old["trackingNo"]])
    assert await listed() == ({*ids, new["trackingNo"]}, 3)  # its range once more
    assert await listed() == ({*ids, new["trackingNo"]}, 2)


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


async def test_thirty_concurrent_commands_at_5_per_s_no_violation_full_rate(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """A backlog of 30 different fetches for one account: the shared limiter keeps Bitget's
    5/s and uses all of it. (Each command names another trader, so none can share a fetch:
    identical commands would be coalesced, see the next test.)"""
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    ids = [rid(f"bg-rate-{i}") for i in range(30)]
    await asyncio.gather(
        *(
            commands.send(
                request_id=r, exchange="bitget", account="bitget-demo", trader_id=f"90000{i:02d}"
            )
            for i, r in enumerate(ids)
        )
    )
    answers = [await outputs.answer(r, timeout=120) for r in ids]
    assert all(a.result["status"] == "OK" and a.result["order_count"] == 0 for a in answers)
    stats = (await control.get(f"{base}/__sandbox/stats")).json()
    assert stats["rate_limit_violations"] == 0
    account = stats["by_account"]["bitget-demo"]
    assert account["admitted"] == 60  # 30 commands x (an empty page in each of 2 windows)
    # n requests at a full 5/s fill (n / 5) one-second windows: first to last + one window.
    used = account["admitted"] / (5 * (account["span_s"] + 1.0))
    print(f"bitget backlog: {account['admitted']} requests in {account['span_s']:.2f}s, "
          f"{used:.1%} of 5/s")  # fmt: skip
    assert used >= 0.9


async def test_thirty_identical_concurrent_commands_share_fetches(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """Identical commands waiting for the same rate-limited account share a fetch; each still
    gets its own complete snapshot (own request_id, event ids, seq 1..n) and one result."""
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    ids = [rid(f"bg-same-{i}") for i in range(30)]
    await asyncio.gather(
        *(commands.send(request_id=r, exchange="bitget", account="bitget-demo") for r in ids)
    )
    answers = [await outputs.answer(r, timeout=120) for r in ids]
    event_ids: set[str] = set()
    for r, a in zip(ids, answers, strict=True):
        assert len(a.results) == 1
        assert a.result["status"] == "OK" and a.result["order_count"] == 3
        assert sorted(o.value["snapshot_seq"] for o in a.orders) == [1, 2, 3]
        assert {o.value["request_id"] for o in a.orders} == {r}
        event_ids.update(o.value["event_id"] for o in a.orders)
    assert len(event_ids) == 90
    stats = (await control.get(f"{base}/__sandbox/stats")).json()
    assert stats["rate_limit_violations"] == 0
    admitted = stats["by_account"]["bitget-demo"]["admitted"]
    print(f"30 identical concurrent commands: {admitted} exchange requests "
          f"(2 or 3 per fetch, 60 or more without coalescing)")  # fmt: skip
    # 3 per fetch on the full horizon, 2 on a repeated one (the account was listed before).
    assert 2 <= admitted <= 45


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
    # 3 pages + empty + the retried one, + the older window on the full horizon.
    assert answer.result["exchange_calls"] in (5, 6)
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


# --- the endpoint's documented versions and their hazards -------------------------------------


async def configure(control: httpx.AsyncClient, sandbox: dict[str, str], **spec: object) -> None:
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{base}/__sandbox/config", json=spec)).raise_for_status()


async def snapshot(commands: Commands, outputs: Outputs, account: str, **extra: object) -> Answer:
    request_id = await commands.send(
        request_id=rid(account), exchange="bitget", account=account, **extra
    )
    return await outputs.answer(request_id)


def assert_complete(answer: Answer, rows: int) -> None:
    assert (answer.result["status"], answer.result["order_count"]) == ("OK", rows)
    ids = [o.value["order_id"] for o in answer.orders]
    assert len(ids) == len(set(ids)) == rows


def assert_failed_without_events(answer: Answer, exchange_code: str | None = None) -> None:
    assert answer.result["status"] == "FAILED"
    assert answer.orders == []
    (error,) = answer.errors
    assert "cannot be proven complete" in error.value["message"]
    if exchange_code is not None:
        assert error.value["exchange_code"] == exchange_code


@pytest.mark.parametrize(
    ("version", "calls"),
    # reference: pages 1-3 + an empty 4th; the older window repeats page 1 (no time filter).
    # current-list: pages 1-3 + an empty 4th (no endId); the older window is empty.
    # current-object: the same (endId "" on page 3 is confirmed by the empty 4th).
    # The older window is asked on the full horizon only (the first run of the account).
    [("reference", (4, 5)), ("current-list", (4, 5)), ("current-object", (4, 5))],
)
async def test_137_rows_on_every_version_and_shape(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    version: str,
    calls: tuple[int, int],
) -> None:
    await configure(control, sandbox, version=version)
    answer = await snapshot(commands, outputs, "bitget-137")
    assert_complete(answer, 137)
    assert answer.result["exchange_calls"] in calls


@pytest.mark.parametrize("version", ["current-list", "current-object"])
async def test_250_rows_30_older_than_three_months(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    version: str,
) -> None:
    await configure(control, sandbox, version=version)
    answer = await snapshot(commands, outputs, "bitget-250-old")
    assert_complete(answer, 250)
    now = max(o.value["created_at"] for o in answer.orders)
    old = [o for o in answer.orders if o.value["created_at"] < now - 91 * 86_400_000]
    assert len(old) == 30


async def test_refused_history_window_fails_and_publishes_nothing(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    await configure(control, sandbox, history_days=100)  # the worker walks back 178 days
    answer = await snapshot(commands, outputs, "bitget-250-old")
    assert_failed_without_events(answer, "40704")
    assert answer.result["error_code"] == "EXCHANGE_REJECTED"
    assert answer.errors[0].value["retryable"] is False


@pytest.mark.parametrize(
    ("version", "ignored"),
    [("reference", ["pageSize"]), ("current-list", ["limit"]), ("current-object", ["limit"])],
)
async def test_server_ignoring_the_page_size(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    version: str,
    ignored: list[str],
) -> None:
    """Its default 20 rows a page, though 50 were asked: a short page is not the end."""
    await configure(control, sandbox, version=version, ignore_params=ignored)
    assert_complete(await snapshot(commands, outputs, "bitget-137"), 137)


@pytest.mark.parametrize("version", ["reference", "current-object"])
async def test_server_ignoring_every_paging_parameter_fails(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    version: str,
) -> None:
    """The same first page every time: never published as the whole snapshot."""
    await configure(control, sandbox, version=version, ignore_params=["pageNo", "idLessThan"])
    assert_failed_without_events(await snapshot(commands, outputs, "bitget-137"))


async def test_over_maximum_page_size(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    await configure(control, sandbox, max_limit=30)  # limit=50 is over it: 20 rows a page
    answer = await snapshot(commands, outputs, "bitget-137")
    assert_complete(answer, 137)
    # 7 pages of <= 20 + empty, + the older window on the full horizon.
    assert answer.result["exchange_calls"] in (8, 9)


async def test_non_ascii_symbol(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    answer = await snapshot(commands, outputs, "bitget-unicode", symbol="龙虾USDT")
    assert_complete(answer, 3)
    assert {o.value["symbol"] for o in answer.orders} == {"龙虾USDT"}
    assert {o.value["unified_symbol"] for o in answer.orders} == {"龙虾/USDT:USDT"}


async def test_fee_is_positive_when_paid(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    answer = await snapshot(commands, outputs, "bitget-demo")
    assert {o.value["fee"] for o in answer.orders} == {"0.403503", "0.210744", "0.79212"}


async def test_not_a_follower(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    answer = await snapshot(commands, outputs, "bitget-notfollower")
    assert answer.result["error_code"] == "EXCHANGE_REJECTED"
    (error,) = answer.errors
    assert "not a copy-trading follower" in error.value["message"]
    assert error.value["exchange_code"] == "40017"
