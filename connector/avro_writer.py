"""A compiled Avro binary writer for the connector's own record schemas, byte-identical to fastavro.

Why: fastavro's ``schemaless_writer`` interprets the schema for every record (union branch
resolution, logical-type preparation, a dict lookup per field) and cost about 16 µs per
OrderEvent, half of the connector's whole parse + normalize + encode (``make bench``) and the
largest single item in the worker's profile. The schemas are fixed, so they are compiled once
here into one small closure per field; a record is then a straight walk that appends ready
byte pieces.

Only what the connector's schemas use is compiled (records, ``["null", T]`` unions, enums,
string, bytes, boolean, int, long and timestamp-millis as an int). Anything else, at compile time
(:func:`compile_writer` returns None) or per record (a value whose type is not exactly what the
branch expects, a missing field, an int out of range: :class:`Fallback`), is left to fastavro,
so errors and edge cases stay fastavro's own. tests/unit/test_avro_writer.py checks the bytes
against fastavro on generated records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Parts = list[bytes]
FieldWriter = Callable[[Any, Parts], None]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# Zigzag-encoded varints below 128 are one byte: precomputed.
_ONE_BYTE = [bytes((n,)) for n in range(128)]


class Fallback(Exception):
    """This record needs fastavro (a value outside what the compiled writer handles)."""


def _varint(n: int) -> bytes:
    """Avro varint of an already zigzagged, non-negative ``n``."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _long_writer(lo: int, hi: int) -> FieldWriter:
    def write(v: Any, out: Parts) -> None:
        if type(v) is not int or not lo <= v <= hi:
            raise Fallback
        out.append(_varint((v << 1) ^ (v >> 63)))

    return write


def _string(v: Any, out: Parts) -> None:
    if type(v) is not str:
        raise Fallback
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        raise Fallback from None
    n = len(b) << 1
    out.append(_ONE_BYTE[n] if n < 128 else _varint(n))
    out.append(b)


def _bytes(v: Any, out: Parts) -> None:
    if type(v) is not bytes:
        raise Fallback
    n = len(v) << 1
    out.append(_ONE_BYTE[n] if n < 128 else _varint(n))
    out.append(v)


def _boolean(v: Any, out: Parts) -> None:
    if v is True:
        out.append(b"\x01")
    elif v is False:
        out.append(b"\x00")
    else:
        raise Fallback


def _enum_writer(symbols: list[str]) -> FieldWriter:
    index = {s: _varint(i << 1) for i, s in enumerate(symbols)}

    def write(v: Any, out: Parts) -> None:
        if type(v) is not str or v not in index:
            raise Fallback
        out.append(index[v])

    return write


def _nullable_writer(inner: FieldWriter) -> FieldWriter:
    def write(v: Any, out: Parts) -> None:
        if v is None:
            out.append(b"\x00")
        else:
            out.append(b"\x02")
            inner(v, out)

    return write


def _nullable_string(v: Any, out: Parts) -> None:
    # The commonest field type, inlined: ["null", "string"].
    if v is None:
        out.append(b"\x00")
        return
    if type(v) is not str:
        raise Fallback
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        raise Fallback from None
    n = len(b) << 1
    out.append(b"\x02")
    out.append(_ONE_BYTE[n] if n < 128 else _varint(n))
    out.append(b)


def _array_writer(inner: FieldWriter) -> FieldWriter:
    def write(v: Any, out: Parts) -> None:
        if type(v) is not list:
            raise Fallback
        if v:
            n = len(v)
            out.append(_varint(n << 1))
            for item in v:
                inner(item, out)
        out.append(b"\x00")

    return write


def _record_writer(fields: list[tuple[str, FieldWriter]]) -> FieldWriter:
    def write(v: Any, out: Parts) -> None:
        if type(v) is not dict:
            raise Fallback
        try:
            for name, w in fields:
                w(v[name], out)
        except KeyError:
            raise Fallback from None  # fastavro decides what a missing field means

    return write


def _compile(schema: Any) -> FieldWriter | None:
    if isinstance(schema, str):
        primitive: dict[str, FieldWriter] = {
            "string": _string,
            "bytes": _bytes,
            "boolean": _boolean,
            "int": _long_writer(*_INT32),
            "long": _long_writer(*_INT64),
        }
        return primitive.get(schema)
    if isinstance(schema, list):
        if len(schema) == 2 and schema[0] == "null" and schema[1] != "null":
            if schema[1] == "string":
                return _nullable_string
            inner = _compile(schema[1])
            return _nullable_writer(inner) if inner is not None else None
        return None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if kind == "record":
        fields: list[tuple[str, FieldWriter]] = []
        for field in schema["fields"]:
            w = _compile(field["type"])
            if w is None:
                return None
            fields.append((field["name"], w))
        return _record_writer(fields)
    if kind == "enum":
        return _enum_writer(list(schema["symbols"]))
    if kind == "array":
        inner = _compile(schema["items"])
        return _array_writer(inner) if inner is not None else None
    if kind == "long" and logical in (None, "timestamp-millis"):
        return _long_writer(*_INT64)  # an int is written as is; a datetime falls back
    if kind in ("string", "bytes", "boolean", "int", "long") and logical is None:
        return _compile(kind)
    return None


def compile_writer(parsed_schema: Any) -> Callable[[dict[str, Any]], bytes] | None:
    """A function record -> Avro binary body for a fastavro-parsed record schema, or None when
    the schema uses something this module does not compile. The function raises
    :class:`Fallback` for a record it cannot write exactly as fastavro would."""
    write = _compile(parsed_schema) if isinstance(parsed_schema, dict) else None
    if write is None or parsed_schema.get("type") != "record":
        return None
    record_writer = write

    def encode(record: dict[str, Any]) -> bytes:
        out: Parts = []
        record_writer(record, out)
        return b"".join(out)

    return encode
