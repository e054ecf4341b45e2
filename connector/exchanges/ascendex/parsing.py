"""Pure functions: AscendEX payloads -> the normalized model, AscendEX errors -> typed errors.

No I/O here, so every rule below is unit-tested from recorded payloads. A row that cannot be
normalized raises instead of being skipped: a snapshot that silently misses an order is worse
than a failed one, because consumers treat a completed snapshot as the whole truth.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import msgspec

from ...errors import (
    AuthFailed,
    ConnectorError,
    ExchangeRejected,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from ...model import (
    Order,
    OrderStatus,
    OrderType,
    Side,
    decimal_or_none,
    millis_or_none,
    text_or_none,
)
from .._json import decode, raw_text
from .schemas import (
    AccountInfo,
    AccountInfoReply,
    Contract,
    ContractsReply,
    ExchangeInfoReply,
    FuturesOrder,
    OpenOrdersReply,
    Reply,
    RiskLimitReply,
)

log = logging.getLogger(__name__)


# --- errors -------------------------------------------------------------------------------

# AscendEX error table (https://ascendex.github.io/ascendex-pro-api/#error-codes, mirrored by
# ccxt's ascendex ``exceptions['exact']``). Codes absent here fall back to their group.
AUTH_CODES: Mapping[int, str] = {
    100009: "AUTHORIZATION_NEEDED",
    200001: "AUTHENTICATION_FAILED",
    200003: "ACCOUNT_NOT_FOUND",
    200004: "ACCOUNT_NOT_SETUP",
    200006: "ACCOUNT_ERROR",
    200010: "PASSWORD_ERROR",
    200014: "RESTRICTED_ACCOUNT",
    200015: "PERMISSION_DENIED",
    2100: "ApiKeyFailure",  # undocumented, seen live (ccxt)
}
REJECTED_CODES: Mapping[int, str] = {
    100001: "INVALID_HTTP_INPUT",
    100002: "DATA_NOT_AVAILABLE",
    100003: "KEY_CONFLICT",
    100004: "INVALID_REQUEST_DATA",
    100005: "INVALID_WS_REQUEST_DATA",
    100006: "INVALID_ARGUMENT",
    100007: "ENCRYPTION_ERROR",
    100008: "SYMBOL_ERROR",
    100010: "INVALID_OPERATION",
    100011: "INVALID_TIMESTAMP",
    100012: "INVALID_STR_FORMAT",
    100013: "INVALID_NUM_FORMAT",
    150001: "INVALID_JSON_FORMAT",
    300012: "INVALID_PRODUCT",
    1900: "Invalid Http Request Input",  # undocumented, seen live (ccxt)
    5002: "Invalid Symbol",  # undocumented, seen live (ccxt)
}
# TOO_MANY_ATTEMPTS follows failed logins, so hammering again cannot help: rate-limited, but not
# retried in-command. 100014 is the per-IP ban (documented only as risk-limit-info's
# ``violationCode``, "exceeds MAX_REQ_COUNT_PER_IP"); HTTP 429/403 at the edge are the other
# signals (docs/ascendex.md, "Connection-rate limits").
RATE_LIMIT_CODES: Mapping[int, str] = {
    200002: "TOO_MANY_ATTEMPTS",
    100014: "MAX_REQ_COUNT_PER_IP",
}
LOCKOUT = frozenset({200002})
#: The documented name of the code a request with a skewed timestamp is believed to get.
INVALID_TIMESTAMP = 100011
UNAVAILABLE_CODES: Mapping[int, str] = {100101: "UNKNOWN_ERROR", 510001: "SERVER_ERROR"}


def _int_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def error_from_payload(
    reply: Reply, *, context: str, http_status: int | None = None
) -> ConnectorError:
    """Map an AscendEX error body (REST, WS ``m: error``, or WS auth reply) to a typed error.

    The message keeps AscendEX's reason and explanatory text (never request data we sent, which
    could hold a key) so an operator can act on it; ``exchange_code`` keeps the numeric code.
    """
    payload = msgspec.structs.asdict(reply)
    code = _int_code(payload.get("code"))
    reason = text_or_none(payload.get("reason"))
    detail = (
        text_or_none(payload.get("info"))
        or text_or_none(payload.get("message"))
        or text_or_none(payload.get("err"))
    )
    if isinstance(payload.get("info"), Mapping):
        detail = text_or_none(payload.get("message")) or text_or_none(payload.get("err"))
    parts = [context, "failed"]
    if reason:
        parts.append(f"[{reason}]")
    if detail:
        parts.append(f"- {detail}")
    message = " ".join(parts)
    # No AscendEX code (a proxy's 502, a bare 429): the HTTP status is the exchange's answer.
    exchange_code = (
        str(code) if code is not None else str(http_status) if http_status is not None else None
    )
    group = code // 10000 if code is not None else None

    if http_status == 429 or (code is not None and code in RATE_LIMIT_CODES):
        # 200002 locks the key out after failed logins: waiting for it within one command does
        # not help, so it ends the command; plain throttling (HTTP 429) is retried.
        return RateLimited(message, exchange_code=exchange_code, retryable=code not in LOCKOUT)
    if (code is not None and code in AUTH_CODES) or group == 20:
        return AuthFailed(message, exchange_code=exchange_code)
    if http_status == 403:
        # A bare 403 is AscendEX's edge (Cloudflare) refusing this IP, not a verdict on the
        # key (hummingbot #4959): a ban, retried with backoff until the deadline.
        return RateLimited(message, exchange_code=exchange_code)
    if http_status == 401:
        return AuthFailed(message, exchange_code=exchange_code)
    if (code is not None and code in UNAVAILABLE_CODES) or group == 50:
        return ExchangeUnavailable(message, exchange_code=exchange_code)
    if http_status is not None and http_status >= 500:
        return ExchangeUnavailable(message, exchange_code=exchange_code)
    if code is not None and (code in REJECTED_CODES or group in (10, 15, 30, 31)):
        return ExchangeRejected(message, exchange_code=exchange_code)
    if http_status is not None and 400 <= http_status < 500:
        return ExchangeRejected(message, exchange_code=exchange_code)
    # An unknown code from a healthy-looking reply: do not guess it is safe to retry.
    return ExchangeRejected(message, exchange_code=exchange_code)


def is_error_reply(reply: Reply) -> bool:
    """True for any AscendEX reply that carries a non-zero ``code``."""
    return reply.code is not None and _int_code(reply.code) != 0


# --- account info and contracts -------------------------------------------------------------


def parse_account_info(reply: AccountInfoReply) -> AccountInfo:
    """``GET /api/pro/v1/info`` -> the account group (needed in every private URL)."""
    if is_error_reply(reply):
        raise error_from_payload(reply, context="account info")
    if reply.data is None:
        raise MalformedResponse("account info: response has no data object")
    group = reply.data.accountGroup
    if isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise MalformedResponse("account info: accountGroup is missing or not a non-negative int")
    expire = _int_code(reply.data.expireTime)
    return AccountInfo(
        account_group=group,
        # -1 = never; an absent or unreadable value is "unknown", treated like never.
        key_expires_at=expire if expire is not None and expire > 0 else None,
    )


def parse_server_time(reply: ExchangeInfoReply) -> int:
    """``GET /api/pro/v1/exchange-info`` -> ``requestReceiveAt``, the server's clock in ms."""
    if is_error_reply(reply):
        raise error_from_payload(reply, context="exchange-info")
    value = _int_code(reply.data.requestReceiveAt) if reply.data is not None else None
    if value is None or value <= 0:
        raise MalformedResponse("exchange-info: requestReceiveAt is missing or not an integer")
    return value


def parse_ban(reply: RiskLimitReply) -> tuple[int, str] | None:
    """``risk-limit-info`` -> (banned until, exchange ms; reason) while banned, else None."""
    if is_error_reply(reply):
        raise error_from_payload(reply, context="risk-limit-info")
    ws = reply.data.webSocket if reply.data is not None else None
    status = ws.status if ws is not None else None
    if status is None or not status.isBanned:
        return None
    until = _int_code(status.bannedUntil)
    if until is None or until <= 0:
        return None
    return until, text_or_none(status.reason) or ""


def pong_server_time_ms(ts: object) -> int | None:
    """A WebSocket pong's ``ts`` in ms. One doc sample shows seconds (10 digits), another
    milliseconds, so a value below 10^12 is read as seconds."""
    value = _int_code(ts)
    if value is None or value <= 0:
        return None
    return value * 1000 if value < 10**12 else value


def unified_symbol(contract: Contract) -> str | None:
    """``BTC-PERP`` (underlying ``BTC/USDT``, settles ``USDT``) -> ``BTC/USDT:USDT``."""
    underlying = text_or_none(contract.underlying)
    settle = text_or_none(contract.settlementAsset)
    if not underlying or not settle or underlying.count("/") != 1:
        return None
    base, quote = underlying.split("/")
    if not base or not quote:
        return None
    return f"{base}/{quote}:{settle}"


def parse_contracts(reply: ContractsReply) -> dict[str, str]:
    """``GET /api/pro/v2/futures/contract`` -> native symbol -> unified symbol."""
    if is_error_reply(reply):
        raise error_from_payload(reply, context="futures contracts")
    if reply.data is None:
        raise MalformedResponse("futures contracts: response has no data list")
    result: dict[str, str] = {}
    for row in reply.data:
        symbol = text_or_none(row.symbol)
        unified = unified_symbol(row)
        if symbol and unified:
            result[symbol] = unified
    return result


# --- orders ---------------------------------------------------------------------------------

SIDES: Mapping[str, Side] = {"Buy": Side.BUY, "Sell": Side.SELL}
ORDER_TYPES: Mapping[str, OrderType] = {
    "Limit": OrderType.LIMIT,
    "Market": OrderType.MARKET,
    "StopLimit": OrderType.STOP_LIMIT,
    "StopMarket": OrderType.STOP_MARKET,
}
STATUSES: Mapping[str, OrderStatus] = {
    "New": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Canceled": OrderStatus.CANCELED,
    "Cancelled": OrderStatus.CANCELED,
    "Rejected": OrderStatus.REJECTED,
    "PendingNew": OrderStatus.PENDING_NEW,
    "Ack": OrderStatus.ACK,
}


# execInst (docs appendix "Execution Instruction"; 26 values + NULL_VAL), lower-cased because the
# casing in the wild is not certain (docs/ascendex.md, "execInst values").
REDUCE_ONLY_INSTRUCTIONS = frozenset(
    s.lower()
    for s in (
        "ReduceOnly", "PostReduceOnly", "ReduceOnlyMarket", "ReduceOnlyMark", "ReduceOnlyRef",
        "PostReduceMarket", "PostReduceMark", "PostReduceRef",
        # Position take-profit / stop-loss: closes (part of) the position, never opens one.
        "PosStopMkt", "PosStopMark", "PosStopRef",
    )
)  # fmt: skip
POST_ONLY_INSTRUCTIONS = frozenset(
    s.lower()
    for s in (
        "Post", "PostReduceOnly", "PostStopMarket", "PostStopMark", "PostStopRef",
        "PostReduceMarket", "PostReduceMark", "PostReduceRef",
        "OpenPostStopMkt", "OpenPostStopMark", "OpenPostStopRef",
    )
)  # fmt: skip
LIQUIDATION_INSTRUCTIONS = frozenset({"liquidation"})
KNOWN_INSTRUCTIONS = frozenset(
    s.lower()
    for s in (
        "Post", "Liquidation", "InternalPost", "StopOnMarket", "StopOnMark", "StopOnRef",
        "ReduceOnly", "PostReduceOnly", "PostStopMarket", "PostStopMark", "PostStopRef",
        "ReduceOnlyMarket", "ReduceOnlyMark", "ReduceOnlyRef", "PostReduceMarket",
        "PostReduceMark", "PostReduceRef", "OpenStopMkt", "OpenStopMark", "OpenStopRef",
        "OpenPostStopMkt", "OpenPostStopMark", "OpenPostStopRef", "PosStopMkt", "PosStopMark",
        "PosStopRef",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Intent:
    """What ``execInst`` says about an order; ``known`` is False for an undocumented value."""

    instructions: tuple[str, ...] = ()
    reduce_only: bool = False
    post_only: bool = False
    liquidation: bool = False
    known: bool = True


def parse_exec_inst(value: object) -> Intent:
    """``execInst`` -> intent flags, compared case-insensitively; the raw value is kept.

    ``NULL_VAL`` (and other placeholders) mean no instruction. An unknown value is kept verbatim
    with all flags False (never assume an order reduces exposure without being told so).
    """
    text = text_or_none(value)
    if text is None:
        return Intent()
    key = text.lower()
    return Intent(
        instructions=(text,),
        reduce_only=key in REDUCE_ONLY_INSTRUCTIONS,
        post_only=key in POST_ONLY_INSTRUCTIONS,
        liquidation=key in LIQUIDATION_INSTRUCTIONS,
        known=key in KNOWN_INSTRUCTIONS,
    )


# parse_exec_inst per distinct execInst text (a few dozen values in practice): Intent is
# immutable, so one instance serves every order with that value.
_INTENTS: dict[str | None, Intent] = {}
_MAX_INTENTS = 1024


def _intent(value: str | None) -> Intent:
    intent = _INTENTS.get(value)
    if intent is None:
        intent = parse_exec_inst(value)
        if len(_INTENTS) < _MAX_INTENTS:
            _INTENTS[value] = intent
    return intent


class MalformedOrder(ValueError):
    """A row that cannot be normalized; wrapped into a typed error by :func:`parse_open_orders`."""


def _required_text(row: FuturesOrder, key: str) -> str:
    value = text_or_none(getattr(row, key))
    if value is None:
        raise MalformedOrder(f"{key} is missing")
    return value


def _side(value: object) -> Side | None:
    text = text_or_none(value)
    if text is None:
        return None
    try:
        return SIDES[text]
    except KeyError:
        raise MalformedOrder(f"unknown side {text!r}") from None


def _order_type(value: object) -> OrderType | None:
    text = text_or_none(value)
    # The contract allows a null order type; an unseen type must not sink the whole snapshot.
    return ORDER_TYPES.get(text) if text else None


def _status(value: object) -> OrderStatus:
    text = text_or_none(value)
    return STATUSES.get(text, OrderStatus.UNKNOWN) if text else OrderStatus.UNKNOWN


def _decimal(row: FuturesOrder, key: str, *, zero_is_null: bool = False) -> Decimal | None:
    try:
        return decimal_or_none(getattr(row, key), zero_is_null=zero_is_null)
    except ValueError as exc:
        raise MalformedOrder(f"{key}: {exc}") from None


def _millis(row: FuturesOrder, key: str) -> int | None:
    value = getattr(row, key)
    if isinstance(value, Decimal | float):
        raise MalformedOrder(f"{key}: not an integer millisecond timestamp")
    try:
        return millis_or_none(value)
    except ValueError as exc:
        raise MalformedOrder(f"{key}: {exc}") from None


def parse_order(
    row: FuturesOrder,
    raw: str,
    *,
    unified_symbols: Mapping[str, str] | None = None,
    ac: str | None = None,
) -> Order:
    """One ``futures-open-orders`` row -> :class:`Order`, field by field.

    Zero means "unset" for prices (a resting order never has price 0, an unfilled one has no
    average fill price, ``stopPrice`` is ``"0"`` on non-stop orders), but zero is a real value for
    quantities and fees, so those keep it.
    """
    order_id = _required_text(row, "orderId")
    symbol = _required_text(row, "symbol")
    price = _decimal(row, "price", zero_is_null=True)
    if price is None and row.orderPrice is not None:
        price = _decimal(row, "orderPrice", zero_is_null=True)
    quantity = _decimal(row, "orderQty")
    filled = _decimal(row, "cumFilledQty")
    remaining = quantity - filled if quantity is not None and filled is not None else None
    if remaining is not None and remaining < 0:
        raise MalformedOrder(f"cumFilledQty {filled} exceeds orderQty {quantity}")
    # "0" average price means "nothing filled yet"; it is never a real fill price.
    avg_px = _decimal(row, "avgFilledPx", zero_is_null=True)
    product = text_or_none(row.ac) or text_or_none(ac)
    intent = _intent(row.execInst)
    if not intent.known:
        log.warning("ascendex: undocumented execInst %r on order %s", row.execInst, order_id)
    return Order(
        exchange="ascendex",
        order_id=order_id,
        symbol=symbol,
        raw=raw,
        account_id=text_or_none(row.accountId),
        product_type=product.upper() if product else None,
        client_order_id=text_or_none(row.clientOrderId),
        unified_symbol=(unified_symbols or {}).get(symbol),
        side=_side(row.side),
        position_side=None,  # AscendEX futures positions are one-way (net); orders carry no side
        order_type=_order_type(row.orderType),
        status=_status(row.status),
        price=price,
        quantity=quantity,
        filled_quantity=filled,
        remaining_quantity=remaining,
        average_fill_price=avg_px,
        stop_price=_decimal(row, "stopPrice", zero_is_null=True),
        fee=_decimal(row, "cumFee"),
        fee_asset=text_or_none(row.feeAsset),
        created_at=_millis(row, "time"),
        updated_at=_millis(row, "lastExecTime"),
        reduce_only=intent.reduce_only,
        post_only=intent.post_only,
        liquidation=intent.liquidation,
        exec_instructions=intent.instructions,
    )


def parse_open_orders(
    reply: OpenOrdersReply, *, unified_symbols: Mapping[str, str] | None = None
) -> list[Order]:
    """A whole ``futures-open-orders`` reply -> orders; any bad row fails the whole reply."""
    if reply.m == "error" or is_error_reply(reply):
        raise error_from_payload(reply, context="futures-open-orders")
    if reply.data is None:
        raise MalformedResponse("futures-open-orders: reply has no data list")
    ac = text_or_none(reply.ac)
    orders: list[Order] = []
    for index, raw in enumerate(reply.data):
        order_id: str | None = None
        try:
            row = decode(FuturesOrder, raw, "row")
            order_id = text_or_none(row.orderId)
            orders.append(parse_order(row, raw_text(raw), unified_symbols=unified_symbols, ac=ac))
        except (MalformedOrder, MalformedResponse) as exc:
            detail = exc.message if isinstance(exc, MalformedResponse) else str(exc)
            raise MalformedResponse(
                f"futures-open-orders: malformed order row {index}"
                f" (orderId={order_id or '?'}): {detail}"
            ) from None
    return orders
