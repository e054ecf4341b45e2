"""Pure ``parse_*`` functions: Bitget Structs (:mod:`.schemas`) -> :mod:`connector.model` objects.

No I/O here, so every mapping decision can be tested from recorded payloads alone.

How a *tracking order* becomes an :class:`~connector.model.Order`
-----------------------------------------------------------------
A follower's tracking order is one copy-trade round trip: Bitget opens a position for the
follower when the trader opens, and closes it when the trader closes. ``query-current-orders``
lists the round trips that are not finished yet. The connector publishes each as an open order
whose *progress is its closing*, because the entry has necessarily executed already for the row
to exist, and the only thing a current tracking order can still do is be closed out:

``side``
    The direction of the entry that opened the position: ``posSide`` long -> BUY,
    short -> SELL. ``position_side`` is LONG / SHORT from the same field.
``status``
    NEW while nothing is closed (``closeSize`` = 0); PARTIALLY_FILLED once part of the position
    is closed (0 < ``closeSize`` < ``openSize``); FILLED when the close is complete (a row can
    still be listed for a moment after that). A current tracking order is never CANCELED.
``quantity``
    ``openSize``: the size the tracking order opened (its whole round trip).
``filled_quantity`` / ``remaining_quantity``
    ``closeSize`` and ``openSize - closeSize``. ``remaining_quantity`` is therefore the
    follower's exposure still open under this tracking order, which is what a risk consumer
    adds up (with ``side``) across a snapshot.
``price``
    The average entry price (``openAvgPrice``, or ``openPriceAvg`` as the docs' table spells
    it). There is no limit price: copy orders are not resting orders.
``average_fill_price``
    ``closeAvgPrice``, null while Bitget reports the ``"0"`` placeholder.
``order_type``
    null: the endpoint does not say how the copy engine executed the entry, and guessing
    MARKET would be presenting an assumption as data.
``fee`` / ``fee_asset``
    ``openFee`` (opening fee before discounts), in the contract's margin (settle) coin, in the
    connector's convention for every venue: **positive = paid by the account, negative = a
    rebate received**. Bitget reports copy-trading fees as negative numbers for fees charged
    (``"openFee": "-5.92649260"`` in every documented example), so the sign is flipped; the
    row's own text stays untouched in ``raw``.
``leverage`` / ``margin``
    ``openLeverage`` / ``openMarginSz``.
``created_at`` / ``updated_at``
    ``openTime``; ``closeTime`` when a close happened, else ``openTime``.

Placeholders become null (``closeOrderId ""``, ``closeAvgPrice "0"``, ``closeTime "0"``);
``closeSize "0.0000000000000000"`` is a real zero and stays ``Decimal`` zero. Every decimal is a
``Decimal`` built from the wire text, so ``"0.0010000000000000"`` keeps its value exactly and
:func:`connector.model.canonical_decimal` prints it as ``0.001``. The row's own JSON is kept in
``raw`` exactly as Bitget sent it (``msgspec.Raw``), never re-serialised.

A row that cannot be read (no ``trackingNo`` or ``symbol``, an unknown ``posSide``, a number
that is not a number) raises :class:`MalformedResponse`; it is never dropped silently, since a
snapshot missing a position is worse than a failed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from ...errors import MalformedResponse
from ...model import (
    CopyTrading,
    Order,
    OrderStatus,
    PositionSide,
    Side,
    decimal_or_none,
    millis_or_none,
    text_or_none,
)
from .._json import decode
from .schemas import Contract, ServerTime, TrackingOrder, TrackingPage

# --- server time -----------------------------------------------------------------------------


def parse_server_time(data: ServerTime) -> int:
    """``{"serverTime": "1688008631614"}`` -> epoch milliseconds."""
    try:
        ms = millis_or_none(data.serverTime, zero_is_null=True)
    except ValueError as exc:
        raise MalformedResponse(f"server time: {exc}") from None
    if ms is None:
        raise MalformedResponse("server time: serverTime missing")
    return ms


# --- contracts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """What the connector needs from a futures contract: its unified name and settle coin."""

    symbol: str
    product_type: str
    base: str
    quote: str
    settle: str
    unified_symbol: str


def parse_contract(row: Contract, product_type: str) -> ContractInfo:
    """A contracts-list row -> ContractInfo, naming it the ccxt way (``BTC/USDT:USDT``).

    Settlement: USDT-/USDC-margined contracts settle in the quote coin; coin-margined
    (COIN-FUTURES) contracts settle in their base coin (``BTCUSD`` -> ``BTC/USD:BTC``). Delivery
    contracts get the ``-YYMMDD`` expiry suffix so they never collide with the perpetual.
    """
    symbol = text_or_none(row.symbol)
    base = text_or_none(row.baseCoin)
    quote = text_or_none(row.quoteCoin)
    if symbol is None or base is None or quote is None:
        raise MalformedResponse("contract row without symbol/baseCoin/quoteCoin")
    settle = base if product_type == "COIN-FUTURES" else quote
    unified = f"{base}/{quote}:{settle}"
    if str(row.symbolType or "").lower() == "delivery":
        try:
            delivery = millis_or_none(row.deliveryTime)
        except ValueError:
            raise MalformedResponse(f"contract {symbol}: bad deliveryTime") from None
        if delivery is not None:
            unified += "-" + datetime.fromtimestamp(delivery / 1000, tz=UTC).strftime("%y%m%d")
    return ContractInfo(symbol, product_type, base, quote, settle, unified)


def parse_contracts(rows: list[Contract], product_type: str) -> dict[str, ContractInfo]:
    """The contracts list -> ``{native symbol: ContractInfo}``."""
    out: dict[str, ContractInfo] = {}
    for row in rows:
        info = parse_contract(row, product_type)
        out[info.symbol] = info
    return out


# --- tracking-order pages and windows -------------------------------------------------------

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Page:
    """One page of tracking orders, whichever shape it came in.

    ``end_id`` is None when the shape has no cursor (``data`` a list or null), ``""`` when the
    server marks the last page, else the cursor for ``idLessThan``.
    """

    rows: list[msgspec.Raw]
    end_id: str | None


def parse_page(data: msgspec.Raw, where: str) -> Page:
    """``data`` as a list (reference version, current doc example), as
    ``{"trackingList": [...], "endId": "..."}`` (current version, SDKs, siblings) or ``null``
    (an empty page). Anything else is malformed."""
    text = bytes(data).strip()
    if text == b"null":
        return Page([], None)
    if text.startswith(b"["):
        return Page(decode(list[msgspec.Raw], data, where), None)
    if text.startswith(b"{"):
        page = decode(TrackingPage, data, where)
        end_id = None if page.endId is None else str(page.endId).strip()
        return Page(page.trackingList or [], end_id)
    raise MalformedResponse(f"{where}: data is neither a list nor {{trackingList, endId}}")


def windows(now_ms: int, history_days: int, window_days: int) -> Iterator[tuple[int, int]]:
    """``(startTime, endTime)`` from ``now_ms`` back to ``now_ms - history_days``, newest first,
    each spanning at most ``window_days`` (the full horizon; see :func:`windows_between`)."""
    return windows_between(now_ms - history_days * DAY_MS, now_ms, window_days)


def windows_between(start_ms: int, end_ms: int, window_days: int) -> Iterator[tuple[int, int]]:
    """``(startTime, endTime)`` from ``end_ms`` back to ``start_ms``, newest first, each spanning
    at most ``window_days``. Adjacent windows share their boundary millisecond, so no row falls
    between them whether the server's bounds are inclusive or not. A start at or after the end
    gives the one window ``(end_ms, end_ms)``: never a start after the end (``40707``)."""
    start_ms = min(start_ms, end_ms)
    end = end_ms
    while True:
        start = max(start_ms, end - window_days * DAY_MS)
        yield start, end
        if start <= start_ms:
            return
        end = start


# --- tracking orders -------------------------------------------------------------------------

_POS_SIDES: dict[str, tuple[Side, PositionSide]] = {
    "long": (Side.BUY, PositionSide.LONG),
    "short": (Side.SELL, PositionSide.SHORT),
}


def tracking_no(row: TrackingOrder, index: int) -> str:
    """The row's identity, checked first: paging de-duplicates on it before full parsing."""
    value = text_or_none(row.trackingNo)
    if value is None:
        raise MalformedResponse(f"tracking order #{index}: trackingNo missing")
    return value


def _decimal(
    row: TrackingOrder, field: str, where: str, *, zero_is_null: bool = False
) -> Decimal | None:
    try:
        return decimal_or_none(getattr(row, field), zero_is_null=zero_is_null)
    except ValueError as exc:
        raise MalformedResponse(f"{where}: field {field}: {exc}") from None


def _millis(row: TrackingOrder, field: str, where: str) -> int | None:
    try:
        return millis_or_none(getattr(row, field))
    except ValueError as exc:
        raise MalformedResponse(f"{where}: field {field}: {exc}") from None


def _open_average_price(row: TrackingOrder, where: str) -> Decimal | None:
    a = _decimal(row, "openAvgPrice", where)
    b = _decimal(row, "openPriceAvg", where)
    if a is not None and b is not None and a != b:
        raise MalformedResponse(f"{where}: openAvgPrice and openPriceAvg disagree")
    return a if a is not None else b


def _status(open_size: Decimal | None, close_size: Decimal | None) -> OrderStatus:
    closed = close_size or Decimal(0)
    if closed <= 0:
        return OrderStatus.NEW
    if open_size is not None and closed >= open_size:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED


def parse_tracking_order(
    row: TrackingOrder,
    raw: str,
    *,
    product_type: str,
    contract: ContractInfo | None = None,
    index: int = 0,
) -> Order:
    """One current tracking order -> Order, as described in this module's docstring.

    ``product_type`` comes from the request because rows do not echo it; ``contract`` (from the
    contracts list) supplies ``unified_symbol`` and the fee coin, and may be None when the symbol
    is not listed (then both stay null rather than being guessed from the symbol text).
    """
    order_id = tracking_no(row, index)
    where = f"tracking order {order_id}"
    symbol = text_or_none(row.symbol)
    if symbol is None:
        raise MalformedResponse(f"{where}: symbol missing")
    pos_side_text = str(row.posSide or "").strip().lower()
    if pos_side_text not in _POS_SIDES:
        raise MalformedResponse(f"{where}: unknown posSide {row.posSide!r}")
    side, position_side = _POS_SIDES[pos_side_text]

    open_size = _decimal(row, "openSize", where)
    close_size = _decimal(row, "closeSize", where)
    open_price = _open_average_price(row, where)
    close_price = _decimal(row, "closeAvgPrice", where, zero_is_null=True)
    open_time = _millis(row, "openTime", where)
    close_time = _millis(row, "closeTime", where)
    open_fee = _decimal(row, "openFee", where)
    fee = -open_fee if open_fee else open_fee  # Bitget: negative = charged; no "-0"
    remaining = None
    if open_size is not None:
        remaining = open_size - (close_size or Decimal(0))

    copy = CopyTrading(
        trader_id=text_or_none(row.traderId),
        trader_name=text_or_none(row.traderName),
        open_order_id=text_or_none(row.openOrderId),
        close_order_id=text_or_none(row.closeOrderId),
        open_average_price=open_price,
        close_average_price=close_price,
        open_size=open_size,
        close_size=close_size,
        open_time=open_time,
        close_time=close_time,
    )
    return Order(
        exchange="bitget",
        order_id=order_id,
        symbol=symbol,
        raw=raw,
        product_type=product_type,
        unified_symbol=contract.unified_symbol if contract else None,
        side=side,
        position_side=position_side,
        order_type=None,
        status=_status(open_size, close_size),
        price=open_price,
        quantity=open_size,
        filled_quantity=close_size,
        remaining_quantity=remaining,
        average_fill_price=close_price,
        fee=fee,
        fee_asset=contract.settle if contract and fee is not None else None,
        leverage=_decimal(row, "openLeverage", where),
        margin=_decimal(row, "openMarginSz", where),
        created_at=open_time,
        updated_at=close_time if close_time is not None else open_time,
        copy_trading=copy,
    )
