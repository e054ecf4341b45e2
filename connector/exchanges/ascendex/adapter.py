"""AscendexAdapter: the ExchangeAdapter for AscendEX futures open orders.

A command costs one WebSocket request once the account is warm: the account group and the
contract list come from caches, and the account's socket is reused. Retries live here, not in
the transports, so that one policy (attempts, backoff, the command's deadline) covers a dropped
socket, a 5xx from account info and a throttled request alike.
"""

from __future__ import annotations

import asyncio
import logging

from ...accounts import Account
from ...errors import AuthFailed, ConnectorError, ExchangeTimeout, Unsupported
from ...model import FetchResult, Order, OrderQuery
from ...settings import Settings
from .auth import SignKey, ws_sign_key
from .config import AscendexSettings
from .http import AscendexHttpClient, CallCounter, account_cache_key
from .parsing import parse_open_orders
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
        )
        self._clients: dict[tuple[str, str], AscendexWsClient] = {}

    def __repr__(self) -> str:
        return f"AscendexAdapter(rest={self._venue.rest_url!r})"

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
        loop = asyncio.get_running_loop()
        max_attempts = self._settings.max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout_at(deadline):
                    orders = await self._attempt(account, query, sign_key, deadline, calls)
                return FetchResult(orders=orders, calls=calls.count)
            except TimeoutError:
                raise ExchangeTimeout(
                    f"{OPEN_ORDERS_ACTION}: deadline passed during attempt {attempt}",
                    attempts=attempt,
                ) from None
            except ConnectorError as exc:
                exc.attempts = attempt
                if isinstance(exc, AuthFailed):
                    # The key may have been rotated or moved; look the account up afresh next time.
                    self._http.forget_account(account)
                if not exc.retryable or attempt >= max_attempts:
                    raise
                backoff = self._settings.retry_backoff_s * (2 ** (attempt - 1))
                if loop.time() + backoff >= deadline:
                    raise ExchangeTimeout(
                        f"{OPEN_ORDERS_ACTION}: deadline leaves no time to retry after: {exc}",
                        exchange_code=exc.exchange_code,
                        attempts=attempt,
                    ) from exc
                log.warning(
                    "ascendex %s attempt %d/%d failed, retrying in %.2fs: %s",
                    OPEN_ORDERS_ACTION,
                    attempt,
                    max_attempts,
                    backoff,
                    exc,
                    extra={"account": account.alias, "request_id": query.request_id},
                )
                await asyncio.sleep(backoff)

    async def _attempt(
        self,
        account: Account,
        query: OrderQuery,
        sign_key: SignKey,
        deadline: float,
        calls: CallCounter,
    ) -> list[Order]:
        info = await self._http.account_info(account, deadline=deadline, calls=calls)
        unified = await self._http.unified_symbols(deadline=deadline, calls=calls)
        client = await self._client_for(account, info.account_group, sign_key)
        args = {"symbol": query.symbol} if query.symbol else {}
        reply = await client.request(OPEN_ORDERS_ACTION, args, deadline=deadline, calls=calls)
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
        )
        self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        await self._http.aclose()
