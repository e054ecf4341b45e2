"""Where an account's state (connector/state.py) is kept between commands: the
:class:`StateStore` seam, and the table under it.

An account's state is stored as a header and chunks (connector/state_layout.py: why, and in
which order they are written), so no account is too large to store. :class:`ChunkedStateStore`
does that over a :class:`ChangelogTable`:

* :class:`FaustTable` in production: the Faust table ``STATE_TABLE``, backed by its changelog
  topic so a restarted or rebalanced worker continues from it. Its records are sent through the
  :class:`~connector.worker.publisher.Publisher` to the changelog partition of the account,
  not through Faust's ``table[key] = value``: that hands the record to Faust's producer buffer,
  a background task, where an error (a record over the producer's maximum request size) is
  raised with nobody to catch it and the worker exits; and it changes the in-memory table
  before the broker acknowledged anything.
* :class:`MemoryTable` in tests: a dict, with the "changelog" a restarted worker would read,
  and failures on demand (refuse, or acknowledge only the first k records of a write).

A write changes the in-memory table only once the changelog acknowledged all its records, so
a write that fails leaves the table as it was. What such a write may have left on the changelog
(a prefix of its records) is remembered: the account's next write rewrites those keys too and
keeps that write's pending versions pending, so the changelog is never behind what it holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from ..state import AccountState
from ..state_layout import (
    CHUNK_LIMIT,
    HEADER_FORMAT,
    TableRecord,
    chunk_key,
    join,
    layout_of,
    plan_write,
)
from .outages import Outages, refusal_name
from .publisher import Publisher, Record

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """Keeps each account's state, by table key (``<exchange>:<account>``)."""

    def load(self, key: str) -> AccountState | None:
        """The account's stored state, or None when it has none."""
        ...

    async def store(self, key: str, state: AccountState) -> bool:
        """Store ``state`` as the account's state; True once it is durable, False when it could
        not be stored (outages are waited out, not reported; the stored state is unchanged)."""
        ...


class ChangelogTable(Protocol):
    """A key-value table backed by a changelog: the in-memory view, and writes that are
    acknowledged by the changelog before they change it."""

    def get(self, key: str) -> Any:
        """The value in memory, or None."""
        ...

    async def write(self, account: str, records: Sequence[TableRecord]) -> None:
        """Send ``records`` in order to the changelog partition of the account (table key
        ``account``); return once all are acknowledged, raise otherwise. Memory unchanged."""
        ...

    def apply(self, records: Sequence[TableRecord]) -> None:
        """Change the in-memory view (a None value deletes the key)."""
        ...


class ChunkedStateStore:
    """:class:`StateStore` over a :class:`ChangelogTable`, as a header and chunks. Called with
    the account's lock held (StateWriter), so one write per account at a time."""

    def __init__(self, table: ChangelogTable, outages: Outages, limit: int = CHUNK_LIMIT) -> None:
        self.table = table
        self.outages = outages
        self.limit = limit
        # Per account: the header and chunks last joined, and the state they gave (load returns
        # that same object while the table holds them: joining is O(orders)).
        self._joined: dict[str, tuple[Any, list[Any], AccountState]] = {}
        # Per account: keys a failed write may have written, and the versions it named pending.
        self._unsure: dict[str, tuple[set[str], list[Any]]] = {}

    def load(self, key: str) -> AccountState | None:
        header = self.table.get(key)
        if header is None:
            return None
        if header.get("format") != HEADER_FORMAT:
            value: AccountState = header  # the old single-record format: loads as it is
            return value
        count = layout_of(header)
        chunks = [self.table.get(chunk_key(key, n, count)) for n in range(count)]
        cached = self._joined.get(key)
        if (
            cached is not None
            and cached[0] is header
            and all(a is b for a, b in zip(cached[1], chunks, strict=True))
        ):
            return cached[2]
        state = join(header, chunks)
        self._joined[key] = (header, chunks, state)
        return state

    async def store(self, key: str, state: AccountState) -> bool:
        unsure_keys, unsure_pending = self._unsure.get(key, (set(), []))
        try:
            records = plan_write(
                key,
                self.table.get,
                self.load(key),
                state,
                also=unsure_keys,
                extra_pending=unsure_pending,
                limit=self.limit,
            )
        except Exception as exc:  # a state we cannot encode: nothing was written
            log.error("state not stored: %s", type(exc).__name__, exc_info=True)
            return False
        # Until the write is acknowledged, any prefix of it may be on the changelog (a failure,
        # a refusal, a cancellation part-way): the account's next write covers those keys.
        header = next(r.value for r in records if r.key == key)
        self._unsure[key] = (
            unsure_keys | {r.key for r in records if r.key != key},
            [*unsure_pending, *header.get("pending", ())],
        )
        try:
            refused = await self.outages.until_acked(lambda: self.table.write(key, records))
        except Exception as exc:  # until_acked returns refusals; anything else lands here
            refused = exc
        if refused is not None:
            log.error("state table change refused (%s); the table is unchanged",
                      refusal_name(refused))  # fmt: skip
            return False
        self._unsure.pop(key, None)
        self.table.apply(records)
        count = layout_of(self.table.get(key))
        chunks = [self.table.get(chunk_key(key, n, count)) for n in range(count)]
        self._joined[key] = (self.table.get(key), chunks, state)
        return True


class FaustTable:
    """:class:`ChangelogTable` over a Faust table (its ``data`` in memory, its changelog topic).
    Written only inside the agent: routing makes the partition of the event being processed the
    account's own (docs/state-topic.md "Routing"), and every record of the account (header and
    chunks, whose own keys would hash elsewhere) goes to that partition, so the worker that
    owns the account's partition recovers all of them."""

    def __init__(self, table: Any, publisher: Publisher) -> None:
        self.table = table
        self.publisher = publisher

    def get(self, key: str) -> Any:
        return self.table.data.get(key)

    async def write(self, account: str, records: Sequence[TableRecord]) -> None:
        partition = self.table.partition_for_key(account)
        topic = self.table.changelog_topic.get_topic_name()
        await self.publisher.send(
            [Record(topic, json.dumps(r.key).encode(), r.data, [], partition) for r in records]
        )

    def apply(self, records: Sequence[TableRecord]) -> None:
        data = self.table.data
        for r in records:
            if r.value is None:
                data.pop(r.key, None)
            else:
                data[r.key] = r.value


class MemoryTable:
    """:class:`ChangelogTable` for tests. ``data`` is the in-memory view, ``changelog`` what
    was acknowledged (decoded, as a restarted worker would recover it); ``refuse`` refuses every
    write, ``ack_only`` acknowledges only the first k records of the next write (a worker killed
    part-way, or a refusal after them), ``writes`` lists every write's records."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.changelog: dict[str, Any] = {
            k: json.loads(json.dumps(v)) for k, v in self.data.items()
        }
        self.refuse = False
        self.ack_only: int | None = None
        self.writes: list[list[TableRecord]] = []

    def get(self, key: str) -> Any:
        return self.data.get(key)

    async def write(self, account: str, records: Sequence[TableRecord]) -> None:
        self.writes.append(list(records))
        if self.refuse:
            raise RefusedWrite("refused")
        acked = records if self.ack_only is None else records[: self.ack_only]
        for r in acked:
            if r.data is None:
                self.changelog.pop(r.key, None)
            else:
                self.changelog[r.key] = json.loads(r.data)
        if len(acked) < len(records):
            self.ack_only = None
            raise RefusedWrite("refused part-way")

    def apply(self, records: Sequence[TableRecord]) -> None:
        for r in records:
            if r.value is None:
                self.data.pop(r.key, None)
            else:
                self.data[r.key] = r.value

    def restarted(self) -> MemoryTable:
        """The table a new worker recovers from the changelog."""
        return MemoryTable(self.changelog)


class RefusedWrite(Exception):
    """A write :class:`MemoryTable` refused (not an outage: not retried)."""


class FaustTableStore(ChunkedStateStore):
    """The production :class:`StateStore`: the account's state chunked over the Faust table."""

    def __init__(self, table: Any, publisher: Publisher, outages: Outages) -> None:
        super().__init__(FaustTable(table, publisher), outages)


class InMemoryStateStore(ChunkedStateStore):
    """:class:`StateStore` for tests: chunked over a :class:`MemoryTable` (``table``),
    optionally pre-filled with states in the old single-record format (as a changelog written by
    an older version holds them); ``refuse`` makes every write fail."""

    def __init__(
        self,
        states: dict[str, AccountState] | None = None,
        *,
        table: MemoryTable | None = None,
        limit: int = CHUNK_LIMIT,
    ) -> None:
        self.memory = table or MemoryTable(states)
        super().__init__(self.memory, Outages(0.01), limit)

    @property
    def refuse(self) -> bool:
        return self.memory.refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        self.memory.refuse = value
