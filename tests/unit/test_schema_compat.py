"""Every schema change must stay backward compatible with the last released schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

AVRO = Path(__file__).resolve().parents[2] / "avro"
RELEASES = sorted(
    (p for p in (AVRO / "released").iterdir() if p.is_dir()),
    key=lambda p: [int(x) for x in p.name.split(".")],
)
LATEST = RELEASES[-1]


def _example(schema: Any) -> Any:
    """A value of every field, so the writer exercises the whole released schema."""
    if isinstance(schema, list):
        return _example(next(s for s in schema if s != "null"))
    if isinstance(schema, dict):
        t = schema["type"]
        if t == "record":
            return {f["name"]: _example(f["type"]) for f in schema["fields"]}
        if t == "enum":
            return schema["symbols"][0]
        return _example(t)
    return {"string": "x", "long": 1, "int": 1, "boolean": True, "bytes": b"x"}[schema]


@pytest.mark.parametrize("path", sorted(LATEST.glob("*.avsc")), ids=lambda p: p.stem)
def test_current_schema_reads_released_data(path: Path) -> None:
    old = json.loads(path.read_text())
    new = json.loads((AVRO / path.name).read_text())
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), _example(old))
    buf.seek(0)
    fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(new))


@pytest.mark.parametrize("path", sorted(LATEST.glob("*.avsc")), ids=lambda p: p.stem)
def test_added_fields_have_defaults(path: Path) -> None:
    old = {f["name"] for f in json.loads(path.read_text())["fields"]}
    new = json.loads((AVRO / path.name).read_text())["fields"]
    missing_default = [f["name"] for f in new if f["name"] not in old and "default" not in f]
    assert not missing_default


def test_every_current_schema_was_released_or_is_new_with_defaults() -> None:
    assert {p.name for p in AVRO.glob("*.avsc")} >= {p.name for p in LATEST.glob("*.avsc")}


def test_error_codes_match_the_schema_and_new_ones_reach_old_readers_as_the_default() -> None:
    from connector.errors import ErrorCode

    new = json.loads((AVRO / "ErrorEvent.avsc").read_text())
    old = json.loads((LATEST / "ErrorEvent.avsc").read_text())
    (enum,) = [f["type"] for f in new["fields"] if f["name"] == "code"]
    assert enum["symbols"] == [c.value for c in ErrorCode]
    (old_enum,) = [f["type"] for f in old["fields"] if f["name"] == "code"]
    assert enum["symbols"][: len(old_enum["symbols"])] == old_enum["symbols"]  # appended only
    for code in ("MALFORMED_RESPONSE", "SNAPSHOT_TOO_LARGE", "VENUE_UNAVAILABLE", "VENUE_DISABLED"):
        record = {**_example(new), "code": code}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(new), record)
        buf.seek(0)
        read = fastavro.schemaless_reader(
            buf, fastavro.parse_schema(new), fastavro.parse_schema(old)
        )
        assert isinstance(read, dict) and read["code"] == enum["default"] == "INTERNAL"


# --- order intent (issue 10): new OrderEvent fields, backward compatible ------------------------

INTENT_FIELDS = {
    "reduce_only": False,
    "post_only": False,
    "liquidation": False,
    "exec_instructions": [],
}


def test_order_intent_fields_are_appended_with_defaults() -> None:
    old = json.loads((LATEST / "OrderEvent.avsc").read_text())["fields"]
    new = json.loads((AVRO / "OrderEvent.avsc").read_text())["fields"]
    assert [f["name"] for f in new[: len(old)]] == [f["name"] for f in old]  # appended only
    added = {f["name"]: f["default"] for f in new[len(old) :]}
    assert added == INTENT_FIELDS


def test_released_order_events_read_with_intent_defaults() -> None:
    """A consumer on the new schema reading an event written before the change sees "no
    instruction known" (false, empty list), never a decoding error."""
    old = json.loads((LATEST / "OrderEvent.avsc").read_text())
    new = json.loads((AVRO / "OrderEvent.avsc").read_text())
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), _example(old))
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(new))
    assert isinstance(read, dict)
    assert {k: read[k] for k in INTENT_FIELDS} == INTENT_FIELDS


def test_order_intent_decodes_with_apache_avro_from_the_avsc_alone() -> None:
    """The connector's single-object encoding of a reduce-only order, decoded by the Apache
    Avro library with nothing but the .avsc text (what a consumer in another stack has)."""
    import avro.io
    import avro.schema

    from connector import codec
    from connector.exchanges.ascendex.parsing import parse_exec_inst
    from connector.model import Order, OrderQuery, OrderStatus
    from connector.pipeline import order_event

    intent = parse_exec_inst("PosStopMkt")
    order = Order(
        exchange="ascendex",
        order_id="o-1",
        symbol="BTC-PERP",
        raw='{"execInst":"PosStopMkt"}',
        status=OrderStatus.PENDING_NEW,
        reduce_only=intent.reduce_only,
        post_only=intent.post_only,
        liquidation=intent.liquidation,
        exec_instructions=intent.instructions,
    )
    query = OrderQuery(request_id="r-1", exchange="ascendex", account="acc")
    record = order_event(order, query, seq=1, size=1, observed_at=1700000000000)
    data = codec.encode_single_object(codec.ORDER_EVENT, record)
    text = (AVRO / "OrderEvent.avsc").read_text()
    reader = avro.io.DatumReader(avro.schema.parse(text))
    decoded = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded["reduce_only"] is True
    assert decoded["post_only"] is False
    assert decoded["liquidation"] is False
    assert decoded["exec_instructions"] == ["PosStopMkt"]


# --- freshness as data (issue 21): new schemas, no released version yet --------------------------

NEW_SCHEMAS = ("AccountStatus.avsc", "OrderChange.avsc")


def test_the_new_schemas_are_not_released_yet_and_stand_alone() -> None:
    """Not in the last release (so nothing to be compatible with yet); each parses from its own
    file, as a consumer in another stack reads it."""
    released = {p.name for p in LATEST.glob("*.avsc")}
    for name in NEW_SCHEMAS:
        assert name not in released
        fastavro.parse_schema(json.loads((AVRO / name).read_text()))


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f for f in schema["fields"]}


def test_order_view_copies_order_event_fields_exactly() -> None:
    """OrderChange.before/after hold an OrderView: every field is an OrderEvent field with the
    same type (so a consumer maps one onto the other), in the order connector/changes.py keeps."""
    from connector.changes import VIEW_FIELDS

    event = _fields(json.loads((AVRO / "OrderEvent.avsc").read_text()))
    change = _fields(json.loads((AVRO / "OrderChange.avsc").read_text()))
    view = change["before"]["type"][1]
    assert view["name"] == "OrderView" and change["after"]["type"] == ["null", "OrderView"]
    assert tuple(f["name"] for f in view["fields"]) == VIEW_FIELDS
    for f in view["fields"]:
        assert f["type"] == event[f["name"]]["type"], f["name"]
        assert f.get("default") == event[f["name"]].get("default"), f["name"]


def test_new_enums_have_a_default_for_readers_of_an_older_schema() -> None:
    from connector import freshness

    status = _fields(json.loads((AVRO / "AccountStatus.avsc").read_text()))["status"]["type"]
    assert status["symbols"] == [freshness.FRESH, freshness.FAILING, freshness.STALE,
                                 freshness.UNKNOWN, freshness.DISABLED]  # fmt: skip
    assert status["default"] == "UNKNOWN"
    change = _fields(json.loads((AVRO / "OrderChange.avsc").read_text()))["change"]["type"]
    assert change["symbols"] == ["OPENED", "CHANGED", "CLOSED"] and change["default"] == "CHANGED"


def test_every_nullable_field_of_the_new_schemas_defaults_to_null() -> None:
    for name in NEW_SCHEMAS:
        for f in json.loads((AVRO / name).read_text())["fields"]:
            if isinstance(f["type"], list) and f["type"][0] == "null":
                assert f.get("default", "missing") is None, (name, f["name"])
