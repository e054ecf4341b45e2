"""Raw Bitget payloads, with Bitget's own field names.

These describe what the wire carries so the parsers can be read against the API docs. They are
``total=False`` because Bitget omits fields freely (the tracking-order docs even disagree with
their own example: ``openPriceAvg`` in the table, ``openAvgPrice`` in the sample). Values are
``str`` on the wire; JSON is parsed with ``parse_float=Decimal`` so a stray number is still exact.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypedDict

Scalar = str | int | Decimal | None


class Envelope(TypedDict, total=False):
    """Every REST response: ``code`` is a string, ``"00000"`` is success."""

    code: str
    msg: str
    requestTime: int | str
    data: Any


class ServerTime(TypedDict, total=False):
    """``GET /api/v2/public/time`` data."""

    serverTime: str


class Contract(TypedDict, total=False):
    """One row of ``GET /api/v2/mix/market/contracts`` (only the fields the connector uses)."""

    symbol: str
    baseCoin: str
    quoteCoin: str
    supportMarginCoins: list[str]
    symbolType: str  # perpetual | delivery
    symbolStatus: str
    deliveryTime: str
    sizeMultiplier: str
    pricePlace: str
    volumePlace: str


class TrackingOrder(TypedDict, total=False):
    """One row of ``GET /api/v2/copy/mix-follower/query-current-orders``."""

    trackingNo: str
    traderId: str
    traderName: str
    openOrderId: str
    closeOrderId: str
    symbol: str
    posSide: str  # long | short
    openLeverage: str
    openAvgPrice: str  # the documented example's spelling
    openPriceAvg: str  # the documented table's spelling
    openTime: str
    openFee: str
    openSize: str
    openMarginSz: str
    closeAvgPrice: str
    closeSize: str
    closeTime: str


SUCCESS = "00000"
PRODUCT_TYPES = ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES")
DEFAULT_PRODUCT_TYPE = "USDT-FUTURES"

PATH_SERVER_TIME = "/api/v2/public/time"
PATH_CONTRACTS = "/api/v2/mix/market/contracts"
PATH_CURRENT_TRACKING_ORDERS = "/api/v2/copy/mix-follower/query-current-orders"
