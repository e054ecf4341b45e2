"""The normalized model: what the pipeline knows about orders, whatever the exchange.

Exchange packages turn their raw payloads into :class:`Order` with pure ``parse_*`` functions;
the pipeline stamps request-level fields (``request_id``, ``snapshot_seq``...) when it publishes.
Decimals stay :class:`~decimal.Decimal` here and become canonical decimal strings on the wire,
because exchange quantities have arbitrary scale and must never pass through a float.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, getcontext
from enum import StrEnum

import msgspec
from pydantic import BaseModel, ConfigDict


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    STOP_MARKET = "STOP_MARKET"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    PENDING_NEW = "PENDING_NEW"
    ACK = "ACK"
    UNKNOWN = "UNKNOWN"


# msgspec Structs rather than frozen dataclasses: as immutable, a quarter of the cost to build
# (a frozen dataclass sets each of Order's 30 fields through object.__setattr__), and parsers
# build one per open order.
class CopyTrading(msgspec.Struct, frozen=True):
    """Copy-trading context of a follower's order, on venues that have copy trading."""

    trader_id: str | None = None
    trader_name: str | None = None
    open_order_id: str | None = None
    close_order_id: str | None = None
    open_average_price: Decimal | None = None
    close_average_price: Decimal | None = None
    open_size: Decimal | None = None
    close_size: Decimal | None = None
    open_time: int | None = None
    close_time: int | None = None


class Order(msgspec.Struct, frozen=True):
    """One open order, normalized. Timestamps are UTC epoch milliseconds."""

    exchange: str
    order_id: str
    symbol: str
    raw: str
    account_id: str | None = None
    product_type: str | None = None
    client_order_id: str | None = None
    unified_symbol: str | None = None
    side: Side | None = None
    position_side: PositionSide | None = None
    order_type: OrderType | None = None
    status: OrderStatus = OrderStatus.UNKNOWN
    price: Decimal | None = None
    quantity: Decimal | None = None
    filled_quantity: Decimal | None = None
    remaining_quantity: Decimal | None = None
    average_fill_price: Decimal | None = None
    stop_price: Decimal | None = None
    fee: Decimal | None = None
    fee_asset: str | None = None
    leverage: Decimal | None = None
    margin: Decimal | None = None
    created_at: int | None = None
    updated_at: int | None = None
    copy_trading: CopyTrading | None = None
    # Order intent: execution instructions. A reduce-only order (or a position take-profit /
    # stop-loss) cannot add exposure; risk systems need to tell it from one that can.
    reduce_only: bool = False
    post_only: bool = False
    liquidation: bool = False
    exec_instructions: tuple[str, ...] = ()


class CommandOptions(BaseModel):
    """Venue-specific fields of a QueryOrders command (none by default).

    A venue subclasses it to declare the fields it accepts and validates them itself; a known
    option sent to a venue that does not declare it is an invalid command, so a caller's mistake
    is never ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """A validated query-orders command, as the exchange adapters see it.

    ``exchange`` is a registered venue name; ``options`` is that venue's own options model.
    """

    request_id: str
    exchange: str
    account: str
    symbol: str | None = None
    requested_at: int | None = None
    deadline_ms: int | None = None
    options: CommandOptions = field(default_factory=CommandOptions)


@dataclass(slots=True)
class FetchResult:
    """A complete snapshot: every page fetched. ``calls`` counts requests/pages made."""

    orders: list[Order] = field(default_factory=list)
    calls: int = 0


# --- value helpers shared by every parser ----------------------------------------------------

PLACEHOLDERS = frozenset({"", "NULL_VAL", "None", "null", "NULL"})


def now_ms() -> int:
    """Current UTC time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


#: Epoch milliseconds below this are in 1973 or earlier: such a value is epoch *seconds*.
SECONDS_LIKE_BELOW = 10**11


def seconds_hint(field: str, value: int) -> str:
    """For a timestamp field found in the past: the likely reason when it looks like epoch
    seconds (``1796674350``), a mistake that otherwise reads only as "deadline passed"."""
    if 0 < value < SECONDS_LIKE_BELOW:
        return f"; {field} is in milliseconds; {value} looks like seconds"
    return ""


def text_or_none(value: object) -> str | None:
    """A string field, with exchange placeholders (``""``, ``"None"``, ``NULL_VAL``) as None."""
    if value is None:
        return None
    s = str(value).strip()
    return None if s in PLACEHOLDERS else s


def decimal_or_none(value: object, *, zero_is_null: bool = False) -> Decimal | None:
    """Exact decimal from an exchange string; placeholders (and "0" where zero means unset) -> None.

    Raises ValueError for text that is not a number, so a corrupt payload is reported rather than
    silently published as null.
    """
    if isinstance(value, str):  # the usual case, text_or_none inlined
        s = value.strip()
        if s in PLACEHOLDERS:
            return None
    else:
        text = text_or_none(value)
        if text is None:
            return None
        if isinstance(value, float):
            raise ValueError(f"refusing float {value!r}: decimals must arrive as strings")
        s = text
    try:
        d = Decimal(s)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {s!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {s!r}")
    if zero_is_null and d == 0:
        return None
    return d


def millis_or_none(value: object, *, zero_is_null: bool = True) -> int | None:
    """Epoch-millisecond timestamp from an int or numeric string; "0"/placeholders -> None."""
    if type(value) is int:  # the usual case (not a bool: that is refused below)
        return None if zero_is_null and value == 0 else value
    s = text_or_none(value)
    if s is None:
        return None
    try:
        ms = int(s)
    except ValueError as exc:
        raise ValueError(f"not a millisecond timestamp: {s!r}") from exc
    if zero_is_null and ms == 0:
        return None
    return ms


_LAST_DIGITS = frozenset("123456789")
#: Decimal's default context precision: a text of at most this many characters has at most this
#: many digits, so ``normalize()`` would not round it.
_FAST_MAX_LEN = 28


def canonical_decimal(d: Decimal) -> str:
    """Canonical decimal string: no exponent, no trailing zeros (``0.0010000`` -> ``0.001``).

    Fast path: a Decimal made from already-canonical exchange text (``60000.5``, ``0.01``: no
    exponent, not ending in 0, no NaN) prints as exactly that text, so ``str(d)`` is the answer
    without building the normalized Decimal. Everything else takes the exact path;
    tests/unit/test_model_decimal.py checks that both agree."""
    s = str(d)
    if (
        s[-1] in _LAST_DIGITS
        and len(s) <= _FAST_MAX_LEN
        and "E" not in s
        and "N" not in s
        and getcontext().prec >= _FAST_MAX_LEN
    ):
        return s
    n = d.normalize()
    if n == 0:
        return "0"
    return format(n, "f")
