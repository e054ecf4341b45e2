"""The exchange's clock, as seen from here: local time + a measured offset.

Exchanges reject signed requests whose timestamp is too far from their own clock (often a
window of seconds; see each venue's docs page). A host clock can drift by more, so every venue
signs with :meth:`ServerClock.now_ms`. The offset is measured from the
midpoint of one round trip to the venue's server-time source, once per process and again every
``resync_s``; a venue that gets "timestamp expired" calls :meth:`resync` and retries once.
Concurrent callers share one measurement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import metrics
from ..errors import ConnectorError
from ..model import now_ms

log = logging.getLogger(__name__)

#: Fetches the server's time in UTC epoch milliseconds (``deadline`` is loop time).
ServerTimeSource = Callable[[float], Awaitable[int]]


class ServerClock:
    def __init__(
        self,
        source: ServerTimeSource,
        *,
        venue: str,
        resync_s: float = 600.0,
        required: bool = True,
    ) -> None:
        """``required=False``: a failed measurement is logged and signing falls back to the
        last offset (or local time) instead of failing the command."""
        self._source = source
        self._required = required
        self._venue = venue
        self._resync_s = resync_s
        self._offset_ms: int | None = None
        self._synced_at: float | None = None
        self._lock = asyncio.Lock()
        self.generation = 0

    @property
    def offset_ms(self) -> int | None:
        """Server time minus local time, as last measured (None before the first sync)."""
        return self._offset_ms

    def now_ms(self) -> int:
        return now_ms() + (self._offset_ms or 0)

    def set_offset(self, offset_ms: int) -> None:
        """Record an offset measured elsewhere (e.g. from a reply that carries server time)."""
        self._offset_ms = offset_ms
        metrics.EXCHANGE_CLOCK_OFFSET.labels(self._venue).set(offset_ms / 1000)
        self._synced_at = asyncio.get_running_loop().time()
        self.generation += 1

    async def measure(self, *, deadline: float) -> int | None:
        before = now_ms()
        metrics.METADATA_FETCHES.labels(self._venue, "server-time").inc()
        try:
            server = await self._source(deadline)
        except ConnectorError as exc:
            metrics.METADATA_FAILURES.labels(self._venue, "server-time").inc()
            if self._required:
                raise
            log.warning(
                "%s server time unavailable (%s); signing with local time", self._venue, exc
            )
            self._synced_at = asyncio.get_running_loop().time()  # retry after resync_s
            return self._offset_ms
        after = now_ms()
        self.set_offset(server - (before + after) // 2)
        log.info("%s clock offset measured: %d ms", self._venue, self._offset_ms)
        return self._offset_ms

    async def ensure(self, *, deadline: float) -> None:
        """Measure once per process and every ``resync_s``; concurrent callers share it."""
        loop = asyncio.get_running_loop()
        if self._synced_at is not None and loop.time() - self._synced_at < self._resync_s:
            return
        async with self._lock:
            if self._synced_at is None or loop.time() - self._synced_at >= self._resync_s:
                await self.measure(deadline=deadline)

    async def resync(self, generation: int, *, deadline: float) -> None:
        """Re-measure after "timestamp expired", unless someone did since ``generation``."""
        async with self._lock:
            if self.generation == generation:
                await self.measure(deadline=deadline)
