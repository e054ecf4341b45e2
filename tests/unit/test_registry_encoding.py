"""Confluent wire format with schema registration, against the registry stand-in."""

from __future__ import annotations

import io
import json
import struct

import avro.io
import avro.schema
import httpx

from connector import codec
from tests.support.registry import start_registry


async def test_confluent_framing_registers_under_topic_value_subject() -> None:
    runner, url, state = await start_registry()
    serializer = codec.Serializer(url)
    try:
        record = {
            "request_id": "r", "exchange": "ascendex", "account": "a", "symbol": None, "status": "OK",
            "order_count": 2, "error_code": None, "requested_at": None, "started_at": 1,
            "completed_at": 2, "exchange_calls": 1,
        }  # fmt: skip
        first = await serializer.encode("order-query-results", codec.QUERY_RESULT, record)
        second = await serializer.encode("order-query-results", codec.QUERY_RESULT, record)
        assert first[:1] == b"\x00"
        (schema_id,) = struct.unpack(">I", first[1:5])
        assert first == second
        assert state.registrations == 1  # cached after the first registration
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/subjects")).json() == ["order-query-results-value"]
            latest = (await http.get("/subjects/order-query-results-value/versions/latest")).json()
            assert latest["id"] == schema_id
            # A consumer that knows only the registry decodes it with another Avro library.
            writer = avro.schema.parse(
                (await http.get(f"/schemas/ids/{schema_id}")).json()["schema"]
            )
        decoded = avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(first[5:])))
        assert decoded["order_count"] == 2 and decoded["status"] == "OK"
        # ...and the connector's own decoder resolves the id through the registry.
        fresh = codec.Serializer(url)
        name, rec = await fresh.decode(first)
        await fresh.aclose()
        assert name == codec.QUERY_RESULT and rec["exchange_calls"] == 1
    finally:
        await serializer.aclose()
        await runner.cleanup()


async def test_different_schemas_get_different_ids() -> None:
    runner, url, _ = await start_registry()
    serializer = codec.Serializer(url)
    try:
        a = await serializer.registry.register("t-value", codec.ORDER_EVENT)  # type: ignore[union-attr]
        b = await serializer.registry.register("t-value", codec.ERROR_EVENT)  # type: ignore[union-attr]
        assert a != b
        source = json.loads(codec.schema(codec.ORDER_EVENT).source)
        assert source["name"] == "OrderEvent"
    finally:
        await serializer.aclose()
        await runner.cleanup()
