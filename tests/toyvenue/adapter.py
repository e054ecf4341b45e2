"""ToyEx adapter: one signed GET returns every open order of a desk's book."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx

from connector.account import Account
from connector.errors import AuthFailed, ConnectorError, ExchangeUnavailable
from connector.model import FetchResult, Order, OrderQuery, Side
from connector.settings import Settings

from .auth import sign
from .config import ToyOptions, ToySettings

PATH = "/v1/open-orders"


def parse_order(row: dict[str, Any]) -> Order:
    return Order(
        exchange="toyex",
        order_id=str(row["id"]),
        symbol=str(row["sym"]),
        raw=json.dumps(row, separators=(",", ":")),
        side=Side.BUY if row["side"] == "b" else Side.SELL,
        price=Decimal(row["px"]),
        quantity=Decimal(row["qty"]),
    )


class ToyAdapter:
    exchange = "toyex"

    def __init__(self, settings: Settings, venue: ToySettings) -> None:
        self._http = httpx.AsyncClient(base_url=venue.rest_url, timeout=settings.request_timeout_s)

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        try:
            return await self._fetch(account, query)
        except ConnectorError as exc:
            exc.calls = 1
            raise

    async def _fetch(self, account: Account, query: OrderQuery) -> FetchResult:
        options = query.options
        assert isinstance(options, ToyOptions)
        params = {"desk": account.options["desk"], "book": options.book}
        if query.symbol:
            params["symbol"] = query.symbol
        qs = urlencode(params)
        ts = str(int(time.time() * 1000))
        headers = {
            "X-TOY-KEY": account.api_key.reveal(),
            "X-TOY-TS": ts,
            "X-TOY-SIGN": sign(account.api_secret.reveal(), ts, PATH, qs),
        }
        try:
            resp = await self._http.get(f"{PATH}?{qs}", headers=headers)
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"toyex: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise AuthFailed("toyex: signature rejected", exchange_code="401")
        if resp.status_code != 200:
            raise ExchangeUnavailable(
                f"toyex: HTTP {resp.status_code}", exchange_code=str(resp.status_code)
            )
        rows = resp.json()["orders"]
        return FetchResult(orders=[parse_order(r) for r in rows], calls=1)

    async def aclose(self) -> None:
        await self._http.aclose()
