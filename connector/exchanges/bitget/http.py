"""The signed Bitget REST client: one pooled ``httpx.AsyncClient`` per adapter (so per process).

Responsibilities, in the order a request meets them:

1. *Clock.* Bitget rejects a request whose ``ACCESS-TIMESTAMP`` is more than 30 s away from its
   own clock (code ``40008`` "Request timestamp expired"). The shared
   :class:`~connector.resilience.ServerClock` measures the offset to ``GET /api/v2/public/time``
   (midpoint of the round trip); requests are signed with local time + offset, and on ``40008``
   the clock is re-measured and that request sent again once.
2. *Rate limit.* Signed requests pass through the account's shared
   :class:`~connector.resilience.SlidingWindowLimiter`, every attempt, retries included.
3. *Signing.* The query string is encoded once (:func:`~.auth.build_query`) and sent as is (the
   URL handed to httpx is already encoded, so it is not re-encoded); the signature is computed
   over the *decoded* text of that same string in the same order, because that is what Bitget
   verifies (ccxt PR #28890: a percent-encoded non-ASCII symbol signed encoded got 40009).
4. *Errors.* Bitget's ``code`` (a string; ``"00000"`` is success) and the HTTP status map onto
   the connector's typed errors; Bitget's own code is kept in ``exchange_code``.
5. *Retries.* 5xx, timeouts, dropped connections and throttling are retried by the shared
   :class:`~connector.resilience.RetryPolicy` (backoff with jitter, ``Retry-After``, throttling
   until the deadline, never past it).

Code table (Bitget v2 REST; messages as Bitget sends them), cross-checked with ccxt's
``bitget.py`` ``exceptions['exact']`` and public reports of real responses:

====================  ===================================================  ===================
code                  msg                                                  connector error
====================  ===================================================  ===================
40001 40002 40003     ACCESS_KEY / SECRET_KEY / Signature cannot be empty  AuthFailed
40005                 Invalid ACCESS_TIMESTAMP                             AuthFailed
40006                 Invalid ACCESS_KEY                                   AuthFailed
40009                 sign signature error                                 AuthFailed
40010                 Request timed out (Bitget) / sign signature error    resend once, then
                      (ccxt): the sources disagree                         AuthFailed
40036 40038           passphrase is error / IP not in the key's whitelist  AuthFailed
40506 40507           Platform / Api signature error (copy trading)        AuthFailed
40011                 ACCESS_PASSPHRASE cannot be empty                    AuthFailed
40012                 apikey/password is incorrect                         AuthFailed
40013                 User status is abnormal                              AuthFailed
40014                 Incorrect permissions                                AuthFailed
40016 40018 40031     phone/Google binding, Invalid IP, account cancelled  AuthFailed
40037                 Apikey does not exist                                AuthFailed
40004 40008           Request timestamp expired                            resync, retry once
429 (HTTP 429)        Too Many Requests                                    RateLimited
1001                  The request is too frequent and has been throttled   RateLimited
40015                 System is abnormal, please try again later           ExchangeUnavailable
40200 40604           Server upgrade / Server is busy                      ExchangeUnavailable
40017 31001 31025     not a copy-trading follower/trader (40017 is          ExchangeRejected
31057 40732           "Parameter verification failed {0}", see the docs)   "not a follower"
40704                 Can only check the data of the last three months     SnapshotIncomplete
40700 40705 40707     cursor / time-window errors (our request is wrong)   ExchangeRejected
anything else         (e.g. 40017 Parameter verification failed,           ExchangeRejected
                      40019 Parameter ... cannot be empty)
====================  ===================================================  ===================

The ``43xxx`` family is *not* throttling on Bitget (ccxt maps 43001/43011/43012/43025 to order
errors), so it falls through to ExchangeRejected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import unquote

import httpx
import msgspec

from ...account import Account
from ...errors import (
    AuthFailed,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
    SnapshotIncomplete,
)
from ...metrics import EXCHANGE_CALL_LATENCY
from ...resilience import RetryPolicy, ServerClock, SlidingWindowLimiter, retry_after_s
from ...secrets import redact
from .._json import decode, decoder
from .auth import HEADER_LOCALE, LOCALE, build_query, signed_headers
from .parsing import parse_server_time
from .schemas import PATH_SERVER_TIME, SUCCESS, Envelope, ServerTime

log = logging.getLogger(__name__)

ENVELOPE = decoder(Envelope)

VENUE = "bitget"

AUTH_CODES = frozenset(
    {
        "40001",
        "40002",
        "40003",
        "40005",
        "40006",
        "40009",
        "40011",
        "40012",
        "40013",
        "40014",
        "40016",
        "40018",
        "40031",
        "40036",
        "40037",
        "40038",
        "40506",
        "40507",
    }
)
# Bitget's error table says "Request timed out", ccxt says "sign signature error": resent once
# (a timeout passes), and a second 40010 is taken for a signature error (AUTH_FAILED).
AMBIGUOUS_CODES = frozenset({"40010"})
NOT_FOLLOWER_CODES = frozenset({"40017", "31001", "31025", "31057", "40732"})
HISTORY_CODES = frozenset({"40704"})
TIMESTAMP_CODES = frozenset({"40004", "40008"})
THROTTLE_CODES = frozenset({"429", "1001"})
UNAVAILABLE_CODES = frozenset({"40015", "40200", "40604"})

_MSG_LIMIT = 200


class TimestampExpired(AuthFailed):
    """``40008``: handled inside the client (resync + one retry) unless it happens twice."""


class TimedOutOrBadSignature(AuthFailed):
    """``40010``: resent once inside the client; a second one is a signature error."""


def _endpoint_label(path: str) -> str:
    return path.rsplit("/", 1)[-1] or path


def map_response(
    path: str, status: int, content: bytes, retry_after: float | None = None
) -> msgspec.Raw:
    """Return ``data`` of a successful response (raw, for the endpoint's Struct), or raise the
    typed error it stands for.

    Pure (no I/O) so the whole mapping table can be unit-tested from recorded bodies.
    """
    body: Envelope | None
    try:
        body = ENVELOPE.decode(content) if content else None
    except (msgspec.DecodeError, UnicodeDecodeError):
        body = None
    code: str | None = None
    msg = ""
    if body is not None:
        if body.code is not None:
            code = str(body.code)
        msg = redact(str(body.msg or ""))[:_MSG_LIMIT]
    where = f"Bitget {path}"
    detail = msg or f"HTTP {status}"

    if status == 429 or code in THROTTLE_CODES:
        raise RateLimited(
            f"{where}: {msg or 'Too Many Requests'}",
            exchange_code=code or "429",
            retry_after=retry_after,
        )
    if code in TIMESTAMP_CODES:
        raise TimestampExpired(f"{where}: {detail}", exchange_code=code)
    if code in AMBIGUOUS_CODES:
        raise TimedOutOrBadSignature(
            f"{where}: {detail} (Bitget documents 40010 as a timeout, ccxt as a signature "
            "error; it persisted, so the signature is taken to be wrong)",
            exchange_code=code,
        )
    if code in AUTH_CODES:
        raise AuthFailed(f"{where}: {detail}", exchange_code=code)
    if code in NOT_FOLLOWER_CODES:
        raise ExchangeRejected(
            f"{where}: the API key's account is not a copy-trading follower of this "
            f"product type (Bitget: {detail})",
            exchange_code=code,
        )
    if code in HISTORY_CODES:
        raise SnapshotIncomplete(
            f"{where}: Bitget refuses to look further back ({detail}), so open tracking "
            "orders created earlier cannot be listed: the snapshot cannot be proven complete",
            exchange_code=code,
        )
    if code in UNAVAILABLE_CODES:
        raise ExchangeUnavailable(f"{where}: {detail}", exchange_code=code)
    if status >= 500:
        raise ExchangeUnavailable(
            f"{where}: HTTP {status}{': ' + msg if msg else ''}", exchange_code=code
        )
    if body is None or code is None:
        if status in (401, 403):
            raise AuthFailed(f"{where}: HTTP {status}")
        # A 2xx/4xx that is not a Bitget envelope: a proxy page or a truncated body.
        raise MalformedResponse(
            f"{where}: unreadable response body (HTTP {status})", retryable=True
        )
    if code == SUCCESS and 200 <= status < 300:
        return body.data
    raise ExchangeRejected(f"{where}: {detail}", exchange_code=code)


class BitgetHttpClient:
    """Signed, rate-limited, retrying GETs against one Bitget base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        request_timeout_s: float = 10.0,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        time_resync_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._request_timeout_s = request_timeout_s
        self._retry = RetryPolicy(max_attempts=max_attempts, backoff_s=retry_backoff_s)
        self._client = httpx.AsyncClient(
            timeout=request_timeout_s,
            transport=transport,
            headers={HEADER_LOCALE: LOCALE},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            follow_redirects=False,
        )
        self.clock = ServerClock(self._server_time, venue=VENUE, resync_s=time_resync_s)

    def __repr__(self) -> str:
        return f"BitgetHttpClient(base_url={self._base_url!r})"

    @property
    def clock_offset_ms(self) -> int | None:
        """Server time minus local time, as last measured (None before the first sync)."""
        return self.clock.offset_ms

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _server_time(self, deadline: float) -> int:
        data = await self._request(PATH_SERVER_TIME, (), deadline=deadline)
        return parse_server_time(decode(ServerTime, data, "Bitget server time"))

    # --- requests ---------------------------------------------------------------------------

    async def get_public(
        self, path: str, params: Sequence[tuple[str, str]] = (), *, deadline: float
    ) -> Any:
        return await self._request(path, params, deadline=deadline)

    async def get_signed(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        *,
        account: Account,
        limiter: SlidingWindowLimiter,
        deadline: float,
        on_attempt: Callable[[], None] | None = None,
    ) -> Any:
        """A signed GET. ``on_attempt`` is called for every request actually sent."""
        if account.passphrase is None:
            raise AuthFailed(f"account {account.alias!r} has no passphrase; Bitget requires one")
        await self.clock.ensure(deadline=deadline)
        return await self._request(
            path, params, deadline=deadline, account=account, limiter=limiter, on_attempt=on_attempt
        )

    async def _request(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        *,
        deadline: float,
        account: Account | None = None,
        limiter: SlidingWindowLimiter | None = None,
        on_attempt: Callable[[], None] | None = None,
    ) -> Any:
        query = build_query(params)
        resynced = False
        resent_40010 = False

        async def once() -> Any:
            nonlocal resynced, resent_40010
            generation = self.clock.generation
            send = partial(
                self._send_once,
                path,
                query,
                account=account,
                limiter=limiter,
                deadline=deadline,
                on_sent=on_attempt,
            )
            try:
                return await send()
            except TimedOutOrBadSignature:
                if resent_40010:
                    raise
                resent_40010 = True
                log.info("bitget %s: 40010 (timeout or signature?), sending again once", path)
                return await send()
            except TimestampExpired:
                if resynced or account is None:
                    raise
                # A clock correction is not a failed attempt: re-measure, send again once.
                resynced = True
                log.info("bitget %s: timestamp expired, re-measuring the clock", path)
                await self.clock.resync(generation, deadline=deadline)
                return await send()

        return await self._retry.call(once, deadline=deadline, venue=VENUE, what=f"Bitget {path}")

    async def _send_once(
        self,
        path: str,
        query: str,
        *,
        account: Account | None,
        limiter: SlidingWindowLimiter | None,
        deadline: float,
        on_sent: Callable[[], None] | None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            raise ExchangeTimeout(f"deadline passed before calling Bitget {path}", retryable=False)
        if limiter is not None:
            await limiter.acquire(deadline)
        try:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ExchangeTimeout(
                    f"deadline passed before calling Bitget {path}", retryable=False
                )
            headers: dict[str, str] = {}
            if account is not None:
                assert account.passphrase is not None
                headers = signed_headers(
                    api_key=account.api_key,
                    api_secret=account.api_secret,
                    passphrase=account.passphrase,
                    timestamp=str(self.clock.now_ms()),
                    method="GET",
                    request_path=path,
                    # Bitget verifies over the decoded query (same text for plain ASCII).
                    query=unquote(query),
                )
            url = httpx.URL(
                f"{self._base_url}{path}?{query}" if query else f"{self._base_url}{path}"
            )
            timeout = min(self._request_timeout_s, remaining)
            started = time.perf_counter()
            if on_sent is not None:
                on_sent()
            try:
                response = await self._client.get(url, headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                raise ExchangeTimeout(
                    f"Bitget {path} did not answer within {timeout:.3f}s",
                    # Evidence against the venue only when it had the whole request timeout.
                    venue_down=timeout >= self._request_timeout_s,
                ) from None
            except httpx.TransportError as exc:
                raise ExchangeUnavailable(
                    f"Bitget {path}: connection failed ({type(exc).__name__})"
                ) from None
            finally:
                EXCHANGE_CALL_LATENCY.labels("bitget", _endpoint_label(path)).observe(
                    time.perf_counter() - started
                )
        finally:
            if limiter is not None:
                limiter.release()
        log.debug("bitget GET %s -> HTTP %d", path, response.status_code)
        retry_after = retry_after_s(response.headers.get("Retry-After"))
        return map_response(path, response.status_code, response.content, retry_after)
