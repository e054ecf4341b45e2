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
they are shared, cached metadata (see :mod:`connector.resilience.cache`), counted in
``connector_exchange_metadata_fetches_total`` instead. Without retries,
``calls`` equals the number of pages read: 0..49 rows -> 1, 50..99 -> 2, 100..149 -> 3 (a full
page cannot tell it is the last one, so exactly 50 rows costs an empty second page).
"""

from __future__ import annotations

import logging

import msgspec

from ...accounts import Account
from ...errors import ConnectorError, SnapshotTooLarge
from ...model import FetchResult, Order, OrderQuery
from ...resilience import InstrumentCache, LimiterRegistry
from ...settings import Settings
from .._json import decode, raw_text
from .config import BitgetOptions, BitgetSettings
from .http import BitgetHttpClient
from .parsing import (
    ContractInfo,
    parse_contracts,
    parse_tracking_order,
    tracking_no,
)
from .ratelimit import limiter_key
from .schemas import PATH_CONTRACTS, PATH_CURRENT_TRACKING_ORDERS, Contract, TrackingOrder

log = logging.getLogger(__name__)


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
        self._limiters = LimiterRegistry("bitget", venue.rate_limit_per_s)
        self._contracts: InstrumentCache[str, ContractInfo] = InstrumentCache(
            self._load_contracts, venue="bitget", ttl_s=settings.contracts_cache_ttl_s
        )
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
        limiter = self._limiters.get(limiter_key(account))

        def count_call() -> None:
            calls[0] += 1

        base_params: list[tuple[str, str]] = [("productType", product_type)]
        if query.symbol:
            base_params.append(("symbol", query.symbol.strip().upper()))
        if options.trader_id:
            base_params.append(("traderId", options.trader_id))

        rows: dict[str, tuple[TrackingOrder, str]] = {}
        duplicates = 0
        page_no = 1
        while True:
            if page_no > self._max_pages:
                raise SnapshotTooLarge(
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
            for index, raw in enumerate(page):
                row = decode(TrackingOrder, raw, f"tracking orders page {page_no} row #{index}")
                key = tracking_no(row, index)
                if key in rows:
                    duplicates += 1
                    continue
                rows[key] = (row, raw_text(raw))
            if len(page) < self._page_size:
                break
            page_no += 1

        contracts = await self._contracts.get(product_type, deadline=deadline) if rows else {}
        orders: list[Order] = []
        for index, (row, row_json) in enumerate(rows.values()):
            orders.append(
                parse_tracking_order(
                    row,
                    row_json,
                    product_type=product_type,
                    contract=contracts.get(row.symbol or ""),
                    index=index,
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
    def _page_rows(data: msgspec.Raw, page_no: int) -> list[msgspec.Raw]:
        if bytes(data).strip() == b"null":  # Bitget's empty page on some endpoints
            return []
        return decode(list[msgspec.Raw], data, f"tracking orders page {page_no}")

    async def _load_contracts(self, product_type: str, deadline: float) -> dict[str, ContractInfo]:
        data = await self._http.get_public(
            PATH_CONTRACTS, [("productType", product_type)], deadline=deadline
        )
        rows = decode(list[Contract], data, f"Bitget contracts {product_type}")
        return parse_contracts(rows, product_type)

    async def aclose(self) -> None:
        await self._http.aclose()
