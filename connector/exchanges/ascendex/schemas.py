"""AscendEX payloads as the exchange sends them, with AscendEX's own field names.

These are descriptions for readers and type checkers, not validators: payloads arrive from the
network, so :mod:`.parsing` checks every field it uses. Decimal fields are strings on the wire
(``"66000"``); the WebSocket decoder turns any stray JSON number with a fraction into
:class:`~decimal.Decimal`, never ``float``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypedDict

DecimalText = str | Decimal
"""A decimal on the wire: normally a string, a Decimal if the exchange sent a bare number."""


class RawFuturesOrder(TypedDict, total=False):
    """One row of ``futures-open-orders`` ``data`` (reference: WS Query Open Orders)."""

    ac: str
    accountId: str
    time: int
    orderId: str
    seqNum: int
    orderType: str
    execInst: str
    side: str
    symbol: str
    price: DecimalText
    orderPrice: DecimalText  # some responses name the limit price this way
    orderQty: DecimalText
    stopPrice: DecimalText
    stopBy: str
    status: str
    lastExecTime: int
    lastQty: DecimalText
    lastPx: DecimalText
    avgFilledPx: DecimalText
    cumFilledQty: DecimalText
    fee: DecimalText
    cumFee: DecimalText
    feeAsset: str
    errorCode: str
    posStopLossPrice: DecimalText
    posStopLossTrigger: str
    posTakeProfitPrice: DecimalText
    posTakeProfitTrigger: str
    clientOrderId: str


class RawOpenOrdersResponse(TypedDict):
    m: Literal["futures-open-orders"]
    code: int
    id: str
    ac: str
    data: list[RawFuturesOrder]


class RawWsError(TypedDict, total=False):
    """``{"m":"error","id":..,"code":100005,"reason":"INVALID_WS_REQUEST_DATA","info":".."}``."""

    m: str
    id: str
    code: int
    reason: str
    info: str


class RawAuthReply(TypedDict, total=False):
    """``{"m":"auth","id":..,"code":0}``; on failure ``code`` != 0 and ``err`` explains."""

    m: str
    id: str
    code: int
    err: str


class RawRestError(TypedDict, total=False):
    """``{"code":200001,"message":"API signature mismatch","reason":"AUTHENTICATION_FAILED"}``."""

    code: int
    message: str
    reason: str


class RawAccountInfoData(TypedDict, total=False):
    accountGroup: int
    email: str
    expireTime: int
    allowedIps: list[str]
    cashAccount: list[str]
    marginAccount: list[str]
    futuresAccount: list[str]
    userUID: str
    tradePermission: bool
    transferPermission: bool
    viewPermission: bool


class RawAccountInfo(TypedDict):
    code: int
    data: RawAccountInfoData


class RawPriceFilter(TypedDict, total=False):
    minPrice: str
    maxPrice: str
    tickSize: str


class RawLotSizeFilter(TypedDict, total=False):
    minQty: str
    maxQty: str
    lotSize: str


class RawContract(TypedDict, total=False):
    """One row of ``GET /api/pro/v2/futures/contract``."""

    symbol: str
    status: str
    displayName: str
    settlementAsset: str
    underlying: str
    tradingStartTime: int
    priceFilter: RawPriceFilter
    lotSizeFilter: RawLotSizeFilter


class RawContractsResponse(TypedDict):
    code: int
    data: list[RawContract]


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the connector needs from account info: where to connect. No email, no UID."""

    account_group: int
    futures_account_ids: tuple[str, ...] = ()
