"""The open-orders state topic: from complete snapshots to upserts and tombstones. Pure, no Kafka.

Snapshots answer "what was open when I asked"; the compacted state topic answers "what is open
now", as a table keyed ``<exchange>:<account>:<order_id>`` (value: the OrderEvent; a tombstone,
value null, once the order is known to be no longer open). This module decides *which* records
to publish. The worker keeps the returned :data:`AccountState` in a changelog-backed Faust table
keyed ``<exchange>:<account>`` (:func:`table_key`) and publishes the returned records.

Scopes
------
A snapshot's *scope* is the effective filter of its command, as a mapping of filter field to
value (``{}`` = the whole account; ``{"symbol": "BTCUSDT"}``; a venue's options with their
defaults applied, e.g. ``{"product_type": "USDT-FUTURES"}``, because a command without a product
type is answered for the default one only). This module never names a venue: a scope is any
mapping of filter fields, and an order *matches* a scope when each of the scope's fields equals
the order's attribute of that name. An order's attributes are what its OrderEvents say
(:func:`order_attributes`: ``symbol``, ``product_type``, ``copy_trading.trader_id`` as
``trader_id``), the scope of every snapshot that returned it (a symbol-filtered snapshot proves
its orders have that symbol), and what was stored for it before (attributes of an order never
change). An attribute nobody has told us is *unknown*, and an unknown attribute never matches:
such an order is not retired by a snapshot filtered on that field (the safe side: a stale row
rather than a wrong tombstone; the next snapshot that covers it settles it).

A complete OK snapshot of scope F proves that no order matching F is open other than those it
lists. So applying it retires (tombstones) every order open in the state that matches F and is
absent from the snapshot. This includes "open in the previous complete snapshot of the same
scope and absent now" and also retires orders first seen by a wider or different scope: an
unfiltered snapshot retires any absent order of the account; a ``symbol=X`` snapshot retires only
absent orders whose symbol is X, never anything of another symbol. A FAILED (incomplete) snapshot
changes nothing: :func:`apply_snapshot` returns the state unchanged and no records.

Versions
--------
Every snapshot carries a :data:`Version`, ``(started_at_ms, partition, offset)``: when the fetch
started (what the exchange's answer describes), then the command's partition and offset as a
tie-breaker, so two different commands never share a version. Versions compare as tuples. The
state remembers, per order, the version of the last snapshot that upserted or retired it, and per
scope the highest version applied (``scopes``). Applying snapshot S (version v, scope F):

1. An order listed in S is **upserted** unless something newer knows better: its stored version
   is higher than v (a newer snapshot upserted or retired it), or a scope G the order matches was
   applied with a version higher than v (a newer complete snapshot covering the order did not
   list it, so it was not open then; this holds for G wider than F, narrower, or overlapping:
   an unfiltered newer snapshot blocks an older ``symbol=X`` one and vice versa for the orders
   inside X).
2. An order open in the state, matching F, absent from S, is **retired** (tombstone) only when its
   stored version is lower than v: an order upserted by a newer snapshot is never retired by an
   older one.
3. ``scopes[F]`` becomes the maximum of its old value and v.

So an older snapshot finishing after a newer one neither resurrects an order the newer one
retired nor retires one it upserted; it still updates the orders no newer snapshot has covered.

Repeats
-------
Applying the same snapshot (same version) again yields the same state and the same records:
upserts with a stored version equal to v are published again, and orders retired *at* v are
tombstoned again. Re-publishing is harmless on a compacted topic and makes the crash window
between "table written" and "records acknowledged" safe. A command re-processed after a crash
fetches again and so is a *new* snapshot (a new ``started_at``): it is applied as the newest one.

Publishing, and a crash in between
----------------------------------
The worker stores the new state in its changelog-backed table *before* it publishes the records,
so the stored state is never behind the topic: a state that is behind could forget an order it
upserted, and then nothing would ever retire it. The state it stores names, in ``pending``, the
versions whose records it is about to publish (:func:`with_pending`). If the worker dies before
they are acknowledged, the command is processed again and its new snapshot upserts what is still
open; the tombstones of those versions are what could be lost, so the next worker, which loads a
state it did not publish itself, sends them again first (:func:`unpublished_tombstones`). Upserts
never need this: an order the state holds as open is upserted by every snapshot that lists it.

Clocks
------
``started_at`` is the wall clock of the worker that fetched. A worker that restores an
account's state written by another (after a restart or a rebalance) may have a clock behind the
other's; its snapshots, all started after the restore, would then look older than the restored
versions, and rule 1 would keep them from upserting new orders until its clock caught up. So a
worker raises the versions of the snapshots it applies to a state it restored above the newest
version in that state (:func:`not_before`, :func:`newest_started_at`): within one worker, the
order of its own snapshots is kept (they are raised to the same floor at most, and then ordered
by partition and offset, i.e. command order).

Size
----
The state is a JSON value (stored as a header and chunks: connector/state_layout.py): per order
its attributes and version, plus the retired orders'
markers for ``retain_ms`` (default one day) after the snapshot that retired them, plus one
version per scope ever applied. A retired marker older than that is dropped; by then no snapshot
started before the retirement can still be running (commands time out within minutes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import OrderQuery

Version = tuple[int, int, int]
"""``(started_at_ms, partition, offset)`` of the command whose snapshot this is."""

AccountState = dict[str, Any]
"""The JSON value stored per account: ``{"format": 1, "scopes": {scope_key: [t, p, o]},
"orders": {order_id: {"open": bool, "v": [t, p, o], "a": {attribute: value}}},
"pending": [[t, p, o], ...]}`` (``pending`` optional: see "Publishing" above)."""

STATE_FORMAT = 1
DEFAULT_RETAIN_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Snapshot:
    """One command's outcome, as the state logic needs it."""

    exchange: str
    account: str
    scope: Mapping[str, str]
    version: Version
    orders: Sequence[Mapping[str, Any]]  # the OrderEvent records, in snapshot order
    complete: bool = True  # False for a FAILED outcome: it changes nothing


@dataclass(frozen=True)
class StateRecord:
    """One record for the state topic; ``value`` None is a tombstone."""

    key: str
    order_id: str
    value: Mapping[str, Any] | None


@dataclass(frozen=True)
class Applied:
    state: AccountState
    records: list[StateRecord]

    @property
    def upserts(self) -> list[StateRecord]:
        return [r for r in self.records if r.value is not None]

    @property
    def tombstones(self) -> list[StateRecord]:
        return [r for r in self.records if r.value is None]


def table_key(exchange: str, account: str) -> str:
    """Key of an account's state in the Faust table (and of the repartitioned commands)."""
    return f"{exchange}:{account}"


def record_key(exchange: str, account: str, order_id: str) -> str:
    """Key of an order on the state topic (the same as on the ``orders`` topic)."""
    return f"{exchange}:{account}:{order_id}"


def scope_of(filters: Mapping[str, str | None]) -> dict[str, str]:
    """The scope of a command: its effective filter fields, unset ones left out."""
    return {k: v for k, v in sorted(filters.items()) if v is not None}


def scope_of_query(query: OrderQuery) -> dict[str, str]:
    """The scope of a validated command: its filter fields after venue defaults."""
    filters: dict[str, str | None] = {"symbol": query.symbol}
    for name, value in query.options.model_dump().items():
        filters[name] = None if value is None else str(value)
    return scope_of(filters)


def scope_key(scope: Mapping[str, str]) -> str:
    """Canonical text of a scope (the key of ``scopes`` in the stored state)."""
    return json.dumps(dict(sorted(scope.items())), separators=(",", ":"))


def order_attributes(event: Mapping[str, Any]) -> dict[str, str]:
    """The filterable attributes an OrderEvent states about its order (nulls are unknown)."""
    attrs: dict[str, str] = {}
    for name in ("symbol", "product_type"):
        value = event.get(name)
        if value is not None:
            attrs[name] = str(value)
    copy = event.get("copy_trading")
    if isinstance(copy, Mapping) and copy.get("trader_id") is not None:
        attrs["trader_id"] = str(copy["trader_id"])
    return attrs


def empty_state() -> AccountState:
    return {"format": STATE_FORMAT, "scopes": {}, "orders": {}}


def matches(attrs: Mapping[str, str], scope: Mapping[str, str]) -> bool:
    """Whether an order with these attributes is inside the scope (unknown never matches)."""
    return all(attrs.get(k) == v for k, v in scope.items())


def _version(value: Any) -> Version:
    t, p, o = value
    return (int(t), int(p), int(o))


def _covered_by_newer(
    attrs: Mapping[str, str], scopes: Iterable[tuple[dict[str, str], Version]], v: Version
) -> bool:
    return any(sv > v and matches(attrs, s) for s, sv in scopes)


def apply_snapshot(
    previous: Mapping[str, Any] | None,
    snap: Snapshot,
    *,
    retain_ms: int = DEFAULT_RETAIN_MS,
) -> Applied:
    """Apply one outcome to an account's stored state; see the module docstring for the rules.

    ``previous`` is never modified. Records come upserts first (snapshot order), then
    tombstones (by order id), all for ``snap.exchange``/``snap.account``.
    """
    state = _copy(previous)
    if not snap.complete:
        return Applied(state, [])
    v = snap.version
    scope = dict(snap.scope)
    orders: dict[str, Any] = state["orders"]
    applied_scopes = [(json.loads(k), _version(sv)) for k, sv in state["scopes"].items()]
    records: list[StateRecord] = []

    # Last occurrence wins if an exchange lists an order twice (paging while orders change).
    listed: dict[str, Mapping[str, Any]] = {}
    for event in snap.orders:
        listed[str(event["order_id"])] = event

    for order_id, event in listed.items():
        entry = orders.get(order_id)
        attrs = {**(entry["a"] if entry else {}), **order_attributes(event), **scope}
        if entry is not None and _version(entry["v"]) > v:
            continue
        if _covered_by_newer(attrs, applied_scopes, v):
            continue
        orders[order_id] = {"open": True, "v": list(v), "a": attrs}
        records.append(
            StateRecord(record_key(snap.exchange, snap.account, order_id), order_id, event)
        )

    for order_id in sorted(orders):
        if order_id in listed:
            continue
        entry = orders[order_id]
        if not matches(entry["a"], scope):
            continue
        ev = _version(entry["v"])
        if entry["open"] and ev < v:
            orders[order_id] = {"open": False, "v": list(v), "a": entry["a"]}
        elif entry["open"] or ev != v:  # a retired order is tombstoned again only on a repeat
            continue
        records.append(
            StateRecord(record_key(snap.exchange, snap.account, order_id), order_id, None)
        )

    key = scope_key(scope)
    old = state["scopes"].get(key)
    if old is None or _version(old) < v:
        state["scopes"][key] = list(v)

    newest = max(_version(sv)[0] for sv in state["scopes"].values())
    _prune(state, newest_started_at=newest, retain_ms=retain_ms)
    return Applied(state, records)


def with_pending(
    state: AccountState,
    versions: Iterable[Version],
    previous: Mapping[str, Any] | None = None,
    *,
    retain_ms: int = DEFAULT_RETAIN_MS,
) -> AccountState:
    """``state`` marked as about to be published for ``versions``, plus the versions still
    pending in ``previous`` (a state whose records nobody confirmed; see the module docstring).
    Modifies and returns ``state``."""
    pending = {_version(v) for v in (previous or {}).get("pending", ())}
    pending.update(versions)
    if pending:  # as long as a retired order's marker is kept, and no longer
        cutoff = max(v[0] for v in pending) - retain_ms
        pending = {v for v in pending if v[0] >= cutoff}
    state["pending"] = [list(v) for v in sorted(pending)]
    return state


def newest_started_at(state: Mapping[str, Any] | None) -> int | None:
    """The latest fetch start (ms) of any version ``state`` holds, or None for no state."""
    if not state:
        return None
    times = [_version(v)[0] for v in state["scopes"].values()]
    times += [_version(e["v"])[0] for e in state["orders"].values()]
    return max(times, default=None)


def not_before(version: Version, floor_ms: int | None) -> Version:
    """``version`` moved to ``floor_ms`` + 1 when it started at or before it (see "Clocks"):
    a snapshot that started after a state was restored is newer than all of it, whatever the
    clocks of the workers that wrote it said."""
    if floor_ms is None or version[0] > floor_ms:
        return version
    return (floor_ms + 1, version[1], version[2])


def unpublished_tombstones(
    state: Mapping[str, Any] | None, exchange: str, account: str
) -> list[StateRecord]:
    """The tombstones of the versions ``state`` names as pending: a worker that loads a state it
    did not publish itself sends them before anything else, in case their publisher died."""
    if not state:
        return []
    pending = {_version(v) for v in state.get("pending", ())}
    return [
        StateRecord(record_key(exchange, account, oid), oid, None)
        for oid, e in sorted(state["orders"].items())
        if not e["open"] and _version(e["v"]) in pending
    ]


def open_orders(state: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Order id -> attributes of the orders the state holds as open."""
    if not state:
        return {}
    return {oid: dict(e["a"]) for oid, e in state["orders"].items() if e["open"]}


def _copy(previous: Mapping[str, Any] | None) -> AccountState:
    if not previous:
        return empty_state()
    if previous.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown state format {previous.get('format')!r}")
    # Shallow: apply_snapshot replaces an order's entry (and a scope's version) with a new
    # value and never modifies one, so the copy shares the unchanged entries with ``previous``
    # (a deep copy was a third of applying a 1,000-order snapshot: py-spy, make bench).
    return {
        "format": STATE_FORMAT,
        "scopes": dict(previous["scopes"]),
        "orders": dict(previous["orders"]),
    }


def _prune(state: AccountState, *, newest_started_at: int, retain_ms: int) -> None:
    cutoff = newest_started_at - retain_ms
    orders = state["orders"]
    for oid in [oid for oid, e in orders.items() if not e["open"] and e["v"][0] < cutoff]:
        del orders[oid]
