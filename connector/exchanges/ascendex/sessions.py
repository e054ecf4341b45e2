"""Bounded AscendEX sessions: per-IP caps, idle closing and one connection budget.

AscendEX allows 20 WebSocket sessions per IP per account group and 300 per IP in total, and
limits connection *attempts* per IP (45 per 5 minutes in the deprecated v1 risk-limit sample),
banning the IP when they are exceeded (docs/ascendex.md). Every account needs its own
authenticated session, so a connector serving many sub-accounts of one group would cross the
cap, and a network blip across many accounts would turn into a reconnect storm. Hence:

* :class:`SessionPool` grants a *slot* before a socket is opened and takes it back when the
  socket closes. At most ``per_group`` slots per account group and ``total`` overall. When the
  cap is reached, the least recently used *idle* session (no request in flight) is closed to
  make room; if none is idle, the request waits for a slot until its deadline, never opening one
  more socket than allowed.
* Sessions idle for longer than ``idle_timeout_s`` are closed by a reaper task.
* Every upgrade first passes the process-wide connection budget, a
  :class:`~connector.resilience.SlidingWindowLimiter`; the retry policy's jittered exponential
  backoff spreads the retries.

The pool knows clients only through the small :class:`PooledClient` protocol, so it can be
tested without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from ... import metrics
from ...errors import ExchangeError, ExchangeTimeout, RateLimited
from ...resilience import SlidingWindowLimiter

log = logging.getLogger(__name__)

VENUE = "ascendex"


class PooledClient(Protocol):
    """What the pool needs from a session owner."""

    account_group: int

    @property
    def idle(self) -> bool:
        """True when a session is open and no request is using it."""

    @property
    def last_used(self) -> float:
        """Loop time of the last request (or of the connect)."""

    async def close_session(self, reason: str) -> None:
        """Close the open session (the client stays usable and may reconnect later)."""


#: Asks the exchange whether this IP is banned: (banned until, exchange ms; reason) or None.
BanProbe = Callable[[float], Awaitable[tuple[int, str] | None]]
PROBE_INTERVAL_S = 5.0


class SessionPool:
    def __init__(
        self,
        *,
        per_group: int,
        total: int,
        idle_timeout_s: float,
        connect_budget: SlidingWindowLimiter,
        ban_probe: BanProbe | None = None,
    ) -> None:
        self.per_group = per_group
        self.total = total
        self.idle_timeout_s = idle_timeout_s
        self.connect_budget = connect_budget
        self._holders: dict[int, list[PooledClient]] = {}
        self._released = asyncio.Event()  # replaced after each set: wakes every waiter once
        self._reaper: asyncio.Task[None] | None = None
        self.max_open_per_group: dict[int, int] = {}
        # The IP's ban as AscendEX's risk-limit-info reported it (exchange ms), and a probe.
        self.ban_probe = ban_probe
        self.banned_until_ms: int | None = None
        self.ban_reason = ""
        self._last_probe: float | None = None

    # --- counting --------------------------------------------------------------------------

    def open_in(self, group: int) -> int:
        return len(self._holders.get(group, ()))

    @property
    def open_total(self) -> int:
        return sum(len(v) for v in self._holders.values())

    def holds(self, client: PooledClient) -> bool:
        return any(h is client for h in self._holders.get(client.account_group, ()))

    def _gauge(self, group: int) -> None:
        metrics.EXCHANGE_SESSIONS_OPEN.labels(VENUE, str(group)).set(self.open_in(group))

    # --- slots -----------------------------------------------------------------------------

    async def acquire(self, client: PooledClient, *, deadline: float) -> None:
        """A slot for ``client``'s next socket, waiting (until ``deadline``) when at the cap."""
        self._start_reaper()
        group = client.account_group
        waited = False
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    if self.holds(client):
                        return
                    group_full = self.open_in(group) >= self.per_group
                    total_full = self.open_total >= self.total
                    if not group_full and not total_full:
                        holders = self._holders.setdefault(group, [])
                        holders.append(client)
                        self.max_open_per_group[group] = max(
                            self.max_open_per_group.get(group, 0), len(holders)
                        )
                        self._gauge(group)
                        return
                    victim = self._idle_victim(group if group_full else None)
                    if victim is not None:
                        self.release(victim)  # at once, so no one else picks the same victim
                        await victim.close_session("closed to make room for another account")
                        continue
                    if not waited:
                        waited = True
                        metrics.EXCHANGE_SESSION_WAITS.labels(VENUE).inc()
                    await self._released.wait()
        except TimeoutError:
            raise ExchangeTimeout(
                f"deadline passed waiting for a session (cap: {self.per_group} per account "
                f"group, {self.total} in total)",
                retryable=False,
            ) from None

    def _idle_victim(self, group: int | None) -> PooledClient | None:
        """The least recently used idle session in ``group`` (any group when None)."""
        candidates = [
            h
            for g, holders in self._holders.items()
            if group is None or g == group
            for h in holders
            if h.idle
        ]
        return min(candidates, key=lambda h: h.last_used, default=None)

    def release(self, client: PooledClient) -> None:
        """Give back ``client``'s slot (idempotent); wakes one waiting request."""
        holders = self._holders.get(client.account_group)
        if not holders or not any(h is client for h in holders):
            return
        holders[:] = [h for h in holders if h is not client]
        self._gauge(client.account_group)
        self.wake()

    def wake(self) -> None:
        """A slot was released or a session became idle: waiting requests look again."""
        self._released.set()
        self._released = asyncio.Event()

    # --- bans ------------------------------------------------------------------------------

    def raise_if_banned(self, now_ms: int) -> None:
        """Fail fast, without spending a connection attempt, while the IP is known banned."""
        until = self.banned_until_ms
        if until is None or until <= now_ms:
            return
        raise RateLimited(
            f"websocket connections from this IP are banned by AscendEX until "
            f"{_iso(until)} ({self.ban_reason or 'risk-limit-info'})",
            exchange_code="100014",
            retry_after=(until - now_ms) / 1000,
        )

    async def after_refusal(self, error: ExchangeError, *, deadline: float, now_ms: int) -> None:
        """An upgrade was refused: ask risk-limit-info (at most every few seconds) whether the
        IP is banned; if so, remember until when and say so in ``error``."""
        if self.ban_probe is None:
            return
        loop = asyncio.get_running_loop()
        if self._last_probe is not None and loop.time() - self._last_probe < PROBE_INTERVAL_S:
            return
        self._last_probe = loop.time()
        try:
            ban = await self.ban_probe(deadline)
        except ExchangeError as exc:
            log.info("ascendex risk-limit-info unavailable: %s", exc)
            return
        if ban is None:
            self.banned_until_ms = None
            return
        self.banned_until_ms, self.ban_reason = ban
        log.warning(
            "ascendex: this IP is banned until %s (%s)", _iso(ban[0]), ban[1] or "no reason given"
        )
        error.message += f"; IP banned until {_iso(ban[0])} ({ban[1] or 'risk-limit-info'})"
        error.exchange_code = "100014"
        if ban[0] > now_ms:
            error.retry_after = (ban[0] - now_ms) / 1000

    # --- idle sessions ---------------------------------------------------------------------

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(30.0, max(0.05, self.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for holders in list(self._holders.values()):
                for client in list(holders):
                    if client.idle and now - client.last_used >= self.idle_timeout_s:
                        log.info(
                            "ascendex: closing a session idle for %.1fs", now - client.last_used
                        )
                        await client.close_session("idle")

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
