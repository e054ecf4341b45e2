"""AscendEX payloads as msgspec Structs, with AscendEX's own field names.

Decoded at the boundary (:func:`connector.exchanges._json.decode`); the pure ``parse_*``
functions in :mod:`.parsing` take these Structs. Fields are optional and unknown fields ignored,
because AscendEX adds and omits fields freely; :mod:`.parsing` checks every field it uses.
Decimals are :class:`~connector.exchanges._json.DecimalText`: normally strings on the wire
(``"66000"``), a bare number is read as an exact Decimal, never a float. Each order row is kept
as ``msgspec.Raw`` so the published ``raw`` is the exchange's own text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from .._json import DecimalText


class Reply(msgspec.Struct, kw_only=True):
    """Fields every AscendEX answer may carry: REST bodies, WS replies and WS errors
    (``{"m":"error","id":..,"code":100005,"reason":"INVALID_WS_REQUEST_DATA","info":".."}``),
    the WS auth reply (``err`` explains a non-zero ``code``)."""

    m: str | None = None
    id: str | int | None = None
    code: int | str | None = None
    reason: str | None = None
    info: Any = None  # text, or an object on some REST errors
    message: str | None = None
    err: str | None = None


class FuturesOrder(msgspec.Struct, kw_only=True):
    """One row of ``futures-open-orders`` ``data`` (reference: WS Query Open Orders)."""

    ac: str | None = None
    accountId: str | None = None
    time: int | str | None = None
    orderId: str | None = None
    seqNum: int | str | None = None  # a string and -1 in live captures (ccxt PR #10996, #11641)
    orderType: str | None = None
    execInst: str | None = None
    side: str | None = None
    symbol: str | None = None
    price: DecimalText | None = None
    orderPrice: DecimalText | None = None  # some responses name the limit price this way
    orderQty: DecimalText | None = None
    stopPrice: DecimalText | None = None
    stopBy: str | None = None
    status: str | None = None
    lastExecTime: int | str | None = None
    avgFilledPx: DecimalText | None = None
    cumFilledQty: DecimalText | None = None
    cumFee: DecimalText | None = None
    feeAsset: str | None = None
    clientOrderId: str | None = None


class ExchangeInfoData(msgspec.Struct, kw_only=True):
    """``GET /api/pro/v1/exchange-info?requestTime=``: the server's receive time (ms)."""

    requestTimeEcho: int | str | None = None
    requestReceiveAt: int | str | None = None
    latency: int | str | None = None


class ExchangeInfoReply(Reply, kw_only=True):
    data: ExchangeInfoData | None = None


class BanStatus(msgspec.Struct, kw_only=True):
    isBanned: bool | None = None
    bannedUntil: int | str | None = None  # exchange ms; -1 when not banned
    violationCode: int | str | None = None  # 100014 in the documented sample
    reason: str | None = None


class RiskLimitWebSocket(msgspec.Struct, kw_only=True):
    status: BanStatus | None = None


class RiskLimitData(msgspec.Struct, kw_only=True):
    webSocket: RiskLimitWebSocket | None = None


class RiskLimitReply(Reply, kw_only=True):
    """``GET /api/pro/v2/risk-limit-info`` (the fields the connector uses)."""

    data: RiskLimitData | None = None


class OpenOrdersReply(Reply, kw_only=True):
    """The ``futures-open-orders`` reply; ``data`` rows stay raw until parsed one by one."""

    ac: str | None = None
    data: list[msgspec.Raw] | None = None


class AccountInfoData(msgspec.Struct, kw_only=True):
    accountGroup: Any = None  # checked by the parser: a non-negative int
    expireTime: Any = None  # API key expiry, UTC ms; -1 = never (docs: Account Info)


class AccountInfoReply(Reply, kw_only=True):
    """``GET /api/pro/v1/info``."""

    data: AccountInfoData | None = None


class Contract(msgspec.Struct, kw_only=True):
    """One row of ``GET /api/pro/v2/futures/contract`` (the fields the connector uses)."""

    symbol: Any = None
    status: str | None = None
    settlementAsset: Any = None
    underlying: Any = None


class ContractsReply(Reply, kw_only=True):
    data: list[Contract] | None = None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the connector keeps from account info: the account group and the key's expiry."""

    account_group: int
    key_expires_at: int | None = None  # UTC ms; None = never expires (``expireTime: -1``)
