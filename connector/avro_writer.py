"""A compiled Avro binary writer for the connector's own record schemas, byte-identical to fastavro.

Why: fastavro's ``schemaless_writer`` interprets the schema for every record (union branch
resolution, logical-type preparation, a dict lookup per field) and cost about 16 µs per
OrderEvent, half of the connector's whole parse + normalize + encode (``make bench``) and the
largest single item in the worker's profile. The schemas are fixed, so each one is compiled once
into the source of one straight-line Python function (``print(writer_source(schema))`` shows
it): per field, a type check and the ready byte pieces, no call per field.

Only what the connector's schemas use is compiled (records, ``["null", T]`` unions, enums,
string, bytes, boolean, int, long and timestamp-millis as an int). Anything else, at compile time
(:func:`compile_writer` returns None) or per record (a value whose type is not exactly what the
branch expects, a missing field, an int out of range, text UTF-8 cannot encode:
:class:`Fallback`), is left to fastavro, so errors and edge cases stay fastavro's own.
tests/unit/test_avro_writer.py checks the bytes against fastavro on generated records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# Zigzag-encoded varints below 128 are one byte: precomputed.
_ONE_BYTE = tuple(bytes((n,)) for n in range(128))


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


class _Unsupported(Exception):
    """A schema construct this module does not compile."""


class _Emitter:
    """Generates the body of ``encode(r)``: ``a`` appends a byte piece, ``v<n>`` hold values."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._n = 0

    def var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def value(self, schema: Any, v: str, indent: int) -> None:
        """Code writing the value held in variable ``v`` as ``schema``."""
        e = self.emit
        if isinstance(schema, list):
            if len(schema) != 2 or schema[0] != "null" or schema[1] == "null":
                raise _Unsupported(str(schema))
            e(indent, f"if {v} is None:")
            e(indent + 1, "a(b'\\x00')")
            e(indent, "else:")
            e(indent + 1, "a(b'\\x02')")
            self.value(schema[1], v, indent + 1)
            return
        if isinstance(schema, dict):
            kind, logical = schema.get("type"), schema.get("logicalType")
            if kind == "record":
                e(indent, f"if type({v}) is not dict:")
                e(indent + 1, "raise Fallback")
                for field in schema["fields"]:
                    item = self.var()
                    e(indent, f"{item} = {v}[{field['name']!r}]")
                    self.value(field["type"], item, indent)
                return
            if kind == "enum":
                table = f"ENUM{len(self.constants)}"
                self.constants[table] = {
                    s: _varint(i << 1) for i, s in enumerate(schema["symbols"])
                }
                e(indent, f"if type({v}) is not str or {v} not in {table}:")
                e(indent + 1, "raise Fallback")
                e(indent, f"a({table}[{v}])")
                return
            if kind == "array":
                e(indent, f"if type({v}) is not list:")
                e(indent + 1, "raise Fallback")
                e(indent, f"if {v}:")
                e(indent + 1, f"a(varint(len({v}) << 1))")
                item = self.var()
                e(indent + 1, f"for {item} in {v}:")
                self.value(schema["items"], item, indent + 2)
                e(indent, "a(b'\\x00')")
                return
            if logical is None or (kind == "long" and logical == "timestamp-millis"):
                # timestamp-millis: an int is written as is; a datetime falls back
                self.value(kind, v, indent)
                return
            raise _Unsupported(str(schema))
        if schema in ("string", "bytes"):
            e(indent, f"if type({v}) is not {'str' if schema == 'string' else 'bytes'}:")
            e(indent + 1, "raise Fallback")
            data = v
            if schema == "string":
                data = self.var()
                e(indent, f"{data} = {v}.encode()")  # UnicodeEncodeError -> Fallback
            e(indent, f"n = len({data}) << 1")
            e(indent, "a(ONE[n] if n < 128 else varint(n))")
            e(indent, f"a({data})")
            return
        if schema == "boolean":
            e(indent, f"if {v} is True:")
            e(indent + 1, "a(b'\\x01')")
            e(indent, f"elif {v} is False:")
            e(indent + 1, "a(b'\\x00')")
            e(indent, "else:")
            e(indent + 1, "raise Fallback")
            return
        if schema in ("int", "long"):
            lo, hi = _INT32 if schema == "int" else _INT64
            e(indent, f"if type({v}) is not int or not {lo} <= {v} <= {hi}:")
            e(indent + 1, "raise Fallback")
            e(indent, f"n = ({v} << 1) ^ ({v} >> 63)")
            e(indent, "a(ONE[n] if n < 128 else varint(n))")
            return
        raise _Unsupported(str(schema))


def writer_source(parsed_schema: Any) -> tuple[str, dict[str, Any]] | None:
    """The Python source of the writer for a fastavro-parsed record schema, with the constants
    it uses; None when the schema uses something this module does not compile."""
    if not isinstance(parsed_schema, dict) or parsed_schema.get("type") != "record":
        return None
    em = _Emitter()
    try:
        em.value(parsed_schema, "r", 2)
    except _Unsupported:
        return None
    source = "\n".join(
        [
            "def encode(r):",
            "    out = []",
            "    a = out.append",
            "    try:",
            *em.lines,
            "    except (KeyError, UnicodeEncodeError):",
            "        raise Fallback from None  # fastavro decides what these mean",
            "    return b''.join(out)",
        ]
    )
    return source, em.constants


def compile_writer(parsed_schema: Any) -> Callable[[dict[str, Any]], bytes] | None:
    """A function record -> Avro binary body for a fastavro-parsed record schema, or None when
    the schema uses something this module does not compile. The function raises
    :class:`Fallback` for a record it cannot write exactly as fastavro would."""
    compiled = writer_source(parsed_schema)
    if compiled is None:
        return None
    source, constants = compiled
    namespace: dict[str, Any] = {
        "ONE": _ONE_BYTE,
        "varint": _varint,
        "Fallback": Fallback,
        **constants,
    }
    exec(compile(source, f"<avro writer {parsed_schema.get('name')}>", "exec"), namespace)  # noqa: S102 - source generated above from the schema, no outside text
    encode: Callable[[dict[str, Any]], bytes] = namespace["encode"]
    return encode
