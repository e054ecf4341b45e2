"""AscendexAdapter: the ExchangeAdapter for AscendEX futures open orders.

A command costs one WebSocket request (``exchange_calls`` = 1 without retries): the account
group, the contract list and the server clock are shared metadata, cached and counted in the
metadata metric instead of being charged to whichever command filled them. Retries wrap the
whole attempt in the shared :class:`~connector.resilience.RetryPolicy`, so one policy covers a
dropped socket, a 5xx from account info and a throttled request alike. Sockets are bounded by
the :class:`~.sessions.SessionPool` (per-IP session caps, idle closing, one connection budget).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from ...account import Account
from ...errors import AuthFailed, ConnectorError, ExchangeTimeout, Unsupported
from ...model import FetchResult, Order, OrderQuery
from ...resilience import RetryPolicy, SlidingWindowLimiter
from ...settings import Settings
from .._json import decode
from .auth import SignKey, ws_sign_key
from .config import AscendexSettings
from .http import AscendexHttpClient, CallCounter, account_cache_key
from .parsing import INVALID_TIMESTAMP, parse_open_orders
from .schemas import OpenOrdersReply
from .sessions import SessionPool
from .websocket import AscendexWsClient, stream_url

log = logging.getLogger(__name__)

OPEN_ORDERS_ACTION = "futures-open-orders"


class AscendexAdapter:
    exchange = "ascendex"

    def __init__(
        self,
        settings: Settings,
        venue: AscendexSettings | None = None,
        *,
        http: AscendexHttpClient | None = None,
    ) -> None:
        self._settings = settings
        self._venue = venue or AscendexSettings()
        self._http = http or AscendexHttpClient(
            self._venue.rest_url,
            request_timeout_s=settings.request_timeout_s,
            contracts_ttl_s=settings.contracts_cache_ttl_s,
            key_expiry_warn_days=self._venue.key_expiry_warn_days,
        )
        self._clients: dict[tuple[str, str], AscendexWsClient] = {}
        self._retry = RetryPolicy.from_settings(settings)
        v = self._venue
        self.pool = SessionPool(
            per_group=v.max_sessions_per_group,
            total=v.max_sessions_total,
            idle_timeout_s=v.session_idle_timeout_s,
            connect_budget=SlidingWindowLimiter(
                v.connect_budget, v.connect_budget_window_s, venue=self.exchange
            ),
            ban_probe=self._http.ip_ban,
        )

    def __repr__(self) -> str:
        return f"AscendexAdapter(rest={self._venue.rest_url!r})"

    def circuit_scope(self, account: Account) -> str:
        """The failure unit a command for ``account`` depends on (connector/exchanges/base.py
        CircuitScoped): its account group's host (``group-<n>``: each group has its own
        WebSocket host path and session caps) once the group is known, else the REST host that
        answers the group lookup."""
        group = self._http.cached_account_group(account)
        if group is not None:
            return f"group-{group}"
        return urlsplit(self._venue.rest_url).hostname or "rest"

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        if account.exchange != self.exchange:
            raise Unsupported(f"account {account.alias!r} is not an AscendEX account")
        calls = CallCounter()
        try:
            return await self._fetch(account, query, deadline, calls)
        except ConnectorError as exc:
            exc.calls = calls.count
            raise

    async def _fetch(
        self, account: Account, query: OrderQuery, deadline: float, calls: CallCounter
    ) -> FetchResult:
        sign_key = ws_sign_key(account)

        async def attempt() -> list[Order]:
            try:
                async with asyncio.timeout_at(deadline):
                    return await self._attempt(account, query, sign_key, deadline, calls)
            except TimeoutError:
                raise ExchangeTimeout(
                    f"{OPEN_ORDERS_ACTION}: deadline passed", retryable=False
                ) from None

        async def on_failure(exc: ConnectorError) -> None:
            # Only the exchange's verdict on the key (a failed `op: auth`, a documented auth
            # code) drops the cached account group; throttles, bans and transport errors keep it.
            if isinstance(exc, AuthFailed):
                # The key may have been rotated or moved; look the account up afresh next time.
                self._http.forget_account(account)
                expired = self._http.expired_key_error(account)
                if expired is not None:
                    expired.exchange_code = exc.exchange_code
                    raise expired
            elif exc.exchange_code == str(INVALID_TIMESTAMP):
                # Our signature time is outside AscendEX's window: re-measure, then retry.
                clock = self._http.clock
                await clock.resync(clock.generation, deadline=deadline)

        orders = await self._retry.call(
            attempt,
            deadline=deadline,
            venue=self.exchange,
            what=OPEN_ORDERS_ACTION,
            on_failure=on_failure,
        )
        return FetchResult(orders=orders, calls=calls.count)

    async def _attempt(
        self,
        account: Account,
        query: OrderQuery,
        sign_key: SignKey,
        deadline: float,
        calls: CallCounter,
    ) -> list[Order]:
        info = await self._http.account_info(account, deadline=deadline)
        if info.key_expires_at is not None and info.key_expires_at <= self._http.clock.now_ms():
            expired = self._http.expired_key_error(account)
            if expired is not None:  # fail fast: the login would be refused anyway
                raise expired
        unified = await self._http.unified_symbols(deadline=deadline)
        client = await self._client_for(account, info.account_group, sign_key)
        args = {"symbol": query.symbol} if query.symbol else {}
        frame = await client.request(OPEN_ORDERS_ACTION, args, deadline=deadline, calls=calls)
        reply = decode(OpenOrdersReply, frame, OPEN_ORDERS_ACTION)
        return parse_open_orders(reply, unified_symbols=unified)

    async def _client_for(
        self, account: Account, account_group: int, sign_key: SignKey
    ) -> AscendexWsClient:
        """The account's one socket; replaced when its URL or signing mode changed."""
        key = account_cache_key(account)
        url = stream_url(self._venue.ws_url, account_group)
        client = self._clients.get(key)
        if client is not None and client.url == url and client.sign_key is sign_key:
            return client
        if client is not None:
            await client.aclose()
        for other_key, other in list(self._clients.items()):
            if other_key[0] == account.alias and other_key != key:  # credentials were rotated
                await other.aclose()
                del self._clients[other_key]
        client = AscendexWsClient(
            url,
            account,
            sign_key,
            ping_interval_s=self._settings.ws_ping_interval_s,
            request_timeout_s=self._settings.request_timeout_s,
            clock_ms=self._http.clock.now_ms,
            account_group=account_group,
            pool=self.pool,
        )
        self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        await self.pool.aclose()
        await self._http.aclose()
