"""The Bitget adapter: a copy-trading follower's current tracking orders, complete or FAILED.

Bitget has published two versions of ``query-current-orders`` (docs/bitget.md, "The endpoint
as it is today"): the *reference* one pages by ``pageNo``/``pageSize`` and returns ``data`` as
a list; the *current* one pages by cursor (``idLessThan`` + ``limit``), filters on copy-trade
creation time (``startTime``/``endTime``, three months by default and at most three months per
request) and returns ``data`` as a list or as ``{"trackingList": [...], "endId": "..."}``.
A server ignores the other version's parameters. So every request carries both:

* ``limit`` and ``pageSize`` = ``CONNECTOR_BITGET_PAGE_SIZE`` (50: within both maxima; over the
  maximum a server may silently answer 20 rows), ``pageNo`` = the page number in the window, and
  from the second page ``idLessThan`` = ``endId`` or else the last row's ``trackingNo``;
* ``startTime``/``endTime``: the walk goes back from now in windows of at most
  ``CONNECTOR_BITGET_WINDOW_DAYS`` (89) days to ``CONNECTOR_BITGET_HISTORY_DAYS`` (365) on the
  first snapshot of a scope, and on repeated ones only to the oldest tracking order the last
  complete one listed, minus a margin (:mod:`.scopes`, docs/bitget.md "Requests per snapshot").

Rows are de-duplicated on ``trackingNo``. A window ends only on evidence of its end: an empty
page, or a first page whose rows were all seen in a newer window (a server that ignores the time
filter). A page shorter than asked is *not* evidence (over the maximum, or with ``limit``
ignored, a server answers 20 rows), and neither is an empty ``endId`` alone (the only source for
it is one sibling example; the empty page after it costs one request). A later page with rows
but no new row means the server repeated a page, i.e. it followed neither the cursor nor the
page number: that snapshot cannot be completed, and the command fails (``SnapshotIncomplete``)
instead of publishing the first page as everything.
``40704`` (history refused before the horizon) fails the same way. ``CONNECTOR_BITGET_MAX_PAGES``
caps the pages of a snapshot (``SnapshotTooLarge``).

``FetchResult.calls`` counts *requests sent to the orders endpoint*, retries included (a retried
page costs the exchange and the rate limit as much as a first try, and that is what an operator
reading ``exchange_calls`` wants to see). The server-time and contracts requests are not counted:
they are shared, cached metadata (see :mod:`connector.resilience.cache`), counted in
``connector_exchange_metadata_fetches_total`` instead. Without retries, a snapshot costs at
least one request per window (5 on the full horizon with the defaults) plus one per further
page, and a window with rows ends with an empty page: a repeated snapshot of an account whose
open tracking orders are younger than 89 days is one window, 2 requests for up to 50 rows.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ...account import Account
from ...errors import ConnectorError, SnapshotIncomplete, SnapshotTooLarge
from ...model import FetchResult, Order, OrderQuery
from ...resilience import InstrumentCache, LimiterRegistry, SlidingWindowLimiter
from ...settings import Settings
from .._json import decode, raw_text
from .config import BitgetOptions, BitgetSettings
from .http import BitgetHttpClient
from .parsing import (
    DAY_MS,
    ContractInfo,
    parse_contracts,
    parse_page,
    parse_tracking_order,
    tracking_no,
    windows_between,
)
from .ratelimit import limiter_key
from .schemas import PATH_CONTRACTS, PATH_CURRENT_TRACKING_ORDERS, Contract, TrackingOrder
from .scopes import ScopeMemory, scope_key

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
        self._history_days = venue.history_days
        self._window_days = venue.window_days
        # Long-lived like the adapter (one per worker process): what each scope's last complete
        # snapshot listed, so the next walks back only as far as it has to.
        self._scopes = ScopeMemory(
            margin_ms=venue.skew_margin_s * 1000,
            full_every=venue.full_scan_every,
            full_interval_ms=int(venue.full_scan_interval_s * 1000),
            capacity=venue.scopes_remembered,
        )
        # Every Bitget request goes to the one API host: it is the failure unit.
        self._host = urlsplit(venue.rest_url).hostname or "api"

    def circuit_scope(self, account: Account) -> str:
        """The API host (connector/exchanges/base.py CircuitScoped): all accounts share it."""
        return self._host

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
        symbol = query.symbol.strip().upper() if query.symbol else None
        base_params: list[tuple[str, str]] = [("productType", product_type)]
        if symbol:
            base_params.append(("symbol", symbol))
        if options.trader_id:
            base_params.append(("traderId", options.trader_id))

        await self._http.clock.ensure(deadline=deadline)
        now = self._http.clock.now_ms()
        scope = scope_key(account, product_type, symbol, options.trader_id)
        plan = self._scopes.plan(scope, now_ms=now, horizon_ms=now - self._history_days * DAY_MS)
        try:
            orders, pages, duplicates = await self._walk(
                account, product_type, base_params, plan.start_ms, now, limiter, deadline, calls
            )
        except BaseException:  # FAILED (or cancelled): the next snapshot walks the full horizon
            self._scopes.failed(scope)
            raise
        self._scopes.complete(plan, now_ms=now, created_ms=(o.created_at for o in orders))
        log.info(
            "bitget %s %s: %d tracking orders in %d page(s), %d request(s), %d duplicate(s)",
            account.alias,
            product_type,
            len(orders),
            pages,
            calls[0],
            duplicates,
        )
        log.debug(
            "bitget %s %s: %s, %.1f days back",
            account.alias,
            product_type,
            "full horizon" if plan.full else "since the last complete snapshot",
            (now - plan.start_ms) / DAY_MS,
        )
        return FetchResult(orders=orders, calls=calls[0])

    async def _walk(
        self,
        account: Account,
        product_type: str,
        base_params: list[tuple[str, str]],
        from_ms: int,
        now: int,
        limiter: SlidingWindowLimiter,
        deadline: float,
        calls: list[int],
    ) -> tuple[list[Order], int, int]:
        """Every open tracking order created from ``from_ms`` to ``now``: (orders, pages,
        duplicates), or the error that makes the snapshot FAILED."""

        def count_call() -> None:
            calls[0] += 1

        rows: dict[str, tuple[TrackingOrder, str]] = {}
        duplicates = 0
        pages = 0
        for start_ms, end_ms in windows_between(from_ms, now, self._window_days):
            page_no = 1
            cursor: str | None = None
            while True:
                if pages >= self._max_pages:
                    raise SnapshotTooLarge(
                        f"account {account.alias!r} needs more than {self._max_pages} pages of "
                        f"{self._page_size} tracking orders; raise CONNECTOR_BITGET_MAX_PAGES"
                    )
                params = [
                    *base_params,
                    ("startTime", str(start_ms)),
                    ("endTime", str(end_ms)),
                    ("limit", str(self._page_size)),
                    ("pageSize", str(self._page_size)),
                    ("pageNo", str(page_no)),
                ]
                if cursor is not None:
                    params.append(("idLessThan", cursor))
                pages += 1
                data = await self._http.get_signed(
                    PATH_CURRENT_TRACKING_ORDERS,
                    params,
                    account=account,
                    limiter=limiter,
                    deadline=deadline,
                    on_attempt=count_call,
                )
                page = parse_page(data, f"tracking orders page {pages}")
                new = 0
                last: str | None = None
                for index, raw in enumerate(page.rows):
                    row = decode(TrackingOrder, raw, f"tracking orders page {pages} row #{index}")
                    key = tracking_no(row, index)
                    last = key
                    if key in rows:
                        duplicates += 1
                        continue
                    rows[key] = (row, raw_text(raw))
                    new += 1
                if not page.rows:
                    break  # the end of this window
                # An empty endId most likely marks the last page (one sibling example), but it
                # is not relied on: a server that never fills it in would cut every window at
                # its first page. The next page, after the last row, settles it.
                if new == 0:
                    if page_no == 1:
                        break  # the window holds only rows of a newer one: time filter ignored
                    raise SnapshotIncomplete(
                        f"Bitget repeated page {page_no - 1} of the tracking orders of account "
                        f"{account.alias!r} (it followed neither the cursor nor the page "
                        "number): the snapshot cannot be proven complete"
                    )
                cursor = page.end_id or last
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
        return orders, pages, duplicates

    async def _load_contracts(self, product_type: str, deadline: float) -> dict[str, ContractInfo]:
        data = await self._http.get_public(
            PATH_CONTRACTS, [("productType", product_type)], deadline=deadline
        )
        rows = decode(list[Contract], data, f"Bitget contracts {product_type}")
        return parse_contracts(rows, product_type)

    async def aclose(self) -> None:
        await self._http.aclose()
