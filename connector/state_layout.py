"""How an account's state (connector/state.py) is laid out in the state table: a header record
and chunks, so that no account is too large to store. Pure, no Kafka.

Why chunks
----------
The state used to be one JSON value per account. Past the producer's maximum request size
(1 MB: about 8,000 orders counting those retired in the last 24 h) the changelog record was
refused, inside Faust's producer buffer where nothing caught it, and the worker exited; the
command was answered but not committed, so the next owner of the partition processed it again
and exited too. Split into chunks of at most :data:`CHUNK_LIMIT` bytes, no account size gives a
record the broker refuses, and a write sends only the chunks that changed.

Records (all on the changelog partition of the account: the store sends them there itself)
------------------------------------------------------------------------------------------
* header, key ``<exchange>:<account>`` (the table key, as before): ``{"format": 2, "scopes",
  "pending", "chunks": count, "retired": old count}`` (``pending`` and ``retired`` optional);
* chunk ``n`` of ``count``, key ``<exchange>:<account>#<n>/<count>``: ``{"orders": {order_id:
  entry}}`` for the orders whose :func:`bucket` is ``n``. ``count`` is a power of two; it
  doubles (all chunks rewritten under new keys) while a chunk would exceed :data:`CHUNK_LIMIT`.

The count is part of a chunk's key so that a new layout never overwrites the chunks the stored
header still points at: until the header naming the new count is written, the old header and
its chunks are intact.

Order of the writes, and a crash in between
-------------------------------------------
The records of one write go to one partition in one ordered send, so what survives a crash is
a prefix of them (the Kafka log of a partition is append-only, in send order). The invariant
(connector/state.py "Publishing"): the stored state is never behind the state topic, and the
versions whose records are about to be published are stored (``pending``) before they are.

* **Same layout**: the header first (new scopes and pending versions), then the changed chunks.
  A prefix is the old state with the new header: every order the topic holds as open is still
  in it (the records are published only after the whole write was acknowledged), and any
  chunk already written that retired an order names a version the header marks as pending, so
  its tombstone is sent again by whoever loads the state (:func:`connector.state.
  unpublished_tombstones`). Chunks first would be wrong: a chunk retiring an order at version
  v with the header not yet naming v pending, and that tombstone is lost for good (the command
  is processed again, but the order is already retired in the state, so not tombstoned again).
  The new scopes with old chunks only make an older snapshot skip what the new one would have
  decided anyway (its orders' versions are lower than the scope's).
* **New layout** (the count doubles, or a state in the old single-record format is migrated):
  every chunk of the new layout first, then the header that points at them, then tombstones
  for the old layout's chunks. A prefix before the header leaves the old state untouched (the
  new chunks are not referenced); after it, the new state is complete; old chunks left behind
  are deleted again by the next write (the header names them as ``retired``).

Old format
----------
A header without ``"format": 2`` is a state in the single-record format (format 1: ``scopes``,
``orders``, ``pending`` in one value). It loads as it is and is rewritten as chunks on the next
write (a new layout, so the old record stays valid until the header replaces it).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .state import STATE_FORMAT, AccountState

HEADER_FORMAT = 2
CHUNK_LIMIT = 256 * 1024
"""Largest encoded chunk: a quarter of the producer's maximum request size (1 MB)."""
MAX_CHUNKS = 1 << 16  # beyond this a chunk may exceed the limit (one gigantic order)


@dataclass(frozen=True)
class TableRecord:
    """One record of a state write: the table key, its value (None deletes it) and the value as
    sent (JSON, UTF-8)."""

    key: str
    value: Any
    data: bytes | None


def chunk_key(key: str, n: int, count: int) -> str:
    """Key of chunk ``n`` of ``count`` of the account whose table key is ``key``."""
    return f"{key}#{n}/{count}"


def bucket(order_id: str, count: int) -> int:
    """The chunk of ``count`` (a power of two) that holds ``order_id``: stable across
    processes and versions (CRC-32 of the UTF-8 id)."""
    return zlib.crc32(order_id.encode("utf-8", "backslashreplace")) & (count - 1)


def encode(value: Any) -> bytes:
    """A table value as sent: compact JSON (Faust's ``json`` serializer reads it)."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def layout_of(header: Mapping[str, Any] | None) -> int:
    """The chunk count a stored header points at; 0 for none or the old single-record format."""
    if header is None or header.get("format") != HEADER_FORMAT:
        return 0
    return int(header["chunks"])


def join(header: Mapping[str, Any], chunks: Iterable[Mapping[str, Any] | None]) -> AccountState:
    """The account's state (connector/state.py shape) from its header and chunks; a chunk
    never written (None) holds no orders."""
    orders: dict[str, Any] = {}
    for chunk in chunks:
        if chunk:
            orders.update(chunk["orders"])
    state: AccountState = {"format": STATE_FORMAT, "scopes": header["scopes"], "orders": orders}
    if "pending" in header:
        state["pending"] = header["pending"]
    return state


def plan_write(
    key: str,
    get: Callable[[str], Any],
    old: Mapping[str, Any] | None,
    state: Mapping[str, Any],
    *,
    also: Iterable[str] = (),
    extra_pending: Iterable[Any] = (),
    limit: int = CHUNK_LIMIT,
) -> list[TableRecord]:
    """The records that store ``state`` for ``key``, in the order they must be written (module
    docstring). ``get`` reads the table as stored; ``old`` is the state it holds (as loaded);
    ``also`` names table keys that may hold something else than the table says (a write that
    failed part-way): rewritten or deleted too; ``extra_pending`` are versions such a write
    named pending, kept pending until a write succeeds."""
    old_header = get(key)
    old_count = layout_of(old_header)
    count = max(old_count, 1)
    orders: Mapping[str, Any] = state["orders"]
    old_orders: Mapping[str, Any] = (old or {}).get("orders", {})
    while True:
        new_layout = count != old_count
        if new_layout:
            dirty = set(range(count))
        else:
            dirty = _changed_buckets(old_orders, orders, count)
            dirty.update(_buckets_named(key, also, count))
        chunks = _chunks(orders, count, dirty)
        encoded = {n: encode(c) for n, c in chunks.items()}
        if count >= MAX_CHUNKS or all(len(d) <= limit for d in encoded.values()):
            break
        count *= 2
    header: dict[str, Any] = {
        "format": HEADER_FORMAT,
        "scopes": state["scopes"],
        "chunks": count,
    }
    pending = [list(v) for v in state.get("pending", ())]
    for v in extra_pending:
        if list(v) not in pending:
            pending.append(list(v))
    if pending:
        header["pending"] = sorted(pending)
    if new_layout and old_count:
        header["retired"] = old_count
    chunk_records = [
        TableRecord(chunk_key(key, n, count), chunks[n], encoded[n]) for n in sorted(chunks)
    ]
    head = TableRecord(key, header, encode(header))
    records = [*chunk_records, head] if new_layout else [head, *chunk_records]
    # Deletions last: the old layout (now), one a previous write retired (again: its deletes
    # may not have been written), keys a failed write may have left that this layout lacks.
    current = {r.key for r in records}
    stale: list[str] = []
    for retired in {old_count if new_layout else 0, _retired_layout(old_header)} - {0, count}:
        stale += [chunk_key(key, n, retired) for n in range(retired)]
    stale += sorted(k for k in also if k not in current and k != key)
    seen: set[str] = set()
    for k in stale:
        if k not in current and k not in seen:
            seen.add(k)
            records.append(TableRecord(k, None, None))
    return records


def _retired_layout(header: Mapping[str, Any] | None) -> int:
    """The chunk count of the layout a stored header says it replaced (0: none)."""
    if header is None or header.get("format") != HEADER_FORMAT:
        return 0
    return int(header.get("retired", 0))


def _changed_buckets(old: Mapping[str, Any], new: Mapping[str, Any], count: int) -> set[int]:
    """Buckets with an order added, changed or removed. apply_snapshot shares unchanged
    entries with the previous state, so identity settles most orders without comparing."""
    dirty: set[int] = set()
    for oid, entry in new.items():
        before = old.get(oid)
        if before is not entry and before != entry:
            dirty.add(bucket(oid, count))
    for oid in old:
        if oid not in new:
            dirty.add(bucket(oid, count))
    return dirty


def _chunks(orders: Mapping[str, Any], count: int, wanted: set[int]) -> dict[int, dict[str, Any]]:
    chunks: dict[int, dict[str, Any]] = {n: {"orders": {}} for n in wanted}
    if not wanted:
        return chunks
    for oid, entry in orders.items():
        chunk = chunks.get(bucket(oid, count))
        if chunk is not None:
            chunk["orders"][oid] = entry
    return chunks


def _buckets_named(key: str, keys: Iterable[str], count: int) -> set[int]:
    """The buckets of layout ``count`` among ``keys`` (chunk keys of ``key``)."""
    prefix, suffix = f"{key}#", f"/{count}"
    found: set[int] = set()
    for k in keys:
        if k.startswith(prefix) and k.endswith(suffix):
            n = k[len(prefix) : -len(suffix)]
            if n.isdigit() and int(n) < count:
                found.add(int(n))
    return found
