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

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from .codec import QUERY_ORDERS, DecodeError, Serializer
from .errors import InvalidCommand, Unsupported
from .model import OrderQuery

_TOKEN = re.compile(r"^[A-Za-z0-9._:/@-]{1,128}$")
# Exchange-native symbols may be non-ASCII (e.g. "龙虾USDT"): letters and digits
# of any script, "_", ".", "/", "-"; never spaces, controls or query syntax ("&", "=").
_SYMBOL = re.compile(r"^[\w./-]{1,64}$")
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


class QueryOrdersCommand(BaseModel):
    """The QueryOrders command's own fields (docs/contract.md), validated in one place.

    Unknown extra fields are ignored here (forward compatibility for callers on a newer schema);
    fields a venue declares as options are validated by that venue's options model.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    exchange: str
    account: str
    symbol: str | None = None
    requested_at: int | None = None
    deadline_ms: int | None = None

    @field_validator("request_id", mode="before")
    @classmethod
    def _request_id(cls, v: Any) -> str:
        return _required_str("request_id", v, max_len=MAX_REQUEST_ID)

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange(cls, v: Any) -> str:
        return _required_str("exchange", v, pattern=_TOKEN).lower()

    @field_validator("account", mode="before")
    @classmethod
    def _account(cls, v: Any) -> str:
        return _required_str("account", v, pattern=_TOKEN)

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: Any) -> str | None:
        return _optional_str("symbol", v, pattern=_SYMBOL)

    @field_validator("requested_at", "deadline_ms", mode="before")
    @classmethod
    def _millis(cls, v: Any, info: ValidationInfo) -> int | None:
        return _optional_millis(str(info.field_name), v)


def validate_command(raw: RawCommand) -> OrderQuery:
    """The QueryOrders model, then the venue's options model. One line names the field.

    A field that some registered venue declares as an option is checked against the requested
    venue, so ``product_type`` sent to a venue without product types is an error, not a no-op.
    """
    from .exchanges import registry

    f = raw.fields
    try:
        command = QueryOrdersCommand.model_validate(f)
    except ValidationError as exc:
        raise InvalidCommand(_one_line(exc)) from None
    venues = registry.venues()
    venue = venues.get(command.exchange)
    if venue is None:
        known = ", ".join(venues)
        raise Unsupported(f"exchange {command.exchange!r} is not supported (supported: {known})")
    accepted = set(venue.options.model_fields)
    values: dict[str, str] = {}
    for other in venues.values():
        for name in other.options.model_fields:
            if name in QueryOrdersCommand.model_fields:
                continue
            try:
                value = _optional_str(name, f.get(name), pattern=_TOKEN)
            except ValueError as exc:
                raise InvalidCommand(str(exc)) from None
            if value is None:
                continue
            if name not in accepted:
                owners = "/".join(v.name for v in venues.values() if name in v.options.model_fields)
                raise InvalidCommand(f"{name} applies to {owners} only, not {command.exchange}")
            values[name] = value
    try:
        options = venue.options.model_validate(values)
    except ValidationError as exc:
        raise InvalidCommand(_one_line(exc)) from None
    return OrderQuery(
        request_id=command.request_id,
        exchange=command.exchange,
        account=command.account,
        symbol=command.symbol,
        requested_at=command.requested_at,
        deadline_ms=command.deadline_ms,
        options=options,
    )


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "missing":
        return f"{where} is required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg if msg.startswith(where) else f"{where}: {msg}"


def _required_str(
    name: str, value: Any, *, max_len: int = 128, pattern: re.Pattern[str] | None = None
) -> str:
    if value is None or value == "":
        raise ValueError(f"{name} is required")
    return _check_str(name, value, max_len, pattern)


def _optional_str(name: str, value: Any, *, pattern: re.Pattern[str]) -> str | None:
    if value is None or value == "":
        return None
    return _check_str(name, value, 128, pattern)


def _check_str(name: str, value: Any, max_len: int, pattern: re.Pattern[str] | None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters")
    if not _valid_unicode(value):
        raise ValueError(f"{name} is not valid Unicode (lone surrogate)")
    if pattern is not None and not pattern.match(value):
        raise ValueError(f"{name} has characters outside {pattern.pattern}")
    return value


def _optional_millis(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # Avro timestamp-millis, decoded by fastavro
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer of UTC epoch milliseconds")
    if not 0 <= value < 10**14:
        raise ValueError(f"{name} is out of range for epoch milliseconds")
    return value
