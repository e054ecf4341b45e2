"""Command validation: every bad command gets a typed error naming the problem."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector import codec
from connector.commands import decode_command, validate_command
from connector.errors import ErrorCode, InvalidCommand
from connector.exchanges.bitget.config import BitgetOptions


async def parse(value: bytes) -> Any:
    return validate_command(await decode_command(value, codec.Serializer()))


def js(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


async def test_minimal_json_command() -> None:
    q = await parse(js(request_id="r1", exchange="AscendEX", account="desk"))
    assert (q.request_id, q.exchange, q.account, q.symbol) == (
        "r1",
        "ascendex",
        "desk",
        None,
    )


async def test_non_ascii_symbol_is_accepted_query_syntax_is_not() -> None:
    q = await parse(js(request_id="r", exchange="bitget", account="f", symbol="龙虾USDT"))
    assert q.symbol == "龙虾USDT"
    for bad in ("BTC&limit=1", "BTC=USDT", "BTC USDT", "BTC%20"):
        with pytest.raises(InvalidCommand, match="symbol"):
            await parse(js(request_id="r", exchange="bitget", account="f", symbol=bad))


async def test_bitget_product_type_defaults_and_normalizes() -> None:
    q = await parse(js(request_id="r", exchange="bitget", account="f"))
    assert q.options == BitgetOptions(product_type="USDT-FUTURES")
    q = await parse(js(request_id="r", exchange="bitget", account="f", product_type="coin-futures"))
    assert q.options == BitgetOptions(product_type="COIN-FUTURES")


async def test_avro_single_object_command() -> None:
    record = {
        "request_id": "r2", "exchange": "bitget", "account": "f", "symbol": "BTCUSDT",
        "product_type": None, "trader_id": "T1", "requested_at": 1700000000000, "deadline_ms": None,
    }  # fmt: skip
    value = codec.encode_single_object(codec.QUERY_ORDERS, record)
    q = await parse(value)
    assert (q.symbol, q.requested_at) == ("BTCUSDT", 1700000000000)
    assert q.options == BitgetOptions(trader_id="T1")


@pytest.mark.parametrize(
    ("value", "code", "match"),
    [
        (b"", ErrorCode.INVALID_COMMAND, "empty"),
        (b"{not json", ErrorCode.INVALID_COMMAND, "malformed JSON"),
        (b"\xff\xfe\x00garbage", ErrorCode.INVALID_COMMAND, "neither UTF-8 JSON nor Avro"),
        (b"\xc3\x01" + b"\x01" * 12, ErrorCode.INVALID_COMMAND, "unreadable Avro"),
        (b"[1, 2]", ErrorCode.INVALID_COMMAND, "must be an object"),
        (js(exchange="ascendex", account="a"), ErrorCode.INVALID_COMMAND, "request_id is required"),
        (js(request_id=5, exchange="ascendex", account="a"), ErrorCode.INVALID_COMMAND, "request_id must be a string"),
        (js(request_id="r", exchange="binance", account="a"), ErrorCode.UNSUPPORTED, "not supported"),
        (js(request_id="r", exchange="ascendex"), ErrorCode.INVALID_COMMAND, "account is required"),
        (js(request_id="r", exchange="ascendex", account="a b"), ErrorCode.INVALID_COMMAND, "account has characters"),
        (js(request_id="r", exchange="ascendex", account="a", symbol="BTC PERP"), ErrorCode.INVALID_COMMAND, "symbol"),
        (js(request_id="r", exchange="ascendex", account="a", product_type="USDT-FUTURES"), ErrorCode.INVALID_COMMAND, "bitget only"),
        (js(request_id="r", exchange="bitget", account="a", product_type="SPOT"), ErrorCode.INVALID_COMMAND, "product_type must be one of"),
        (js(request_id="r", exchange="bitget", account="a", deadline_ms="soon"), ErrorCode.INVALID_COMMAND, "deadline_ms must be an integer"),
        (js(request_id="r", exchange="bitget", account="a", requested_at=True), ErrorCode.INVALID_COMMAND, "requested_at"),
        (js(request_id="r" * 300, exchange="bitget", account="a"), ErrorCode.INVALID_COMMAND, "longer than"),
    ],
)  # fmt: skip
async def test_bad_commands(value: bytes, code: ErrorCode, match: str) -> None:
    with pytest.raises(Exception) as info:
        await parse(value)
    assert getattr(info.value, "code", None) == code
    assert match in str(info.value)


async def test_avro_record_of_another_schema_is_rejected() -> None:
    value = codec.encode_single_object(
        codec.QUERY_RESULT,
        {"request_id": "r", "status": "OK", "order_count": 0, "started_at": 1, "completed_at": 2,
         "exchange_calls": 0},
    )  # fmt: skip
    with pytest.raises(InvalidCommand, match="expected an Avro"):
        await parse(value)
