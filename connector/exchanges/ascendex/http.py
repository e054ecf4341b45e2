"""AscendEX REST: signed account info (to find the account group) and the public contract list.

One pooled :class:`httpx.AsyncClient` per adapter, because every command for every account goes
to the same host and connection reuse is most of a small request's latency. Both answers change
rarely, so both are cached: the account group per (alias, key) for the adapter's lifetime, the
contract list for ``contracts_cache_ttl_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ... import metrics
from ...accounts import Account
from ...errors import ConnectorError, ExchangeTimeout, ExchangeUnavailable
from ...model import now_ms
from .._json import loads
from .auth import REST_INFO_PATH, rest_headers
from .parsing import error_from_payload, is_error_reply, parse_account_info, parse_contracts
from .schemas import AccountInfo

log = logging.getLogger(__name__)

ACCOUNT_INFO_URL = "/api/pro/v1/info"
CONTRACTS_URL = "/api/pro/v2/futures/contract"


@dataclass(slots=True)
class CallCounter:
    """Requests made on behalf of one command (QueryResult ``exchange_calls``)."""

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
        self._contracts_ttl_s = contracts_ttl_s
        self._groups: dict[tuple[str, str], AccountInfo] = {}
        self._group_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._contracts: dict[str, str] | None = None
        self._contracts_expire_at = 0.0
        self._contracts_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- account group ---------------------------------------------------------------------

    def forget_account(self, account: Account) -> None:
        """Drop the cached account group, e.g. after the exchange rejected our authentication."""
        self._groups.pop(account_cache_key(account), None)

    async def account_info(
        self, account: Account, *, deadline: float, calls: CallCounter
    ) -> AccountInfo:
        """The account's group, from cache or one signed ``GET /api/pro/v1/info``."""
        key = account_cache_key(account)
        cached = self._groups.get(key)
        if cached is not None:
            return cached
        lock = self._group_locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent first commands for one account share one call
            cached = self._groups.get(key)
            if cached is not None:
                return cached
            headers = rest_headers(
                account.api_key.reveal(), account.api_secret.reveal(), now_ms(), REST_INFO_PATH
            )
            payload = await self._get(
                ACCOUNT_INFO_URL, "account-info", headers=headers, deadline=deadline, calls=calls
            )
            info = parse_account_info(payload)
            self._groups[key] = info
            log.info(
                "ascendex account group resolved",
                extra={"account": account.alias, "account_group": info.account_group},
            )
            return info

    # --- contracts -------------------------------------------------------------------------

    async def unified_symbols(self, *, deadline: float, calls: CallCounter) -> Mapping[str, str]:
        """Native -> unified symbol map, refreshed after the TTL.

        When a refresh fails but an older list exists, the older list is used: a contract's
        underlying and settlement asset never change, so a stale list is still right for every
        symbol it has.
        """
        if self._contracts is not None and time.monotonic() < self._contracts_expire_at:
            return self._contracts
        async with self._contracts_lock:
            if self._contracts is not None and time.monotonic() < self._contracts_expire_at:
                return self._contracts
            try:
                payload = await self._get(
                    CONTRACTS_URL, "futures-contract", deadline=deadline, calls=calls
                )
                contracts = parse_contracts(payload)
            except ConnectorError as exc:
                if self._contracts is None:
                    raise
                log.warning("ascendex contracts refresh failed, using cached list: %s", exc)
                return self._contracts
            self._contracts = contracts
            self._contracts_expire_at = time.monotonic() + self._contracts_ttl_s
            return contracts

    # --- transport -------------------------------------------------------------------------

    async def _get(
        self,
        url: str,
        endpoint: str,
        *,
        deadline: float,
        calls: CallCounter,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One GET, every failure mapped to a typed error; headers never reach a log or message."""
        timeout = remaining_timeout(deadline, self._request_timeout_s)
        calls.add()
        started = time.perf_counter()
        try:
            response = await self._client.get(url, headers=dict(headers or {}), timeout=timeout)
        except httpx.TimeoutException:
            raise ExchangeTimeout(f"{endpoint}: no response within {timeout:.1f}s") from None
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"{endpoint}: {type(exc).__name__}") from None
        finally:
            metrics.EXCHANGE_CALL_LATENCY.labels("ascendex", endpoint).observe(
                time.perf_counter() - started
            )
        log.debug("ascendex %s -> HTTP %s", endpoint, response.status_code)
        try:
            payload = loads(response.content)
        except ValueError:
            payload = None
        status = response.status_code
        if status >= 400 or status == 429:
            body = payload if isinstance(payload, Mapping) else {}
            raise error_from_payload(
                body, context=f"{endpoint} (HTTP {status})", http_status=status
            )
        if payload is None:
            raise ExchangeUnavailable(f"{endpoint}: response is not valid JSON (HTTP {status})")
        if isinstance(payload, Mapping) and is_error_reply(payload):
            raise error_from_payload(payload, context=endpoint)
        return payload
