"""AscendEX REST: signed account info (to find the account group) and the public contract list.

One pooled :class:`httpx.AsyncClient` per adapter, because every command for every account goes
to the same host and connection reuse is most of a small request's latency. Both answers change
rarely, so both are cached: the account group per (alias, key) for the adapter's lifetime, the
contract list in the shared instrument cache for ``contracts_cache_ttl_s``. AscendEX has no time
endpoint, so the shared server clock reads its HTTP ``Date`` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from ... import metrics
from ...accounts import Account
from ...errors import ExchangeTimeout, ExchangeUnavailable, MalformedResponse, retry_after_s
from ...resilience import InstrumentCache, ServerClock
from .._json import decode
from .auth import REST_INFO_PATH, rest_headers
from .parsing import (
    error_from_payload,
    is_error_reply,
    parse_account_info,
    parse_contracts,
)
from .schemas import AccountInfo, AccountInfoReply, ContractsReply, Reply

log = logging.getLogger(__name__)

VENUE = "ascendex"

ACCOUNT_INFO_URL = "/api/pro/v1/info"
CONTRACTS_URL = "/api/pro/v2/futures/contract"


@dataclass(slots=True)
class CallCounter:
    """Requests sent on behalf of one command (QueryResult ``exchange_calls``): the WebSocket
    open-orders requests, retries included. Shared metadata (account group, contracts, server
    time) is not charged to a command; see :mod:`connector.resilience.cache`."""

    count: int = 0

    def add(self, n: int = 1) -> None:
        self.count += n


def account_cache_key(account: Account) -> tuple[str, str]:
    """Cache key that changes when the key is rotated, without holding the key itself."""
    digest = hashlib.sha256(account.api_key.reveal().encode()).hexdigest()[:16]
    return account.alias, digest


def remaining_timeout(deadline: float, cap: float) -> float:
    """Seconds left before ``deadline`` (loop time), capped; raises once the deadline passed."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise ExchangeTimeout("deadline passed before the request could be sent")
    return min(left, cap)


class AscendexHttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        request_timeout_s: float,
        contracts_ttl_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=request_timeout_s,
            transport=transport,
            headers={"Accept": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )
        self._request_timeout_s = request_timeout_s
        self._groups: dict[tuple[str, str], AccountInfo] = {}
        self._group_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.contracts: InstrumentCache[str, str] = InstrumentCache(
            self._load_contracts, venue=VENUE, ttl_s=contracts_ttl_s
        )
        self.clock = ServerClock(self._server_time, venue=VENUE, required=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- clock -----------------------------------------------------------------------------

    async def _server_time(self, deadline: float) -> int:
        """AscendEX publishes no time endpoint, but every answer carries an HTTP ``Date``
        header: one ``HEAD /`` reads it (1 s resolution, so +500 ms centres the truncation,
        well inside the 30 s window). Any status will do; only the header is read."""
        response = await self._send("/", "server-time", deadline=deadline, method="HEAD")
        date = response.headers.get("Date")
        if not date:
            raise MalformedResponse("server time: response has no Date header")
        try:
            return int(parsedate_to_datetime(date).timestamp() * 1000) + 500
        except (TypeError, ValueError):
            raise MalformedResponse("server time: Date header is not an HTTP date") from None

    # --- account group ---------------------------------------------------------------------

    def forget_account(self, account: Account) -> None:
        """Drop the cached account group, e.g. after the exchange rejected our authentication."""
        self._groups.pop(account_cache_key(account), None)

    async def account_info(self, account: Account, *, deadline: float) -> AccountInfo:
        """The account's group, from cache or one signed ``GET /api/pro/v1/info``.

        Shared metadata: the request is counted in the metadata metric, not in the command's
        ``exchange_calls``.
        """
        key = account_cache_key(account)
        cached = self._groups.get(key)
        if cached is not None:
            return cached
        lock = self._group_locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent first commands for one account share one call
            cached = self._groups.get(key)
            if cached is not None:
                return cached
            await self.clock.ensure(deadline=deadline)
            headers = rest_headers(
                account.api_key.reveal(),
                account.api_secret.reveal(),
                self.clock.now_ms(),
                REST_INFO_PATH,
            )
            metrics.METADATA_FETCHES.labels(VENUE, "account-info").inc()
            content = await self._get(
                ACCOUNT_INFO_URL, "account-info", headers=headers, deadline=deadline
            )
            info = parse_account_info(decode(AccountInfoReply, content, "account info"))
            self._groups[key] = info
            log.info(
                "ascendex account group resolved",
                extra={"account": account.alias, "account_group": info.account_group},
            )
            return info

    # --- contracts -------------------------------------------------------------------------

    async def unified_symbols(self, *, deadline: float) -> Mapping[str, str]:
        """Native -> unified symbol map (shared instrument cache and its failure policy)."""
        return await self.contracts.get("futures", deadline=deadline)

    async def _load_contracts(self, _key: str, deadline: float) -> Mapping[str, str]:
        content = await self._get(CONTRACTS_URL, "futures-contract", deadline=deadline)
        return parse_contracts(decode(ContractsReply, content, "futures contracts"))

    # --- transport -------------------------------------------------------------------------

    async def _send(
        self,
        url: str,
        endpoint: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
    ) -> httpx.Response:
        """One request; transport failures become typed errors. Headers never reach a log."""
        timeout = remaining_timeout(deadline, self._request_timeout_s)
        started = time.perf_counter()
        try:
            return await self._client.request(
                method, url, headers=dict(headers or {}), timeout=timeout
            )
        except httpx.TimeoutException:
            raise ExchangeTimeout(f"{endpoint}: no response within {timeout:.1f}s") from None
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"{endpoint}: {type(exc).__name__}") from None
        finally:
            metrics.EXCHANGE_CALL_LATENCY.labels(VENUE, endpoint).observe(
                time.perf_counter() - started
            )

    async def _get(
        self,
        url: str,
        endpoint: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One GET; the body, once it is known not to be an error (typed errors otherwise)."""
        response = await self._send(url, endpoint, deadline=deadline, headers=headers)
        log.debug("ascendex %s -> HTTP %s", endpoint, response.status_code)
        try:
            reply: Reply | None = decode(Reply, response.content, endpoint)
        except MalformedResponse:
            reply = None
        status = response.status_code
        if status >= 400:
            error = error_from_payload(
                reply or Reply(), context=f"{endpoint} (HTTP {status})", http_status=status
            )
            error.retry_after = retry_after_s(response.headers.get("Retry-After"))
            raise error
        if reply is None:
            raise MalformedResponse(f"{endpoint}: response is not a JSON object (HTTP {status})")
        if is_error_reply(reply):
            raise error_from_payload(reply, context=endpoint)
        return response.content
