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

from pydantic import ValidationError

from .codec import QUERY_ORDERS, DecodeError, Serializer
from .errors import InvalidCommand, Unsupported
from .model import OrderQuery

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


CORE_FIELDS = frozenset(
    {"request_id", "exchange", "account", "symbol", "requested_at", "deadline_ms"}
)


def validate_command(raw: RawCommand) -> OrderQuery:
    """Field checks of the QueryOrders contract; venue options are validated by the venue.

    Unknown extra fields are ignored (forward compatibility for callers on a newer schema); a
    field that some registered venue declares as an option is checked against the requested
    venue, so ``product_type`` sent to a venue without product types is an error, not a no-op.
    """
    from .exchanges import registry

    f = raw.fields
    request_id = _required_str(f, "request_id", max_len=MAX_REQUEST_ID)
    exchange = _required_str(f, "exchange", pattern=_TOKEN).lower()
    venues = registry.venues()
    venue = venues.get(exchange)
    if venue is None:
        known = ", ".join(venues)
        raise Unsupported(f"exchange {exchange!r} is not supported (supported: {known})")
    account = _required_str(f, "account", pattern=_TOKEN)
    symbol = _optional_str(f, "symbol", pattern=_SYMBOL)
    accepted = set(venue.options.model_fields)
    values: dict[str, str] = {}
    for other in venues.values():
        for name in other.options.model_fields:
            value = _optional_str(f, name, pattern=_TOKEN) if name not in CORE_FIELDS else None
            if value is None:
                continue
            if name not in accepted:
                owners = "/".join(v.name for v in venues.values() if name in v.options.model_fields)
                raise InvalidCommand(f"{name} applies to {owners} only, not {exchange}")
            values[name] = value
    try:
        options = venue.options.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidCommand(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
    return OrderQuery(
        request_id=request_id,
        exchange=exchange,
        account=account,
        symbol=symbol,
        requested_at=_optional_millis(f, "requested_at"),
        deadline_ms=_optional_millis(f, "deadline_ms"),
        options=options,
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
