"""Raw Bitget payloads as msgspec Structs, with Bitget's own field names.

Decoded at the boundary (:func:`connector.exchanges._json.decoder`); the pure ``parse_*``
functions in :mod:`.parsing` take these Structs. Every field is optional because Bitget omits
fields freely (the tracking-order docs even disagree with their own example: ``openPriceAvg`` in
the table, ``openAvgPrice`` in the sample), and unknown fields are ignored. Decimals are
:class:`~connector.exchanges._json.DecimalText` (quoted or bare, never a float); timestamps are
``int | str`` because Bitget sends both.
"""

from __future__ import annotations

import msgspec

from .._json import DecimalText


class Envelope(msgspec.Struct, kw_only=True):
    """Every REST response: ``code`` is a string, ``"00000"`` is success. ``data`` is kept raw
    and decoded by the caller into the endpoint's own Struct."""

    code: str | int | None = None
    msg: str | None = None
    requestTime: int | str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class ServerTime(msgspec.Struct, kw_only=True):
    """``GET /api/v2/public/time`` data."""

    serverTime: int | str | None = None


class Contract(msgspec.Struct, kw_only=True):
    """One row of ``GET /api/v2/mix/market/contracts`` (only the fields the connector uses)."""

    symbol: str | None = None
    baseCoin: str | None = None
    quoteCoin: str | None = None
    supportMarginCoins: list[str] = []
    symbolType: str | None = None  # perpetual | delivery
    symbolStatus: str | None = None
    deliveryTime: int | str | None = None


class TrackingOrder(msgspec.Struct, kw_only=True):
    """One row of ``GET /api/v2/copy/mix-follower/query-current-orders``."""

    trackingNo: str | int | None = None
    traderId: str | int | None = None
    traderName: str | None = None
    openOrderId: str | int | None = None
    closeOrderId: str | int | None = None
    symbol: str | None = None
    posSide: str | None = None  # long | short
    openLeverage: DecimalText | None = None
    openAvgPrice: DecimalText | None = None  # the documented example's spelling
    openPriceAvg: DecimalText | None = None  # the documented table's spelling
    openTime: int | str | None = None
    openFee: DecimalText | None = None
    openSize: DecimalText | None = None
    openMarginSz: DecimalText | None = None
    closeAvgPrice: DecimalText | None = None
    closeSize: DecimalText | None = None
    closeTime: int | str | None = None


class TrackingPage(msgspec.Struct, kw_only=True):
    """``data`` of the current (cursor) version in its object shape: ``{trackingList, endId}``.

    The other shapes (``data`` a bare list, or ``null``) are handled by the adapter.
    ``endId`` is the trackingNo to pass as ``idLessThan`` for the next page; ``""`` (or
    absent) marks the last page.
    """

    trackingList: list[msgspec.Raw] | None = None
    endId: str | int | None = None


SUCCESS = "00000"
PRODUCT_TYPES = ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES")
DEFAULT_PRODUCT_TYPE = "USDT-FUTURES"

PATH_SERVER_TIME = "/api/v2/public/time"
PATH_CONTRACTS = "/api/v2/mix/market/contracts"
PATH_CURRENT_TRACKING_ORDERS = "/api/v2/copy/mix-follower/query-current-orders"
