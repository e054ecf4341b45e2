"""The authenticated AscendEX WebSocket: one socket per account, many concurrent requests.

AscendEX limits sessions per IP and account group and counts ``auth`` messages against a
threshold, so opening a socket per command would not scale; instead each account keeps one
session and correlates replies by request ``id``. A reader task owns the receive side; a pinger
keeps the session alive (AscendEX drops a session that misses two of its pings) and notices a
silent peer. When the socket drops, every request in flight fails with a *retryable*
:class:`~connector.errors.ExchangeUnavailable`; the adapter retries on a fresh session.

Sockets are bounded: a client takes a slot from the adapter's :class:`~.sessions.SessionPool`
(per-IP session caps per account group and in total) and passes the process-wide connection
budget before every upgrade. A refused upgrade (403/429, or 5xx from the edge) is throttling or
unavailability, never an authentication failure: only the answer to ``op: auth`` judges the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ... import metrics
from ...account import Account
from ...errors import (
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from ...model import now_ms
from ...resilience import retry_after_s
from .._json import decode
from .auth import SignKey, ws_auth_message
from .http import CallCounter, remaining_timeout
from .parsing import INVALID_TIMESTAMP, error_from_payload, is_error_reply
from .schemas import Reply
from .sessions import SessionPool

log = logging.getLogger(__name__)


class _NoFrameDumps(logging.Filter):
    """websockets logs every frame at DEBUG, and the auth frame carries the API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_wire_log = logging.getLogger(f"{__name__}.wire")
_wire_log.addFilter(_NoFrameDumps())

PONG = json.dumps({"op": "pong"})
PING = json.dumps({"op": "ping"})
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class UpgradeRefused(Exception):
    """Internal: the upgrade got an HTTP error status; ``error`` is what the caller sees."""

    def __init__(self, error: RateLimited | ExchangeUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


def _body_code(body: bytes | bytearray | None) -> str | None:
    """The AscendEX ``code`` of a refused upgrade's JSON body, if it has one."""
    if not body:
        return None
    try:
        reply = decode(Reply, bytes(body), "upgrade refusal")
    except MalformedResponse:
        return None
    return str(reply.code) if reply.code not in (None, 0, "0") else None


def stream_url(ws_base_url: str, account_group: int) -> str:
    return f"{ws_base_url.rstrip('/')}/{account_group}/api/pro/v2/stream"


@dataclass(eq=False)
class _Session:
    """One open, authenticated socket and the requests waiting on it."""

    conn: ClientConnection
    pending: dict[str, asyncio.Future[str | bytes]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    last_received: float = 0.0
    closing_reason: str | None = None

    def fail_pending(self, reason: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ExchangeUnavailable(reason, retryable=True))
        self.pending.clear()


class AscendexWsClient:
    """Session manager for one account's private stream."""

    def __init__(
        self,
        url: str,
        account: Account,
        sign_key: SignKey,
        *,
        ping_interval_s: float,
        request_timeout_s: float,
        clock_ms: Callable[[], int] = now_ms,
        account_group: int = 0,
        pool: SessionPool | None = None,
    ) -> None:
        self.url = url
        self.account_group = account_group
        self._pool = pool
        self._busy = 0  # requests between "need a session" and "reply in"
        self._last_used = 0.0
        self._clock_ms = clock_ms
        self.sign_key = sign_key
        self._account = account
        self._ping_interval_s = ping_interval_s
        self._request_timeout_s = request_timeout_s
        self._session: _Session | None = None
        self._connect_lock = asyncio.Lock()
        self._closed = False
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"AscendexWsClient(account={self._account.alias!r}, url={self.url!r})"

    # --- pool protocol ---------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self._session is not None and self._busy == 0

    @property
    def last_used(self) -> float:
        return self._last_used

    async def close_session(self, reason: str) -> None:
        """Close the open session; the next request opens a new one (through the pool)."""
        session, self._session = self._session, None
        if self._pool is not None:
            self._pool.release(self)
        if session is not None:
            await self._teardown(session, reason)

    # --- public API ------------------------------------------------------------------------

    async def request(
        self, action: str, args: Mapping[str, Any], *, deadline: float, calls: CallCounter
    ) -> str | bytes:
        """Send ``{"op":"req","action":..,"args":..}`` and return the reply with the same id.

        Returns the reply frame exactly as received; it may be an AscendEX error message, and
        decoding and interpreting it is the caller's job.
        """
        self._busy += 1
        try:
            return await self._request(action, args, deadline=deadline, calls=calls)
        finally:
            self._busy -= 1
            self._last_used = asyncio.get_running_loop().time()
            if self._busy == 0 and self._pool is not None:
                self._pool.wake()  # idle now: a request waiting for a slot may take it over

    async def _request(
        self, action: str, args: Mapping[str, Any], *, deadline: float, calls: CallCounter
    ) -> str | bytes:
        session = await self._ensure_session(deadline)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[str | bytes] = asyncio.get_running_loop().create_future()
        session.pending[request_id] = future
        frame = json.dumps({"op": "req", "id": request_id, "action": action, "args": dict(args)})
        started = time.perf_counter()
        try:
            timeout = remaining_timeout(deadline, self._request_timeout_s)
            try:
                await session.conn.send(frame)
            except ConnectionClosed:
                raise ExchangeUnavailable(f"{action}: socket closed while sending") from None
            calls.add()
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                # Silence is how AscendEX enforces its per-minute level-1 message threshold
                # (requests ignored for 15 minutes), so it is "unavailable", retryable, and
                # never an empty snapshot.
                raise ExchangeUnavailable(
                    f"{action}: no reply within {timeout:.1f}s (AscendEX ignores requests "
                    "above its per-minute message threshold)",
                    retryable=True,
                    # Silence for a whole request timeout counts against the venue's circuit;
                    # a wait the command's deadline cut short does not.
                    venue_down=timeout >= self._request_timeout_s,
                ) from None
        finally:
            session.pending.pop(request_id, None)
            metrics.EXCHANGE_CALL_LATENCY.labels("ascendex", action).observe(
                time.perf_counter() - started
            )

    async def aclose(self) -> None:
        self._closed = True
        await self.close_session("client closed")

    # --- connection ------------------------------------------------------------------------

    async def _ensure_session(self, deadline: float) -> _Session:
        if self._closed:
            raise ExchangeUnavailable("websocket client is closed", retryable=False)
        session = self._session
        if session is not None:
            return session
        async with self._connect_lock:  # concurrent requests wait for one connect, not many
            if self._session is None:
                self._session = await self._open(deadline)
            return self._session

    async def _open(self, deadline: float) -> _Session:
        pool = self._pool
        if pool is not None:
            await pool.acquire(self, deadline=deadline)  # a slot under the session caps
        try:
            if pool is not None:
                pool.raise_if_banned(self._clock_ms())
                await pool.connect_budget.acquire(deadline)  # the per-IP connection budget
            try:
                conn = await self._connect_and_auth(deadline)
            except UpgradeRefused as exc:
                if pool is not None:
                    await pool.after_refusal(exc.error, deadline=deadline, now_ms=self._clock_ms())
                raise exc.error from None
            finally:
                if pool is not None:
                    pool.connect_budget.release()
        except BaseException:
            if pool is not None:
                pool.release(self)
            raise
        self._last_used = asyncio.get_running_loop().time()
        session = _Session(conn=conn, last_received=asyncio.get_running_loop().time())
        self.connections_opened += 1
        if self.connections_opened > 1:
            metrics.WS_RECONNECTS.labels("ascendex").inc()
            log.info("ascendex websocket reconnected", extra={"account": self._account.alias})
        session.tasks.append(asyncio.create_task(self._reader(session)))
        session.tasks.append(asyncio.create_task(self._pinger(session)))
        return session

    async def _connect_and_auth(self, deadline: float) -> ClientConnection:
        timeout = remaining_timeout(deadline, self._request_timeout_s)
        metrics.EXCHANGE_CONNECT_ATTEMPTS.labels("ascendex").inc()
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connect()
                try:
                    await self._authenticate(conn)
                except BaseException:
                    await conn.close()
                    raise
        except TimeoutError:
            # No greeting or auth answer in time: a throttled or overloaded edge, not a key.
            raise ExchangeUnavailable(
                f"websocket connect/auth got no answer within {timeout:.1f}s",
                venue_down=timeout >= self._request_timeout_s,
            ) from None
        return conn

    async def _connect(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                ping_interval=None,  # AscendEX keeps alive at the application level
                open_timeout=None,  # bounded by the caller's asyncio.timeout
                close_timeout=2,
                max_size=MAX_MESSAGE_BYTES,
                logger=_wire_log,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message = f"websocket upgrade refused (HTTP {status})"
            # The status is usually all the exchange said (the body may be an HTML edge page);
            # a JSON body with an AscendEX code (100014: IP banned) is kept as the code.
            body_code = _body_code(exc.response.body)
            code = body_code or str(status)
            if body_code == "100014":
                message += " - IP banned: exceeds MAX_REQ_COUNT_PER_IP"
            # 429 and 403 at the upgrade are AscendEX's per-IP throttle or ban (its edge answers
            # them, hummingbot #3754/#4959/#5832); the key is only judged by `op: auth`.
            error: RateLimited | ExchangeUnavailable
            if status in (403, 429):
                error = RateLimited(
                    message,
                    exchange_code=code,
                    retry_after=retry_after_s(exc.response.headers.get("Retry-After")),
                )
            else:
                error = ExchangeUnavailable(message, exchange_code=code)
            raise UpgradeRefused(error) from None
        except (OSError, WebSocketException) as exc:
            raise ExchangeUnavailable(f"websocket connect failed: {type(exc).__name__}") from None

    async def _authenticate(self, conn: ClientConnection) -> None:
        """Wait for the greeting, send ``op: auth``, wait for its reply (answering pings)."""
        auth_id = uuid.uuid4().hex[:12]
        greeted = False
        try:
            while True:
                message = decode(Reply, await conn.recv(), "websocket auth")
                kind = message.m
                if kind == "ping":
                    await conn.send(PONG)
                elif kind == "connected" and not greeted:
                    greeted = True
                    frame = ws_auth_message(
                        self._account.api_key.reveal(),
                        self._account.api_secret.reveal(),
                        self._clock_ms(),
                        auth_id,
                        self.sign_key,
                    )
                    await conn.send(
                        json.dumps(frame, separators=(",", ":"))
                    )  # never logged: carries key + signature
                elif kind == "auth":
                    if is_error_reply(message):
                        error = error_from_payload(message, context="websocket auth")
                        if error.exchange_code == str(INVALID_TIMESTAMP):
                            error.retryable = True  # the adapter re-measures the clock first
                        raise error
                    return
                elif kind in ("error", "disconnected"):
                    raise error_from_payload(message, context="websocket auth")
        except ConnectionClosed:
            raise ExchangeUnavailable("websocket closed during authentication") from None
        except MalformedResponse:
            raise MalformedResponse(
                "unreadable message during websocket authentication", retryable=True
            ) from None

    # --- background tasks ------------------------------------------------------------------

    async def _reader(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in session.conn:
                session.last_received = loop.time()
                try:
                    message = decode(Reply, frame, "websocket frame")
                except MalformedResponse:
                    log.warning("ascendex websocket: ignoring a frame that is not a JSON object")
                    continue
                await self._dispatch(session, message, frame)
        except ConnectionClosed:
            pass
        except Exception:  # pragma: no cover - a bug here must not leave requests hanging
            log.exception("ascendex websocket reader failed")
        finally:
            reason = session.closing_reason or "websocket closed"
            if self._session is session:
                self._session = None
                if self._pool is not None:
                    self._pool.release(self)
            session.fail_pending(f"futures-open-orders: {reason}; request not answered")
            for task in session.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            with contextlib.suppress(Exception):
                await session.conn.close()

    async def _dispatch(self, session: _Session, message: Reply, frame: str | bytes) -> None:
        kind = message.m
        if kind == "ping":
            with contextlib.suppress(ConnectionClosed):
                await session.conn.send(PONG)
            return
        if kind == "pong":
            return
        if kind == "disconnected":
            reason = message.reason or message.info or "disconnected by server"
            session.closing_reason = f"server disconnected the session ({reason})"
            log.warning("ascendex websocket: %s", session.closing_reason)
            return
        request_id = message.id
        future = session.pending.get(str(request_id)) if request_id is not None else None
        if future is not None and not future.done():
            future.set_result(frame)  # the reply exactly as received; the caller decodes it
        elif kind == "error":
            log.warning(
                "ascendex websocket error not matching any request: code=%s reason=%s",
                message.code,
                message.reason,
            )

    async def _pinger(self, session: _Session) -> None:
        """Our own ping every interval; a peer silent for two intervals is treated as gone."""
        loop = asyncio.get_running_loop()
        interval = self._ping_interval_s
        try:
            while True:
                await asyncio.sleep(interval)
                if loop.time() - session.last_received > 2 * interval + self._request_timeout_s:
                    session.closing_reason = "no message from server for two ping intervals"
                    log.warning("ascendex websocket: %s", session.closing_reason)
                    await session.conn.close()
                    return
                await session.conn.send(PING)
        except ConnectionClosed:
            return

    async def _teardown(self, session: _Session, reason: str) -> None:
        session.closing_reason = reason
        for task in session.tasks:
            task.cancel()
        session.fail_pending(reason)
        with contextlib.suppress(Exception):
            await session.conn.close()
        await asyncio.gather(*session.tasks, return_exceptions=True)
