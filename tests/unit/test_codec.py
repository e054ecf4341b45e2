"""Avro encoding: single-object framing decodable by another library with the .avsc alone."""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path

import avro.io
import avro.schema
import pytest

from connector import codec

AVRO_DIR = Path(__file__).resolve().parents[2] / "avro"


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification gives it (independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def spec_canonical_form(avsc_text: str) -> str:
    # Apache avro's Python canonical_form keeps logical-type primitives as {"type":"long"};
    # the spec's [PRIMITIVES] rule reduces them to "long" (as Java does). Apply that rule.
    pcf = avro.schema.parse(avsc_text).canonical_form
    return re.sub(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}', r'"\1"', pcf)


def sample_order_event() -> dict[str, object]:
    return {
        "event_id": "e-1",
        "request_id": "r-1",
        "exchange": "ascendex",
        "account": "desk",
        "order_id": "o-1",
        "symbol": "BTC-PERP",
        "unified_symbol": "BTC/USDT:USDT",
        "side": "SELL",
        "order_type": "LIMIT",
        "status": "ACK",
        "price": "66000",
        "quantity": "0.0001",
        "created_at": 1615696544843,
        "observed_at": 1615696544900,
        "copy_trading": {"trader_id": "t", "open_size": "0.001", "open_time": 1627567376984},
        "snapshot_seq": 1,
        "snapshot_size": 1,
        "raw": "{}",
    }


@pytest.mark.parametrize("name", sorted(codec.schemas()))
def test_fingerprint_matches_the_spec(name: str) -> None:
    s = codec.schema(name)
    text = (AVRO_DIR / f"{name.rsplit('.', 1)[1]}.avsc").read_text()
    expected = struct.pack("<Q", crc64_avro(spec_canonical_form(text).encode()))
    assert s.fingerprint == expected


def test_single_object_decodes_with_apache_avro_and_the_avsc_alone() -> None:
    data = codec.encode_single_object(codec.ORDER_EVENT, sample_order_event())
    assert data[:2] == b"\xc3\x01"
    text = (AVRO_DIR / "OrderEvent.avsc").read_text()
    assert data[2:10] == struct.pack("<Q", crc64_avro(spec_canonical_form(text).encode()))
    reader = avro.io.DatumReader(avro.schema.parse(text))
    decoded = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded["price"] == "66000"
    assert decoded["quantity"] == "0.0001"
    assert decoded["status"] == "ACK"
    assert decoded["side"] == "SELL"
    assert decoded["position_side"] is None
    assert decoded["copy_trading"]["open_size"] == "0.001"
    assert int(decoded["created_at"].timestamp() * 1000) == 1615696544843


def test_round_trip_and_unknown_fingerprint() -> None:
    data = codec.encode_single_object(codec.ORDER_EVENT, sample_order_event())
    name, rec = codec.decode_single_object(data)
    assert name == codec.ORDER_EVENT
    assert codec.to_plain(rec)["created_at"] == 1615696544843
    with pytest.raises(codec.DecodeError, match="unknown schema fingerprint"):
        codec.decode_single_object(b"\xc3\x01" + b"\x00" * 8 + data[10:])
    with pytest.raises(codec.DecodeError):
        codec.decode_single_object(data[:12])


def test_schemas_are_the_avsc_files() -> None:
    names = {json.loads(p.read_text())["name"] for p in AVRO_DIR.glob("*.avsc")}
    assert {n.rsplit(".", 1)[1] for n in codec.schemas()} == names
    assert set(codec.schemas()) >= {
        codec.QUERY_ORDERS,
        codec.ORDER_EVENT,
        codec.QUERY_RESULT,
        codec.ERROR_EVENT,
    }


def test_no_float_or_double_in_order_event() -> None:
    text = (AVRO_DIR / "OrderEvent.avsc").read_text()
    assert '"float"' not in text and '"double"' not in text
