"""The compiled Avro writer writes exactly fastavro's bytes, and leaves to fastavro what it can't.

codec.encode_body uses connector/avro_writer.py for speed; the wire format is pinned by the
.avsc files and by fastavro, so every record is checked byte for byte against fastavro.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import avro_writer, codec

NAMES = [codec.ORDER_EVENT, codec.QUERY_RESULT, codec.ERROR_EVENT, codec.QUERY_ORDERS]


def fastavro_body(full_name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, codec.schema(full_name).parsed, record)
    return buf.getvalue()


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` (fastavro-parsed), with the edge cases of each type."""
    if isinstance(schema, list):
        return st.one_of(*(values(s) for s in schema))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})
        if kind == "enum":
            return st.sampled_from(schema["symbols"])
        if kind == "array":
            return st.lists(values(schema["items"]), max_size=4)
        return values(kind)
    return {
        "null": st.none(),
        "string": st.text(max_size=200) | st.text(st.characters(max_codepoint=127), max_size=80),
        "bytes": st.binary(max_size=300),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1) | st.integers(-200, 200),
        "long": st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**42), 2**42),
    }[schema]


@pytest.mark.parametrize("name", NAMES)
def test_every_connector_schema_is_compiled(name: str) -> None:
    assert avro_writer.compile_writer(codec.schema(name).parsed) is not None


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_same_bytes_as_fastavro(name: str, data: st.DataObject) -> None:
    record = data.draw(values(codec.schema(name).parsed))
    compiled = avro_writer.compile_writer(codec.schema(name).parsed)
    assert compiled is not None
    assert compiled(record) == fastavro_body(name, record)
    assert codec.encode_body(name, record) == fastavro_body(name, record)


def pipeline_like_event() -> dict[str, Any]:
    ct = codec.schema(codec.ORDER_EVENT).parsed["fields"]
    record: dict[str, Any] = {f["name"]: None for f in ct}
    record.update(
        event_id="e", request_id="r", exchange="ascendex", account="desk", order_id="o",
        symbol="BTC-PERP", status="NEW", observed_at=1, snapshot_seq=1, snapshot_size=1,
        raw="{}", reduce_only=False, post_only=False, liquidation=False, exec_instructions=[],
    )  # fmt: skip
    return record


@pytest.mark.parametrize(
    "change",
    [
        {"observed_at": datetime(2024, 1, 2, tzinfo=UTC)},  # a datetime, not millis
        {"snapshot_seq": True},  # a bool where an int is expected
        {"snapshot_seq": 2**40},  # out of the int range
        {"reduce_only": 1},  # truthy, not a bool
        {"exec_instructions": ("Post",)},  # a tuple, not a list
        {"status": "NOT_A_STATUS"},
    ],
)
def test_what_it_does_not_write_is_left_to_fastavro(change: dict[str, Any]) -> None:
    record = {**pipeline_like_event(), **change}
    compiled = avro_writer.compile_writer(codec.schema(codec.ORDER_EVENT).parsed)
    assert compiled is not None
    with pytest.raises(avro_writer.Fallback):
        compiled(record)
    try:
        expected: bytes | type[BaseException] = fastavro_body(codec.ORDER_EVENT, record)
    except Exception as exc:  # fastavro's own verdict on the record
        expected = type(exc)
    if isinstance(expected, bytes):
        assert codec.encode_body(codec.ORDER_EVENT, record) == expected
    else:
        with pytest.raises(expected):
            codec.encode_body(codec.ORDER_EVENT, record)


def test_missing_field_and_lone_surrogate_are_fastavros_to_judge() -> None:
    record = pipeline_like_event()
    del record["account_id"]
    assert codec.encode_body(codec.ORDER_EVENT, record) == fastavro_body(codec.ORDER_EVENT, record)
    bad = {**pipeline_like_event(), "symbol": "x\udc80"}
    with pytest.raises(UnicodeEncodeError):
        fastavro_body(codec.ORDER_EVENT, bad)
    with pytest.raises(UnicodeEncodeError):
        codec.encode_body(codec.ORDER_EVENT, bad)


def test_unsupported_schema_is_not_compiled() -> None:
    parsed = fastavro.parse_schema(
        {"type": "record", "name": "T", "fields": [{"name": "x", "type": "double"}]}
    )
    assert avro_writer.compile_writer(parsed) is None
