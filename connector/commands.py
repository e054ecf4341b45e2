"""Reading and validating query-orders commands.

A command arrives as JSON or Avro (single-object or Confluent framing). Everything that can be
wrong with it is reported as :class:`~connector.errors.InvalidCommand` (or ``UNSUPPORTED`` for an
exchange the connector does not serve) naming the field, so the caller can fix it; the pipeline
turns that into an ErrorEvent + FAILED QueryResult and moves on.

Decoding is defensive because anyone who can write to the topic controls these bytes: a command
larger than ``max_bytes`` is refused before it is parsed, JSON nesting deeper than ``max_depth``
is refused by a linear scan before ``json.loads`` could recurse, ``NaN``/``Infinity`` and
over-long integers are refused, and a string that is not valid Unicode (a lone UTF-16 surrogate
from a ``\\ud800`` escape) is refused by validation and shown escaped in the error outputs.
A registry outage while decoding a Confluent-framed command is *not* an input problem: it
propagates as :class:`~connector.codec.RegistryUnavailable` for the worker to wait out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .codec import QUERY_ORDERS, DecodeError, Serializer
from .errors import InvalidCommand, Unsupported
from .model import Exchange, OrderQuery

BITGET_PRODUCT_TYPES = ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES")
DEFAULT_BITGET_PRODUCT_TYPE = "USDT-FUTURES"
_TOKEN = re.compile(r"^[A-Za-z0-9._:/@-]{1,128}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
MAX_REQUEST_ID = 256
DEFAULT_MAX_BYTES = 65_536
DEFAULT_MAX_DEPTH = 32
_JSON_STRUCTURE = re.compile(rb'["\\\[\]{}]')


def safe_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON ``data`` nests arrays/objects deeper than ``limit``; one linear pass over
    the structural bytes, skipping string contents (and their escapes)."""
    depth = 0
    in_string = False
    skip = -1
    for m in _JSON_STRUCTURE.finditer(data):
        i = m.start()
        if i == skip:
            continue
        c = data[i]
        if in_string:
            if c == 0x5C:  # backslash: the next byte is escaped
                skip = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise InvalidCommand(f"JSON command contains {name}, which is not valid JSON")


@dataclass(frozen=True)
class RawCommand:
    """Whatever could be read of a command, even an invalid one, for the error outputs."""

    fields: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        rid = self.fields.get("request_id")
        if isinstance(rid, str) and 0 < len(rid) <= MAX_REQUEST_ID:
            return safe_text(rid)
        return None

    @property
    def exchange(self) -> str | None:
        ex = self.fields.get("exchange")
        return ex.lower() if isinstance(ex, str) and _TOKEN.match(ex) else None

    @property
    def account(self) -> str | None:
        acc = self.fields.get("account")
        return acc if isinstance(acc, str) and _TOKEN.match(acc) else None


async def decode_command(
    value: bytes | None,
    serializer: Serializer,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> RawCommand:
    """Bytes -> field mapping, from JSON or Avro. Raises InvalidCommand (or RegistryUnavailable
    when the registry needed for a Confluent-framed command cannot be reached)."""
    if not value:
        raise InvalidCommand("empty command: expected a JSON object or an Avro QueryOrders record")
    if len(value) > max_bytes:
        raise InvalidCommand(f"command is {len(value)} bytes, over the limit of {max_bytes}")
    if value[:1] in (b"\xc3", b"\x00"):
        try:
            name, record = await serializer.decode(value)
        except DecodeError as exc:
            raise InvalidCommand(f"unreadable Avro command: {exc}") from None
        if name != QUERY_ORDERS:
            raise InvalidCommand(f"expected an Avro {QUERY_ORDERS} record, got {name}")
        return RawCommand(record)
    if json_depth_exceeds(value, max_depth):
        raise InvalidCommand(f"JSON command nests deeper than {max_depth} levels")
    try:
        data = json.loads(value.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidCommand("command is neither UTF-8 JSON nor Avro") from None
    except json.JSONDecodeError as exc:
        raise InvalidCommand(f"malformed JSON command: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # backstop; the depth scan refuses such input first
        raise InvalidCommand(f"JSON command nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise InvalidCommand(f"malformed JSON command: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise InvalidCommand("JSON command must be an object")
    return RawCommand(data)


def validate_command(raw: RawCommand) -> OrderQuery:
    """Field checks of the QueryOrders contract. Unknown extra fields are ignored (forward
    compatibility for callers on a newer schema)."""
    f = raw.fields
    request_id = _required_str(f, "request_id", max_len=MAX_REQUEST_ID)
    exchange_name = _required_str(f, "exchange", pattern=_TOKEN).lower()
    try:
        exchange = Exchange(exchange_name)
    except ValueError:
        known = ", ".join(e.value for e in Exchange)
        raise Unsupported(
            f"exchange {exchange_name!r} is not supported (supported: {known})"
        ) from None
    account = _required_str(f, "account", pattern=_TOKEN)
    symbol = _optional_str(f, "symbol", pattern=_SYMBOL)
    product_type = _optional_str(f, "product_type", pattern=_TOKEN)
    trader_id = _optional_str(f, "trader_id", pattern=_TOKEN)
    if exchange is Exchange.BITGET:
        product_type = (product_type or DEFAULT_BITGET_PRODUCT_TYPE).upper()
        if product_type not in BITGET_PRODUCT_TYPES:
            allowed = ", ".join(BITGET_PRODUCT_TYPES)
            raise InvalidCommand(f"product_type must be one of {allowed}, got {product_type!r}")
    else:
        for name, value in (("product_type", product_type), ("trader_id", trader_id)):
            if value is not None:
                raise InvalidCommand(f"{name} applies to bitget only, not {exchange.value}")
    return OrderQuery(
        request_id=request_id,
        exchange=exchange,
        account=account,
        symbol=symbol,
        product_type=product_type,
        trader_id=trader_id,
        requested_at=_optional_millis(f, "requested_at"),
        deadline_ms=_optional_millis(f, "deadline_ms"),
    )


def _required_str(
    f: dict[str, Any], name: str, *, max_len: int = 128, pattern: re.Pattern[str] | None = None
) -> str:
    value = f.get(name)
    if value is None or value == "":
        raise InvalidCommand(f"{name} is required")
    return _check_str(name, value, max_len, pattern)


def _optional_str(f: dict[str, Any], name: str, *, pattern: re.Pattern[str]) -> str | None:
    value = f.get(name)
    if value is None or value == "":
        return None
    return _check_str(name, value, 128, pattern)


def _check_str(name: str, value: Any, max_len: int, pattern: re.Pattern[str] | None) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidCommand(f"{name} is longer than {max_len} characters")
    if not _valid_unicode(value):
        raise InvalidCommand(f"{name} is not valid Unicode (lone surrogate)")
    if pattern is not None and not pattern.match(value):
        raise InvalidCommand(f"{name} has characters outside {pattern.pattern}")
    return value


def _optional_millis(f: dict[str, Any], name: str) -> int | None:
    value = f.get(name)
    if value is None:
        return None
    if isinstance(value, datetime):  # Avro timestamp-millis, decoded by fastavro
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(f"{name} must be an integer of UTC epoch milliseconds")
    if not 0 <= value < 10**14:
        raise InvalidCommand(f"{name} is out of range for epoch milliseconds")
    return value
