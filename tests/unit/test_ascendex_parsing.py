"""Normalization of recorded AscendEX payloads, field by field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.errors import (
    AuthFailed,
    ConnectorError,
    ExchangeRejected,
    MalformedResponse,
)
from connector.exchanges._json import decode
from connector.exchanges.ascendex.parsing import (
    error_from_payload,
    parse_account_info,
    parse_contracts,
    parse_open_orders,
    parse_order,
)
from connector.exchanges.ascendex.schemas import (
    AccountInfoReply,
    ContractsReply,
    FuturesOrder,
    OpenOrdersReply,
    Reply,
)
from connector.model import OrderStatus, OrderType, Side

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ascendex"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture(name: str) -> OpenOrdersReply:
    """A recorded reply, decoded from the file's bytes as the adapter decodes a frame."""
    return decode(OpenOrdersReply, fixture_text(name), name)


def reply(message: dict[str, Any]) -> OpenOrdersReply:
    return decode(OpenOrdersReply, json.dumps(message), "test reply")


def row(fields: dict[str, Any]) -> tuple[FuturesOrder, str]:
    text = json.dumps(fields, separators=(",", ":"))
    return decode(FuturesOrder, text, "test row"), text


@pytest.fixture(scope="module")
def unified() -> dict[str, str]:
    return parse_contracts(
        decode(ContractsReply, fixture_text("futures_contracts.json"), "contracts")
    )


def test_contracts_unified_symbols(unified: dict[str, str]) -> None:
    # ODD-PERP has no settlement asset and no quote: no guess, no entry.
    assert unified == {"BTC-PERP": "BTC/USDT:USDT", "ETH-PERP": "ETH/USDT:USDT"}


def test_reference_example_field_by_field(unified: dict[str, str]) -> None:
    [order] = parse_open_orders(fixture("open_orders_reference.json"), unified_symbols=unified)
    assert order.exchange == "ascendex"
    assert order.order_id == "r1782f04c58aU3792951278sbtcp7EbA"
    assert order.account_id == "sample-futures-account-id"
    assert order.product_type == "FUTURES"
    assert order.symbol == "BTC-PERP"
    assert order.unified_symbol == "BTC/USDT:USDT"
    assert order.side is Side.SELL
    assert order.position_side is None
    assert order.order_type is OrderType.LIMIT
    assert order.status is OrderStatus.NEW
    assert order.price == Decimal("66000") and isinstance(order.price, Decimal)
    assert order.quantity == Decimal("0.0001")
    assert str(order.quantity) == "0.0001"  # exact, not 0.00010000000000000000479
    assert order.filled_quantity == Decimal("0")
    assert order.remaining_quantity == Decimal("0.0001")
    assert order.average_fill_price is None  # "0" and nothing filled
    assert order.stop_price is None  # "0" on a non-stop order
    assert order.fee == Decimal("0")
    assert order.fee_asset == "USDT"
    assert order.client_order_id is None
    assert order.created_at == 1615696544843
    assert order.updated_at == 1615696544851
    assert order.leverage is None and order.margin is None and order.copy_trading is None


def test_raw_is_the_row_exactly_as_received() -> None:
    [order] = parse_open_orders(fixture("open_orders_reference.json"))
    text = fixture_text("open_orders_reference.json")
    assert order.raw in text  # a slice of what AscendEX sent, not a re-serialisation
    first = json.loads(text)["data"][0]
    assert json.loads(order.raw) == first and list(json.loads(order.raw)) == list(first)


def test_variants(unified: dict[str, str]) -> None:
    orders = parse_open_orders(fixture("open_orders_variants.json"), unified_symbols=unified)
    ack, pending, partial, triggered = orders

    # orderPrice instead of price; status Ack kept, not dropped
    assert ack.price == Decimal("3900.25")
    assert ack.status is OrderStatus.ACK
    assert ack.unified_symbol == "ETH/USDT:USDT"

    assert pending.status is OrderStatus.PENDING_NEW
    assert pending.order_type is OrderType.STOP_LIMIT
    assert pending.stop_price == Decimal("3450")
    assert pending.price == Decimal("3500")
    assert pending.side is Side.BUY

    assert partial.status is OrderStatus.PARTIALLY_FILLED
    assert partial.price == Decimal("60000.50")
    assert partial.quantity == Decimal("0.5000")
    assert partial.filled_quantity == Decimal("0.2")
    assert partial.remaining_quantity == Decimal("0.3000")
    assert partial.average_fill_price == Decimal("60000.5")
    assert partial.fee == Decimal("0.0072006")
    assert partial.client_order_id == "desk-a-42"

    # unknown status -> UNKNOWN; market-ish price "0" -> null; unknown symbol -> no unified
    assert triggered.status is OrderStatus.UNKNOWN
    assert triggered.order_type is OrderType.STOP_MARKET
    assert triggered.price is None
    assert triggered.unified_symbol is None


def test_no_float_anywhere() -> None:
    for name in ("open_orders_reference.json", "open_orders_variants.json"):
        for order in parse_open_orders(fixture(name)):
            for value in (order.price, order.quantity, order.filled_quantity, order.fee):
                assert not isinstance(value, float)


def test_bare_json_number_becomes_exact_decimal_not_float() -> None:
    message = decode(
        OpenOrdersReply,
        '{"m":"futures-open-orders","code":0,"id":"x","ac":"FUTURES","data":[{"orderId":"o1",'
        '"symbol":"BTC-PERP","price":0.1,"orderQty":"3","cumFilledQty":"0","time":1}]}',
        "test",
    )
    [order] = parse_open_orders(message)
    assert order.price == Decimal("0.1")
    # raw is the exchange's own JSON: the bare number stays a bare number, digit for digit.
    assert '"price":0.1,' in order.raw
    assert json.loads(order.raw, parse_float=Decimal)["price"] == Decimal("0.1")


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(MalformedResponse):
        decode(OpenOrdersReply, '{"data": [{"price": NaN}]}', "test")


def test_malformed_row_fails_the_whole_reply_with_a_clear_typed_error() -> None:
    with pytest.raises(MalformedResponse) as info:
        parse_open_orders(fixture("malformed_orders.json"))
    message = str(info.value)
    assert "bad-qty" in message and "orderQty" in message and "row 1" in message
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"orderId": ""}, "orderId"),
        ({"symbol": None}, "symbol"),
        ({"side": "Sideways"}, "side"),
        ({"cumFilledQty": "1"}, "exceeds"),
        ({"time": "yesterday"}, "time"),
    ],
)
def test_bad_fields_raise(patch: dict[str, Any], needle: str) -> None:
    first = json.loads(fixture_text("open_orders_reference.json"))["data"][0] | patch
    with pytest.raises(MalformedResponse, match=needle):
        parse_open_orders(reply({"m": "futures-open-orders", "code": 0, "data": [first]}))


def test_data_must_be_a_list() -> None:
    with pytest.raises(MalformedResponse, match="data"):
        parse_open_orders(reply({"m": "futures-open-orders", "code": 0, "id": "x"}))


def test_parse_order_zero_price_and_missing_optional_fields() -> None:
    order = parse_order(*row({"orderId": "o", "symbol": "BTC-PERP", "price": "NULL_VAL"}))
    assert order.price is None and order.quantity is None and order.remaining_quantity is None
    assert order.status is OrderStatus.UNKNOWN


def test_error_reply_from_fixture() -> None:
    with pytest.raises(ExchangeRejected) as info:
        parse_open_orders(fixture("error_invalid_ws_request.json"))
    assert info.value.exchange_code == "100005"
    assert "INVALID_WS_REQUEST_DATA" in str(info.value)
    assert "Missing required parameter: args" in str(info.value)


@pytest.mark.parametrize(
    "case", json.loads(fixture_text("error_payloads.json")), ids=lambda c: c["name"]
)
def test_error_mapping(case: dict[str, Any]) -> None:
    payload = decode(Reply, json.dumps(case["payload"]), "test")
    error = error_from_payload(payload, context="test", http_status=case["http_status"])
    assert isinstance(error, ConnectorError)
    assert error.code == case["error"]
    assert error.exchange_code == case["exchange_code"]
    assert error.retryable is case["retryable"]


def test_account_info() -> None:
    info = parse_account_info(
        decode(AccountInfoReply, fixture_text("account_info.json"), "account info")
    )
    assert info.account_group == 0
    # nothing personal is kept
    assert "yyzzxxz" not in repr(info)


def test_account_info_error_and_garbage() -> None:
    with pytest.raises(AuthFailed):
        parse_account_info(AccountInfoReply(code=200001, reason="AUTHENTICATION_FAILED"))
    with pytest.raises(MalformedResponse):
        parse_account_info(
            decode(AccountInfoReply, '{"code": 0, "data": {"accountGroup": "seven"}}', "t")
        )


@pytest.mark.parametrize(
    "value", [None, "NULL_VAL", "", "Post", "post", "ReduceOnly", "PosStopMkt", "Liquidation",
              "SomethingNew", " Post "],
)  # fmt: skip
def test_exec_inst_cache_gives_what_parse_exec_inst_gives(value: str | None) -> None:
    from connector.exchanges.ascendex import parsing

    first = parsing._intent(value)
    assert first == parsing.parse_exec_inst(value)
    assert parsing._intent(value) is first  # cached: Intent is immutable, shared safely
