"""How far back a Bitget snapshot has to look, from what the last complete one of its scope listed.

A full snapshot walks ``CONNECTOR_BITGET_HISTORY_DAYS`` (365) back in windows of at most 89
days: at least five requests, six for an account with a few rows (the empty page that ends a
window with rows). At 5 requests/s per user, a standing query every 5 s would spend a quarter of
the account's budget on proving, again and again, that nothing was opened a year ago.

No tracking order can be created in the past. So once a snapshot of a *scope* (the account and
the filters: product type, symbol, trader) was complete at server time ``N``, every tracking
order open now was either listed by it, hence created no earlier than the oldest creation time
it listed, or created after ``N``. The next snapshot of the scope only walks back to
``min(oldest listed openTime, N) - margin``; the margin absorbs the difference between our
corrected clock and Bitget's and any delay between a copy trade's ``openTime`` and its showing
up in the listing (docs/bitget.md, "Requests per snapshot", argues the default).

The full horizon is walked on the first snapshot of a scope, after a FAILED one (the adapter
raised, including a cancelled fetch), when the memory forgot the scope (least recently used
beyond ``CONNECTOR_BITGET_SCOPES_REMEMBERED``), when the last listing had a row without a
readable ``openTime``, and periodically as a check (every ``CONNECTOR_BITGET_FULL_SCAN_EVERY``-th
snapshot of the scope, or when the last full one is ``CONNECTOR_BITGET_FULL_SCAN_INTERVAL_S``
old). The periodic check bounds how long an order the argument's assumptions missed (a lag
beyond the margin, a server that back-dates ``openTime``) can stay unseen.

The state is the adapter's, which lives as long as the worker process; this module does no I/O.
Per scope it keeps a 16-byte digest of the scope (never credential text), the time to cover from,
the time of the last full snapshot, a counter and a sequence number: a few hundred bytes, at
most ``capacity`` scopes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ...account import Account


def scope_key(
    account: Account, product_type: str, symbol: str | None, trader_id: str | None
) -> bytes:
    """The scope of a snapshot: whose tracking orders (the API key identifies the Bitget user
    and sub-account) filtered how. Hashed, so the memory holds no credential."""
    text = "\0".join((account.api_key.reveal(), product_type, symbol or "", trader_id or ""))
    return hashlib.sha256(text.encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class Plan:
    """One snapshot's range: ``start_ms`` to now; ``full`` when it is the whole horizon."""

    scope: bytes
    start_ms: int
    full: bool
    seq: int
    # What the scope's entry becomes if this snapshot completes.
    full_at_ms: int
    since_full: int


@dataclass(slots=True)
class _Entry:
    seq: int  # the snapshot that wrote it (a later-started one may replace it)
    cover_from_ms: int | None  # None: the next snapshot walks the full horizon
    full_at_ms: int = 0
    since_full: int = 0


class ScopeMemory:
    """Per-scope memory of the last complete snapshot, least recently used first out."""

    def __init__(
        self,
        *,
        margin_ms: int,
        full_every: int,
        full_interval_ms: int,
        capacity: int,
    ) -> None:
        self._margin_ms = margin_ms
        self._full_every = full_every
        self._full_interval_ms = full_interval_ms
        self._capacity = capacity
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def plan(self, scope: bytes, *, now_ms: int, horizon_ms: int) -> Plan:
        """Where a snapshot of ``scope`` starting at server time ``now_ms`` must walk back to;
        ``horizon_ms`` is the full horizon (now - history days)."""
        self._seq += 1
        entry = self._entries.get(scope)
        if entry is not None:
            self._entries.move_to_end(scope)
        start = horizon_ms
        if (
            entry is not None
            and entry.cover_from_ms is not None
            and entry.since_full + 1 < self._full_every
            and now_ms - entry.full_at_ms < self._full_interval_ms
        ):
            start = max(horizon_ms, entry.cover_from_ms - self._margin_ms)
        if start <= horizon_ms or entry is None:
            return Plan(scope, horizon_ms, True, self._seq, now_ms, 0)
        return Plan(scope, start, False, self._seq, entry.full_at_ms, entry.since_full + 1)

    def complete(self, plan: Plan, *, now_ms: int, created_ms: Iterable[int | None]) -> None:
        """The snapshot planned as ``plan`` listed orders created at ``created_ms``, completely."""
        cover_from: int | None = now_ms
        for created in created_ms:
            if created is None:  # no creation time: nothing bounds the next snapshot
                cover_from = None
                break
            cover_from = min(cover_from, created) if cover_from is not None else None
        entry = self._entries.get(plan.scope)
        if entry is not None and entry.seq > plan.seq:
            return  # a snapshot started later (or a failure since) already wrote the scope
        self._store(plan.scope, _Entry(plan.seq, cover_from, plan.full_at_ms, plan.since_full))

    def failed(self, scope: bytes) -> None:
        """A snapshot of ``scope`` failed: the next one walks the full horizon, and no snapshot
        that started before the failure may restore the scope's range."""
        self._seq += 1
        self._store(scope, _Entry(self._seq, None))

    def _store(self, scope: bytes, entry: _Entry) -> None:
        if self._capacity <= 0:
            return
        self._entries[scope] = entry
        self._entries.move_to_end(scope)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
