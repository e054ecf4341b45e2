"""Reading and validating query-orders commands.

A command arrives as JSON or Avro (single-object or Confluent framing). Everything that can be
wrong with it is reported as :class:`~connector.errors.InvalidCommand` (or ``UNSUPPORTED`` for an
exchange the connector does not serve) naming the field, so the caller can fix it; the pipeline
turns that into an ErrorEvent + FAILED QueryResult and moves on.
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


@dataclass(frozen=True)
class RawCommand:
    """Whatever could be read of a command, even an invalid one, for the error outputs."""

    fields: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        rid = self.fields.get("request_id")
        return rid if isinstance(rid, str) and 0 < len(rid) <= MAX_REQUEST_ID else None

    @property
    def exchange(self) -> str | None:
        ex = self.fields.get("exchange")
        return ex.lower() if isinstance(ex, str) and _TOKEN.match(ex) else None

    @property
    def account(self) -> str | None:
        acc = self.fields.get("account")
        return acc if isinstance(acc, str) and _TOKEN.match(acc) else None


async def decode_command(value: bytes | None, serializer: Serializer) -> RawCommand:
    """Bytes -> field mapping, from JSON or Avro. Raises InvalidCommand."""
    if not value:
        raise InvalidCommand("empty command: expected a JSON object or an Avro QueryOrders record")
    if value[:1] in (b"\xc3", b"\x00"):
        try:
            name, record = await serializer.decode(value)
        except DecodeError as exc:
            raise InvalidCommand(f"unreadable Avro command: {exc}") from None
        if name != QUERY_ORDERS:
            raise InvalidCommand(f"expected an Avro {QUERY_ORDERS} record, got {name}")
        return RawCommand(record)
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidCommand("command is neither UTF-8 JSON nor Avro") from None
    except json.JSONDecodeError as exc:
        raise InvalidCommand(f"malformed JSON command: {exc.msg} at position {exc.pos}") from None
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
