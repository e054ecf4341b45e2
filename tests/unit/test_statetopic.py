"""State topic helpers without a broker: record encoding, tombstone decoding, printing."""

from __future__ import annotations

import io
from types import SimpleNamespace

from connector.client import decode_message
from connector.codec import ORDER_EVENT, Serializer, decode_single_object, to_plain
from connector.state import StateRecord
from connector.statetopic import StateTable, encode_state_record, print_state

from .test_codec import sample_order_event


async def test_upsert_is_an_avro_order_event_with_headers_and_a_tombstone_has_no_value() -> None:
    ser = Serializer()
    event = sample_order_event()
    key, value, headers = await encode_state_record(
        ser, "open-orders", StateRecord("ascendex:desk:o-1", "o-1", event),
        request_id="r-1", exchange="ascendex", account="desk",
    )  # fmt: skip
    assert key == b"ascendex:desk:o-1"
    assert value is not None
    name, record = decode_single_object(value)
    plain = to_plain(record)
    assert name == ORDER_EVENT
    assert {k: plain[k] for k in event if k != "copy_trading"} == {
        k: v for k, v in event.items() if k != "copy_trading"
    }
    assert dict(headers) == {
        "request_id": b"r-1", "exchange": b"ascendex", "account": b"desk", "schema": ORDER_EVENT.encode()
    }  # fmt: skip
    key, value, headers = await encode_state_record(
        ser, "open-orders", StateRecord("ascendex:desk:o-2", "o-2", None),
        request_id="r-1", exchange="ascendex", account="desk",
    )  # fmt: skip
    assert value is None and "schema" not in dict(headers)


async def test_a_tombstone_decodes_as_null_not_as_undecodable() -> None:
    msg = SimpleNamespace(topic="open-orders", key=b"ascendex:desk:o-2", value=None, headers=[])
    decoded = await decode_message(msg, Serializer())
    assert (decoded.key, decoded.schema, decoded.value) == ("ascendex:desk:o-2", None, None)
    assert '"value": null' in decoded.to_json()


def test_print_state_formats() -> None:
    a = {"order_id": "1", "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT",
         "status": "NEW", "price": "100", "quantity": "0.5"}  # fmt: skip
    b = {**a, "order_id": "2", "symbol": "ETHUSDT"}
    table = StateTable("bitget", "f", {"bitget:f:1": a, "bitget:f:2": b}, 5, 2)
    out = io.StringIO()
    print_state(table, "jsonl", out)
    assert out.getvalue().splitlines()[0] == (
        '{"key": "bitget:f:1", "value": {"order_id": "1", "symbol": "BTCUSDT", "side": "BUY", '
        '"order_type": "LIMIT", "status": "NEW", "price": "100", "quantity": "0.5"}}'
    )
    out = io.StringIO()
    print_state(table, "summary", out)
    assert out.getvalue().splitlines() == [
        "bitget:f: 2 open orders (5 records read, 2 tombstones)",
        "  BTCUSDT: 1",
        "  ETHUSDT: 1",
        "  1 BTCUSDT BUY LIMIT NEW 100 0.5",
        "  2 ETHUSDT BUY LIMIT NEW 100 0.5",
    ]


def test_state_settings() -> None:
    from connector.settings import Settings

    assert Settings().topic_state == "open-orders" and Settings().schedules_file is None
    assert Settings(topic_state="it-state").topic_state == "it-state"
