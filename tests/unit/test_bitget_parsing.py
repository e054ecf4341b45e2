"""Normalization of recorded Bitget payloads (the documentation's own examples)."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connector.errors import MalformedResponse
from connector.exchanges._json import decode, raw_text
from connector.exchanges.bitget.http import map_response
from connector.exchanges.bitget.parsing import (
    ContractInfo,
    parse_contract,
    parse_contracts,
    parse_page,
    parse_server_time,
    parse_tracking_order,
    windows,
)
from connector.exchanges.bitget.schemas import Contract, Envelope, ServerTime, TrackingOrder
from connector.model import (
    OrderStatus,
    PositionSide,
    Side,
    canonical_decimal,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitget"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def decoded(row: Any) -> tuple[TrackingOrder, str]:
    """A synthetic row as the boundary would hand it over: the Struct and its JSON text."""
    text = json.dumps(row, separators=(",", ":"), default=str)
    return decode(TrackingOrder, text, "test row"), text


def contract(row: dict[str, Any]) -> Contract:
    return decode(Contract, json.dumps(row), "test contract")


def usdt_contracts() -> dict[str, ContractInfo]:
    content = (FIXTURES / "contracts-usdt-futures.json").read_bytes()
    rows = decode(list[Contract], map_response("/contracts", 200, content), "contracts")
    return parse_contracts(rows, "USDT-FUTURES")


def test_documentation_example_field_by_field() -> None:
    body = fixture("query-current-orders.json")
    row = body["data"][0]
    contracts = usdt_contracts()
    order = parse_tracking_order(
        *decoded(row), product_type="USDT-FUTURES", contract=contracts["BTCUSDT"]
    )

    assert order.exchange == "bitget"
    assert order.order_id == "1"
    assert order.symbol == "BTCUSDT"
    assert order.unified_symbol == "BTC/USDT:USDT"
    assert order.product_type == "USDT-FUTURES"
    assert order.account_id is None
    assert order.client_order_id is None
    assert order.side is Side.SELL
    assert order.position_side is PositionSide.SHORT
    assert order.order_type is None
    assert order.status is OrderStatus.NEW
    assert order.price == Decimal("39827")
    assert order.quantity == Decimal("0.0010000000000000")
    assert canonical_decimal(order.quantity) == "0.001"
    assert order.filled_quantity == Decimal(0)
    assert order.filled_quantity is not None and canonical_decimal(order.filled_quantity) == "0"
    assert order.remaining_quantity == Decimal("0.001")
    assert order.average_fill_price is None  # closeAvgPrice "0" placeholder
    assert order.stop_price is None
    assert order.fee is None and order.fee_asset is None  # openFee absent from the example
    assert order.leverage == Decimal("47")
    assert order.margin == Decimal("21")
    assert order.created_at == 1627567376984
    assert order.updated_at == 1627567376984  # closeTime "0" -> not closed
    ct = order.copy_trading
    assert ct is not None
    assert ct.trader_id == "**********"
    assert ct.trader_name == "xxxxxx"
    assert ct.open_order_id == "1"
    assert ct.close_order_id is None  # "" placeholder
    assert ct.open_average_price == Decimal("39827")
    assert ct.close_average_price is None  # "0" placeholder
    assert ct.open_size == Decimal("0.0010000000000000")
    assert ct.close_size == Decimal(0)
    assert ct.open_time == 1627567376984
    assert ct.close_time is None  # "0" placeholder
    # raw is the row's own JSON: same fields, same order, same text.
    assert json.loads(order.raw) == row
    assert list(json.loads(order.raw)) == list(row)
    assert '"openSize":"0.0010000000000000"' in order.raw


def test_every_decimal_is_a_decimal_never_a_float() -> None:
    row = fixture("query-current-orders.json")["data"][0]
    order = parse_tracking_order(*decoded(row), product_type="USDT-FUTURES")
    for name in (
        "price",
        "quantity",
        "filled_quantity",
        "remaining_quantity",
        "leverage",
        "margin",
    ):
        assert isinstance(getattr(order, name), Decimal), name


def test_open_price_avg_spelling_and_partly_closed_row() -> None:
    row = {
        "trackingNo": "77",
        "traderId": "9",
        "traderName": "t",
        "openOrderId": "5",
        "closeOrderId": "6",
        "symbol": "ETHUSDT",
        "posSide": "long",
        "openLeverage": "10",
        "openPriceAvg": "3512.40",
        "openTime": "1717000000000",
        "openFee": "-0.2107440000000000",
        "openSize": "0.1000000000000000",
        "closeAvgPrice": "3600.5",
        "closeSize": "0.0400000000000000",
        "openMarginSz": "35.124",
        "closeTime": "1717000060000",
    }
    contract = ContractInfo("ETHUSDT", "USDT-FUTURES", "ETH", "USDT", "USDT", "ETH/USDT:USDT")
    order = parse_tracking_order(*decoded(row), product_type="USDT-FUTURES", contract=contract)
    assert order.side is Side.BUY and order.position_side is PositionSide.LONG
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.price == Decimal("3512.40")
    assert order.filled_quantity == Decimal("0.04")
    assert order.remaining_quantity == Decimal("0.06")
    assert order.average_fill_price == Decimal("3600.5")
    # Bitget: negative = charged; the connector: positive = paid by the account.
    assert order.fee == Decimal("0.210744") and order.fee_asset == "USDT"
    assert '"openFee":"-0.2107440000000000"' in order.raw  # raw keeps Bitget's own text
    assert order.updated_at == 1717000060000
    assert order.copy_trading is not None
    assert order.copy_trading.close_order_id == "6"
    assert order.copy_trading.close_time == 1717000060000
    # Fully closed but still listed -> FILLED.
    closed = parse_tracking_order(
        *decoded({**row, "closeSize": "0.1"}), product_type="USDT-FUTURES"
    )
    assert closed.status is OrderStatus.FILLED
    assert closed.remaining_quantity == Decimal(0)


def test_both_price_spellings_must_agree() -> None:
    row = fixture("query-current-orders.json")["data"][0]
    same = parse_tracking_order(
        *decoded({**row, "openPriceAvg": "39827.000"}), product_type="USDT-FUTURES"
    )
    assert same.price == Decimal("39827")
    with pytest.raises(MalformedResponse, match="disagree"):
        parse_tracking_order(*decoded({**row, "openPriceAvg": "1"}), product_type="USDT-FUTURES")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"trackingNo": ""}, "trackingNo missing"),
        ({"symbol": None}, "symbol missing"),
        ({"posSide": "net"}, "posSide"),
        ({"openSize": "abc"}, "openSize"),
        ({"openTime": "yesterday"}, "openTime"),
        ({"openLeverage": "NaN"}, "openLeverage"),
    ],
)
def test_malformed_rows_raise_typed_errors(change: dict[str, Any], match: str) -> None:
    row = {**fixture("query-current-orders.json")["data"][0], **change}
    with pytest.raises(MalformedResponse, match=match) as info:
        parse_tracking_order(*decoded(row), product_type="USDT-FUTURES")
    assert info.value.retryable is False


def test_non_object_row_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        decode(TrackingOrder, '["not", "a", "row"]', "row")


def test_contracts_unified_symbols() -> None:
    btc = usdt_contracts()["BTCUSDT"]
    assert (btc.base, btc.quote, btc.settle, btc.unified_symbol) == (
        "BTC",
        "USDT",
        "USDT",
        "BTC/USDT:USDT",
    )
    coin = parse_contract(
        contract(
            {"symbol": "BTCUSD", "baseCoin": "BTC", "quoteCoin": "USD", "symbolType": "perpetual"}
        ),
        "COIN-FUTURES",
    )
    assert coin.unified_symbol == "BTC/USD:BTC"
    usdc = parse_contract(
        contract({"symbol": "BTCPERP", "baseCoin": "BTC", "quoteCoin": "USDC"}), "USDC-FUTURES"
    )
    assert usdc.unified_symbol == "BTC/USDC:USDC"
    delivery = parse_contract(
        contract(
            {
                "symbol": "BTCUSD_250627",
                "baseCoin": "BTC",
                "quoteCoin": "USD",
                "symbolType": "delivery",
                "deliveryTime": "1751011200000",
            }
        ),
        "COIN-FUTURES",
    )
    assert delivery.unified_symbol == "BTC/USD:BTC-250627"
    with pytest.raises(MalformedResponse):
        parse_contract(contract({"symbol": "X"}), "USDT-FUTURES")
    with pytest.raises(MalformedResponse):
        decode(list[Contract], '{"not": "a list"}', "contracts")


def test_server_time() -> None:
    content = (FIXTURES / "server-time.json").read_bytes()
    data = decode(ServerTime, map_response("/time", 200, content), "server time")
    assert parse_server_time(data) == 1688008631614
    with pytest.raises(MalformedResponse):
        parse_server_time(ServerTime())
    with pytest.raises(MalformedResponse):
        parse_server_time(ServerTime(serverTime="soon"))


def test_raw_is_the_row_exactly_as_bitget_sent_it() -> None:
    content = (FIXTURES / "query-current-orders.json").read_bytes()
    rows = decode(list[msgspec.Raw], map_response("/orders", 200, content), "orders")
    text = raw_text(rows[0])
    assert text in content.decode()  # a slice of the body as received, not a re-serialisation
    order = parse_tracking_order(
        decode(TrackingOrder, rows[0], "row"), text, product_type="USDT-FUTURES"
    )
    assert order.raw == text


def test_bare_numbers_decode_exactly_never_through_a_float() -> None:
    _, text = decoded({"trackingNo": "1", "symbol": "X", "posSide": "long"})
    bare = text[:-1] + ',"openSize":0.10000000000000000001}'
    order = parse_tracking_order(
        decode(TrackingOrder, bare, "row"), bare, product_type="USDT-FUTURES"
    )
    assert order.quantity == Decimal("0.10000000000000000001")


def test_windows_cover_the_horizon_without_gaps_and_at_most_89_days() -> None:
    day = 86_400_000
    spans = list(windows(1_000 * day, 365, 89))
    assert len(spans) == 5
    assert spans[0] == (1_000 * day - 89 * day, 1_000 * day)
    assert spans[-1][0] == 1_000 * day - 365 * day
    assert all(newer[0] == older[1] for newer, older in itertools.pairwise(spans))
    assert all(0 < end - start <= 89 * day for start, end in spans)
    assert list(windows(1_000 * day, 89, 89)) == [(911 * day, 1_000 * day)]


@pytest.mark.parametrize(
    ("data", "rows", "end_id"),
    [
        (b"null", 0, None),
        (b'[{"trackingNo":"1"}]', 1, None),
        (b'{"trackingList":[{"trackingNo":"1"}],"endId":"1"}', 1, "1"),
        (b'{"trackingList":[],"endId":""}', 0, ""),
        (b'{"trackingList":null}', 0, None),
    ],
)
def test_parse_page_accepts_both_shapes(data: bytes, rows: int, end_id: str | None) -> None:
    page = parse_page(msgspec.Raw(data), "page")
    assert (len(page.rows), page.end_id) == (rows, end_id)


def test_parse_page_rejects_other_shapes() -> None:
    with pytest.raises(MalformedResponse):
        parse_page(msgspec.Raw(b'"20 rows"'), "page")
    with pytest.raises(MalformedResponse):
        parse_page(msgspec.Raw(b'{"trackingList": 5}'), "page")


def test_object_shape_fixture_parses_with_the_fee_sign_flipped() -> None:
    envelope = decode(
        Envelope, (FIXTURES / "query-current-orders-tracking-list.json").read_bytes(), "f"
    )
    page = parse_page(envelope.data, "f")
    assert page.end_id == ""  # the last page
    (raw,) = page.rows
    order = parse_tracking_order(
        decode(TrackingOrder, raw, "f"), raw_text(raw), product_type="USDT-FUTURES"
    )
    assert order.fee == Decimal("5.92649260")  # Bitget's -5.92649260: paid by the follower
    assert order.price == Decimal("26500.5")
