"""AscendEX REST: signed account info (to find the account group) and the public contract list.

One pooled :class:`httpx.AsyncClient` per adapter, because every command for every account goes
to the same host and connection reuse is most of a small request's latency. Both answers change
rarely, so both are cached: the account group per (alias, key) for the adapter's lifetime, the
contract list in the shared instrument cache for ``contracts_cache_ttl_s``. The shared server
clock is measured from ``exchange-info`` (``requestReceiveAt``); a signed request rejected as
``INVALID_TIMESTAMP`` re-measures it and is signed again once, so a skewed host clock is
corrected rather than reported as bad credentials. Account info also carries the key's
``expireTime``, published as a metric and warned about when near.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from ... import metrics
from ...account import Account
from ...errors import (
    AuthFailed,
    ConnectorError,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
)
from ...model import now_ms
from ...resilience import InstrumentCache, ServerClock, retry_after_s
from .._json import decode
from .auth import REST_INFO_PATH, rest_headers
from .parsing import (
    INVALID_TIMESTAMP,
    error_from_payload,
    is_error_reply,
    parse_account_info,
    parse_ban,
    parse_contracts,
    parse_server_time,
)
from .schemas import (
    AccountInfo,
    AccountInfoReply,
    ContractsReply,
    ExchangeInfoReply,
    Reply,
    RiskLimitReply,
)

log = logging.getLogger(__name__)

VENUE = "ascendex"

ACCOUNT_INFO_URL = "/api/pro/v1/info"
EXCHANGE_INFO_URL = "/api/pro/v1/exchange-info"
RISK_LIMIT_URL = "/api/pro/v2/risk-limit-info"
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
        key_expiry_warn_days: float = 7.0,
    ) -> None:
        self._key_expiry_warn_ms = int(key_expiry_warn_days * 86_400_000)
        # Last known key expiry per alias: kept when the cached group is dropped, so a later
        # authentication failure of an expired key can say that it expired.
        self.key_expiry: dict[str, int] = {}
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
        """``GET /api/pro/v1/exchange-info?requestTime=<ms>``: ``requestReceiveAt`` is the
        server's clock when our request arrived (docs "Exchange Latency Info"); the shared
        clock takes the midpoint of the round trip."""
        url = f"{EXCHANGE_INFO_URL}?requestTime={now_ms()}"
        content = await self._get(url, "exchange-info", deadline=deadline)
        return parse_server_time(decode(ExchangeInfoReply, content, "exchange-info"))

    # --- bans ------------------------------------------------------------------------------

    async def ip_ban(self, deadline: float) -> tuple[int, str] | None:
        """``GET /api/pro/v2/risk-limit-info`` (public): is this IP banned, until when?"""
        metrics.METADATA_FETCHES.labels(VENUE, "risk-limit-info").inc()
        content = await self._get(RISK_LIMIT_URL, "risk-limit-info", deadline=deadline)
        return parse_ban(decode(RiskLimitReply, content, "risk-limit-info"))

    # --- account group ---------------------------------------------------------------------

    def cached_account_group(self, account: Account) -> int | None:
        """The account's group if it is known (cached), without any request."""
        info = self._groups.get(account_cache_key(account))
        return None if info is None else info.account_group

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
            try:
                info = await self._signed_account_info(account, deadline)
            except ConnectorError as exc:
                if exc.exchange_code != str(INVALID_TIMESTAMP):
                    raise self._explain_expiry(account, exc) from None
                # Our clock is off by more than AscendEX's 30 s window: measure and sign again.
                log.warning("ascendex rejected our timestamp; re-measuring the server clock")
                await self.clock.resync(self.clock.generation, deadline=deadline)
                info = await self._signed_account_info(account, deadline)
            self._groups[key] = info
            self._note_key_expiry(account, info)
            log.info(
                "ascendex account group resolved",
                extra={"account": account.alias, "account_group": info.account_group},
            )
            return info

    async def _signed_account_info(self, account: Account, deadline: float) -> AccountInfo:
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
        return parse_account_info(decode(AccountInfoReply, content, "account info"))

    def _note_key_expiry(self, account: Account, info: AccountInfo) -> None:
        """Publish the key's expiry and warn when it is near (it never fails the command)."""
        expires = info.key_expires_at
        if expires is None:
            self.key_expiry.pop(account.alias, None)
            with contextlib.suppress(KeyError):  # never expires: no series
                metrics.API_KEY_EXPIRY.remove(VENUE, account.alias)
            return
        self.key_expiry[account.alias] = expires
        metrics.API_KEY_EXPIRY.labels(VENUE, account.alias).set(expires / 1000)
        left_ms = expires - self.clock.now_ms()
        if left_ms <= self._key_expiry_warn_ms:
            log.warning(
                "ascendex API key of account %s expires in %.1f days (expireTime %d); "
                "renew it or bind it to IP addresses (unbound keys expire after 90 days)",
                account.alias,
                left_ms / 86_400_000,
                expires,
                extra={"account": account.alias, "key_expires_at": expires},
            )

    def expired_key_error(self, account: Account) -> AuthFailed | None:
        """An AuthFailed saying the key expired, when its last known expiry has passed."""
        expires = self.key_expiry.get(account.alias)
        if expires is None or expires > self.clock.now_ms():
            return None
        when = datetime.fromtimestamp(expires / 1000, UTC).isoformat(timespec="seconds")
        return AuthFailed(
            f"API key of account {account.alias!r} expired at {when} (AscendEX expireTime "
            f"{expires}); create a new key, or bind one to IP addresses so it does not expire"
        )

    def _explain_expiry(self, account: Account, exc: ConnectorError) -> ConnectorError:
        if isinstance(exc, AuthFailed):
            expired = self.expired_key_error(account)
            if expired is not None:
                expired.exchange_code = exc.exchange_code
                return expired
        return exc

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
            raise ExchangeTimeout(
                f"{endpoint}: no response within {timeout:.1f}s",
                # Evidence against the venue only when it had the whole request timeout.
                venue_down=timeout >= self._request_timeout_s,
            ) from None
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
