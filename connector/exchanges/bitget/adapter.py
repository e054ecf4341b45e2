"""The Bitget adapter: a copy-trading follower's current tracking orders, paged to the end.

Paging. ``query-current-orders`` pages by ``pageNo``/``pageSize`` with no cursor and no total,
so the adapter asks for the largest page (``CONNECTOR_BITGET_PAGE_SIZE``, 50 = Bitget's maximum)
from page 1 until a page comes back shorter than asked (or empty). Offset paging over a live set
can shift a row from one page to the next while we read, so rows are de-duplicated on
``trackingNo``. A hard cap (``CONNECTOR_BITGET_MAX_PAGES``) stops a runaway loop; hitting it fails
the command with a message that names the setting, because a truncated snapshot must never be
published as complete.

``FetchResult.calls`` counts *requests sent to the orders endpoint*, retries included (a retried
page costs the exchange and the rate limit as much as a first try, and that is what an operator
reading ``exchange_calls`` wants to see). The server-time and contracts requests are not counted:
they are shared, cached infrastructure rather than work done for one command. Without retries,
``calls`` equals the number of pages read: 0..49 rows -> 1, 50..99 -> 2, 100..149 -> 3 (a full
page cannot tell it is the last one, so exactly 50 rows costs an empty second page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ...accounts import Account
from ...errors import ConnectorError, Unsupported
from ...model import FetchResult, Order, OrderQuery
from ...settings import Settings
from .config import BitgetOptions, BitgetSettings
from .http import BitgetHttpClient
from .parsing import (
    ContractInfo,
    MalformedPayload,
    parse_contracts,
    parse_tracking_order,
    tracking_no,
)
from .ratelimit import LimiterRegistry
from .schemas import PATH_CONTRACTS, PATH_CURRENT_TRACKING_ORDERS

log = logging.getLogger(__name__)


class ContractsCache:
    """Public contracts list per product type, cached for ``ttl_s``.

    One refresh at a time per product type, so a burst of commands after expiry costs one
    request. If a refresh fails, the last good list is used (symbols rarely change); with no list
    at all, orders are published with ``unified_symbol`` null rather than failing the snapshot
    over a cosmetic field.
    """

    def __init__(self, http: BitgetHttpClient, ttl_s: float) -> None:
        self._http = http
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, dict[str, ContractInfo]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _fresh(self, product_type: str, now: float) -> dict[str, ContractInfo] | None:
        entry = self._entries.get(product_type)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry[1]
        return None

    async def get(self, product_type: str, *, deadline: float) -> dict[str, ContractInfo]:
        loop = asyncio.get_running_loop()
        cached = self._fresh(product_type, loop.time())
        if cached is not None:
            return cached
        lock = self._locks.setdefault(product_type, asyncio.Lock())
        async with lock:
            cached = self._fresh(product_type, loop.time())
            if cached is not None:
                return cached
            try:
                data = await self._http.get_public(
                    PATH_CONTRACTS, [("productType", product_type)], deadline=deadline
                )
                contracts = parse_contracts(data, product_type)
            except ConnectorError as exc:
                stale = self._entries.get(product_type)
                log.warning(
                    "bitget contracts for %s unavailable (%s); %s",
                    product_type,
                    exc,
                    "using the previous list" if stale else "unified_symbol will be null",
                )
                return stale[1] if stale else {}
            self._entries[product_type] = (loop.time(), contracts)
            return contracts


class BitgetAdapter:
    """:class:`~connector.exchanges.base.ExchangeAdapter` for Bitget copy-trading followers."""

    exchange = "bitget"

    def __init__(
        self,
        settings: Settings,
        venue: BitgetSettings | None = None,
        *,
        http: BitgetHttpClient | None = None,
    ) -> None:
        venue = venue or BitgetSettings()
        self._http = http or BitgetHttpClient(
            venue.rest_url,
            request_timeout_s=settings.request_timeout_s,
            max_attempts=settings.max_attempts,
            retry_backoff_s=settings.retry_backoff_s,
        )
        self._limiters = LimiterRegistry(venue.rate_limit_per_s)
        self._contracts = ContractsCache(self._http, settings.contracts_cache_ttl_s)
        self._page_size = venue.page_size
        self._max_pages = venue.max_pages

    def __repr__(self) -> str:
        return f"BitgetAdapter(http={self._http!r}, page_size={self._page_size})"

    @property
    def http(self) -> BitgetHttpClient:
        return self._http

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        calls = [0]  # a cell the request callback and the error path both see
        try:
            return await self._fetch(account, query, deadline, calls)
        except ConnectorError as exc:
            exc.calls = calls[0]
            raise

    async def _fetch(
        self, account: Account, query: OrderQuery, deadline: float, calls: list[int]
    ) -> FetchResult:
        options = query.options
        if not isinstance(options, BitgetOptions):  # a query built without the command model
            options = BitgetOptions.model_validate(options.model_dump())
        product_type = options.product_type
        limiter = self._limiters.for_account(account)

        def count_call() -> None:
            calls[0] += 1

        base_params: list[tuple[str, str]] = [("productType", product_type)]
        if query.symbol:
            base_params.append(("symbol", query.symbol.strip().upper()))
        if options.trader_id:
            base_params.append(("traderId", options.trader_id))

        rows: dict[str, Mapping[str, Any]] = {}
        duplicates = 0
        page_no = 1
        while True:
            if page_no > self._max_pages:
                raise Unsupported(
                    f"account {account.alias!r} has more than {self._max_pages} pages of "
                    f"{self._page_size} tracking orders; raise CONNECTOR_BITGET_MAX_PAGES"
                )
            params = [*base_params, ("pageSize", str(self._page_size)), ("pageNo", str(page_no))]
            data = await self._http.get_signed(
                PATH_CURRENT_TRACKING_ORDERS,
                params,
                account=account,
                limiter=limiter,
                deadline=deadline,
                on_attempt=count_call,
            )
            page = self._page_rows(data, page_no)
            for index, row in enumerate(page):
                key = tracking_no(row, index)
                if key in rows:
                    duplicates += 1
                    continue
                rows[key] = row
            if len(page) < self._page_size:
                break
            page_no += 1

        contracts = await self._contracts.get(product_type, deadline=deadline) if rows else {}
        orders: list[Order] = []
        for index, row in enumerate(rows.values()):
            symbol = str(row.get("symbol") or "")
            orders.append(
                parse_tracking_order(
                    row, product_type=product_type, contract=contracts.get(symbol), index=index
                )
            )
        log.info(
            "bitget %s %s: %d tracking orders in %d page(s), %d request(s), %d duplicate(s)",
            account.alias,
            product_type,
            len(orders),
            page_no,
            calls[0],
            duplicates,
        )
        return FetchResult(orders=orders, calls=calls[0])

    @staticmethod
    def _page_rows(data: Any, page_no: int) -> list[Mapping[str, Any]]:
        if data is None:  # Bitget answers an empty page with data null on some endpoints
            return []
        if not isinstance(data, list):
            raise MalformedPayload(f"tracking orders page {page_no}: data is not a list")
        for index, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise MalformedPayload(
                    f"tracking orders page {page_no}: row #{index} is not an object"
                )
        return data

    async def aclose(self) -> None:
        await self._http.aclose()
