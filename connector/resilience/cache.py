"""The instrument (contract list) cache, with one failure policy for every venue.

Instrument lists are shared metadata: they change rarely and are the same for every account.

* A list is kept for ``ttl_s`` per key (e.g. a product type); one refresh at a time per key, so
  a burst of commands after expiry costs one request.
* If a refresh fails and an older list exists, the older list is used (an instrument's base and
  settlement assets never change, so a stale list is right for every symbol it has).
* If there is no list at all, the cache answers with an empty mapping and the caller publishes
  ``unified_symbol`` null: the snapshot's orders are complete and exact without it, and failing a
  risk snapshot over a cosmetic field would be worse. The failure is logged and counted.
* Fills are *not* charged to the command that happened to trigger them (``exchange_calls`` must
  be deterministic for a given exchange behaviour); they are counted in
  ``connector_exchange_metadata_fetches_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from .. import metrics
from ..errors import ConnectorError

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

#: Loads the list for a key; ``deadline`` is loop time.
Loader = Callable[[K, float], Awaitable[Mapping[str, V]]]


class InstrumentCache(Generic[K, V]):
    def __init__(self, loader: Loader[K, V], *, venue: str, ttl_s: float) -> None:
        self._loader = loader
        self._venue = venue
        self._ttl_s = ttl_s
        self._entries: dict[K, tuple[float, Mapping[str, V]]] = {}
        self._locks: dict[K, asyncio.Lock] = {}

    def _fresh(self, key: K, now: float) -> Mapping[str, V] | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry[1]
        return None

    async def get(self, key: K, *, deadline: float) -> Mapping[str, V]:
        loop = asyncio.get_running_loop()
        cached = self._fresh(key, loop.time())
        if cached is not None:
            return cached
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._fresh(key, loop.time())
            if cached is not None:
                return cached
            metrics.METADATA_FETCHES.labels(self._venue, "instruments").inc()
            try:
                instruments = await self._loader(key, deadline)
            except ConnectorError as exc:
                metrics.METADATA_FAILURES.labels(self._venue, "instruments").inc()
                stale = self._entries.get(key)
                log.warning(
                    "%s instruments for %s unavailable (%s); %s",
                    self._venue,
                    key,
                    exc,
                    "using the previous list" if stale else "unified_symbol will be null",
                )
                return stale[1] if stale else {}
            self._entries[key] = (loop.time(), instruments)
            return instruments
