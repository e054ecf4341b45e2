"""The pipeline's contract without Kafka: one result per command, orders before it, typed errors."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from connector import codec
from connector.account import Account, Accounts
from connector.errors import AuthFailed, ErrorCode
from connector.model import FetchResult, Order, OrderQuery, OrderStatus, Side, now_ms
from connector.pipeline import Pipeline
from connector.secrets import Secret
from connector.settings import Settings

SECRET = "s3cr3t-value-never-printed"


class FakeAdapter:
    exchange = "ascendex"

    def __init__(self, result: FetchResult | Exception | None = None, delay: float = 0) -> None:
        self.result = result or FetchResult([], calls=1)
        self.delay = delay
        self.calls: list[OrderQuery] = []

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.calls.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    async def aclose(self) -> None:
        pass


def order(i: int) -> Order:
    return Order(
        exchange="ascendex", order_id=f"o{i}", symbol="BTC-PERP", raw="{}",
        side=Side.BUY, status=OrderStatus.NEW, price=Decimal("66000.50"), quantity=Decimal("0.0010"),
    )  # fmt: skip


def pipeline(adapter: FakeAdapter, **settings: Any) -> Pipeline:
    accounts = Accounts([Account("desk", "ascendex", Secret("key-abcdef"), Secret(SECRET))])
    return Pipeline(Settings(**settings), accounts, {"ascendex": adapter}, codec.Serializer())


def cmd(**fields: Any) -> bytes:
    base = {"request_id": "r1", "exchange": "ascendex", "account": "desk"}
    return json.dumps({**base, **fields}).encode()


def encodes(outcome: Any) -> None:
    """Every record must be valid against its .avsc."""
    for rec in outcome.records():
        codec.encode_single_object(rec.schema, rec.value)


async def test_ok_snapshot_has_seq_size_and_result_last() -> None:
    out = await pipeline(FakeAdapter(FetchResult([order(1), order(2), order(3)], calls=2))).process(
        cmd()
    )
    encodes(out)
    assert out.ok
    assert [r.value["snapshot_seq"] for r in out.orders] == [1, 2, 3]
    assert {r.value["snapshot_size"] for r in out.orders} == {3}
    assert [r.key for r in out.orders] == [
        "ascendex:desk:o1",
        "ascendex:desk:o2",
        "ascendex:desk:o3",
    ]
    assert out.orders[0].value["price"] == "66000.5"
    assert out.orders[0].value["quantity"] == "0.001"
    assert out.records()[-1] is out.result
    assert out.result is not None
    res = out.result.value
    assert (res["status"], res["order_count"], res["exchange_calls"], res["error_code"]) == (
        "OK",
        3,
        2,
        None,
    )
    assert out.result.key == "ascendex:desk"
    assert out.result.headers == {
        "request_id": "r1", "exchange": "ascendex", "account": "desk", "schema": codec.QUERY_RESULT,
    }  # fmt: skip
    assert out.orders[0].headers["schema"] == codec.ORDER_EVENT


async def test_zero_orders_is_ok_with_count_zero() -> None:
    out = await pipeline(FakeAdapter()).process(cmd())
    assert out.ok and out.orders == [] and out.error is None
    assert out.result is not None and out.result.value["order_count"] == 0


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\x00\x01garbage", ErrorCode.INVALID_COMMAND),
        (b"{oops", ErrorCode.INVALID_COMMAND),
        (cmd(account="nobody"), ErrorCode.UNKNOWN_ACCOUNT),
        (cmd(exchange="bitget"), ErrorCode.UNKNOWN_ACCOUNT),
        (cmd(exchange="kraken"), ErrorCode.UNSUPPORTED),
        (cmd(deadline_ms=1), ErrorCode.EXPIRED),
    ],
)
async def test_failures_give_one_error_and_one_failed_result(value: bytes, code: ErrorCode) -> None:
    adapter = FakeAdapter()
    out = await pipeline(adapter).process(value)
    encodes(out)
    assert not out.ok and out.orders == []
    assert out.error is not None and out.result is not None
    assert out.error.value["code"] == code.value
    assert out.error.value["command"] == value
    assert out.result.value["status"] == "FAILED"
    assert out.result.value["error_code"] == code.value
    assert out.error.value["request_id"] == out.result.value["request_id"]
    assert adapter.calls == []  # nothing reached the exchange


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"deadline_ms": 1_796_674_350}, ErrorCode.EXPIRED,
         "deadline 1796674350 passed before the query started; deadline_ms is in milliseconds; "
         "1796674350 looks like seconds"),
        ({"account": "dsek"}, ErrorCode.UNKNOWN_ACCOUNT,
         "no ascendex account with alias 'dsek' is configured; did you mean 'desk'?"),
        ({"account": "follower"}, ErrorCode.UNKNOWN_ACCOUNT,
         "no ascendex account with alias 'follower' is configured; 'follower' is a bitget account"),
        ({"account": "zzz"}, ErrorCode.UNKNOWN_ACCOUNT,
         "no ascendex account with alias 'zzz' is configured"),
    ],
)  # fmt: skip
async def test_failure_messages_say_what_was_probably_meant(
    fields: dict[str, Any], code: ErrorCode, says: str
) -> None:
    accounts = Accounts(
        [
            Account("desk", "ascendex", Secret("key-abcdef"), Secret(SECRET)),
            Account("follower", "bitget", Secret("key-bcdefg"), Secret(SECRET + "2")),
        ]
    )
    adapter = FakeAdapter()
    pipe = Pipeline(Settings(), accounts, {"ascendex": adapter}, codec.Serializer())
    out = await pipe.process(cmd(**fields))
    assert out.error is not None
    assert (out.error.value["code"], out.error.value["message"]) == (code.value, says)
    assert adapter.calls == []


async def test_a_deadline_in_milliseconds_gets_no_seconds_hint() -> None:
    out = await pipeline(FakeAdapter()).process(cmd(deadline_ms=now_ms() - 1000))
    assert out.error is not None and out.error.value["code"] == "EXPIRED"
    assert "passed before the query started" in out.error.value["message"]
    assert "seconds" not in out.error.value["message"]


async def test_unreadable_command_gets_generated_request_id_and_null_key() -> None:
    out = await pipeline(FakeAdapter()).process(b"\x8f\x00random")
    assert out.error is not None and out.result is not None
    assert out.error.value["request_id"].startswith("generated-")
    assert out.error.key is None and out.result.key is None
    assert out.error.headers["exchange"] == ""


async def test_exchange_error_keeps_exchange_code_and_redacts_secrets() -> None:
    err = AuthFailed(f"signature rejected for secret {SECRET}", exchange_code="200001")
    out = await pipeline(FakeAdapter(err)).process(cmd())
    assert out.error is not None
    assert out.error.value["code"] == "AUTH_FAILED"
    assert out.error.value["exchange_code"] == "200001"
    assert SECRET not in out.error.value["message"]


async def test_adapter_bug_becomes_internal_error() -> None:
    out = await pipeline(FakeAdapter(RuntimeError("boom"))).process(cmd())
    assert out.error is not None and out.error.value["code"] == "INTERNAL"


async def test_slow_exchange_times_out_within_the_deadline() -> None:
    out = await pipeline(FakeAdapter(delay=30), command_timeout_s=0.05).process(cmd())
    assert out.error is not None and out.error.value["code"] == "TIMEOUT"
    assert out.error.value["retryable"] is True


async def test_deadline_in_the_future_is_passed_as_budget() -> None:
    adapter = FakeAdapter()
    out = await pipeline(adapter).process(cmd(deadline_ms=now_ms() + 60_000))
    assert out.ok and len(adapter.calls) == 1
