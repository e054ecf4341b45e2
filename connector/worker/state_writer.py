"""Writing an account's state: apply a complete OK snapshot, store the state, then publish its
upserts and tombstones on the state topic (docs/state-topic.md, connector/state.py).

Applying is serialized per account (a lock per ``<exchange>:<account>``), because commands of
one account run concurrently: two snapshots finishing together must neither lose an update nor
interleave their records. :func:`connector.state.apply_snapshot` orders them by version, so
the older one finishing last does not regress the state. Snapshots that queue for the lock are
written together by whoever holds it next: one store and one produce round for all of them
instead of two round trips each, one after another, which bounded the commands per second of a
busy account.

The state is stored (:class:`connector.worker.state_store.StateStore`) before its records are
published (:class:`connector.worker.publisher.Publisher`), naming the versions being published
as pending, so the stored state is never behind the topic; a state this process did not see
published (restored after a restart or rebalance, or whose records were refused) has its
pending tombstones sent again first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from .. import metrics
from ..codec import Serializer
from ..pipeline import Outcome
from ..state import (
    AccountState,
    Snapshot,
    StateRecord,
    apply_snapshot,
    newest_started_at,
    not_before,
    scope_of_query,
    table_key,
    unpublished_tombstones,
    with_pending,
)
from ..statetopic import encode_state_records
from .outages import Outages, refusal_name
from .publisher import Publisher, Record
from .state_store import StateStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _StateWrite:
    """A snapshot waiting to be written to its account's state (StateWriter.publish_state)."""

    snap: Snapshot
    outcome: Outcome
    encoded: dict[int, bytes]
    done: bool = False
    upserts: int = 0
    tombstones: int = 0


class StateWriter:
    """Owns the per-account locks and queues of state writes."""

    def __init__(
        self,
        store: StateStore,
        publisher: Publisher,
        outages: Outages,
        serializer: Serializer,
        topic: str,
        venues: frozenset[str],
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.outages = outages
        self.serializer = serializer
        self.topic = topic
        self.venues = venues  # metric label values
        # Per account: the lock that serializes applying snapshots to its state, the snapshots
        # waiting for it (the holder writes them all), and the last state whose records this
        # process saw acknowledged (see _write_states).
        self._locks: dict[str, asyncio.Lock] = {}
        self._queues: dict[str, list[_StateWrite]] = {}
        self._published: dict[str, AccountState] = {}
        # Per account: the newest version time of a state restored from another writer, below
        # which no later snapshot's version may start (connector/state.py "Clocks").
        self._floors: dict[str, int] = {}

    def queued(self, key: str) -> int:
        """How many snapshots of the account (table key) wait for its lock."""
        return len(self._queues.get(key, ()))

    def lock(self, key: str) -> asyncio.Lock:
        """The lock that serializes the account's (table key) state writes."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def publish_state(
        self,
        outcome: Outcome,
        position: tuple[int, int],
        encoded: dict[int, bytes] | None = None,
    ) -> None:
        """Called by the agent (Connector.handle) after the outcome's QueryResult was
        acknowledged: applies a complete OK snapshot to its account's state, stores it and
        publishes the upserts and tombstones on the state topic; returns once they are
        acknowledged (or refused for good: logged). A FAILED outcome changes nothing.
        ``position`` (partition, offset) breaks version ties; ``encoded`` holds the order
        events' encoded values by id of the value, reused as the upserts. Affects the account's
        queue, lock and stored state, and connector_state_records_total."""
        query = outcome.query
        if not outcome.ok or query is None:
            await self._confirm_restored(outcome)  # issue 20: FAILED, but tombstones pending
            return
        key = table_key(outcome.exchange, outcome.account)
        snap = Snapshot(
            outcome.exchange,
            outcome.account,
            scope_of_query(query),
            (outcome.started_at, *position),
            [r.value for r in outcome.orders],
        )
        mine = _StateWrite(snap, outcome, encoded or {})
        self._queues.setdefault(key, []).append(mine)
        async with self.lock(key):
            if not mine.done:  # nobody wrote it while this command waited for the lock
                queued = self._queues.pop(key)
                try:
                    await self._write_states(key, queued)
                except Exception:  # a bug: never a worker exit; the stored state is unchanged
                    log.exception("state not written; the stored state is unchanged",
                                  extra={"exchange": outcome.exchange,
                                         "account": outcome.account})  # fmt: skip
                except BaseException:  # cancelled: the others go back, for the next holder
                    rest = [w for w in queued if w is not mine]
                    self._queues[key] = rest + self._queues.get(key, [])
                    raise
                for write in queued:
                    write.done = True
        label = outcome.exchange if outcome.exchange in self.venues else "unknown"
        if mine.upserts:
            metrics.STATE_RECORDS.labels(label, "upsert").inc(mine.upserts)
        if mine.tombstones:
            metrics.STATE_RECORDS.labels(label, "tombstone").inc(mine.tombstones)

    async def _write_states(self, key: str, queued: list[_StateWrite]) -> None:
        """Apply ``queued`` snapshots of one account in turn, store the resulting state, then
        publish their records (connector/state.py "Publishing": the stored state is never
        behind the topic, and names the versions being published as pending)."""
        first = queued[0]
        ctx = {"exchange": first.snap.exchange, "account": first.snap.account}
        loaded = self.store.load(key)
        # A state this process did not see published (loaded from the changelog after a restart
        # or a rebalance, or whose records were refused) may have tombstones nobody sent.
        unconfirmed: AccountState | None = None
        resend: list[StateRecord] = []
        if loaded is not None and loaded is not self._published.get(key):
            try:
                resend = unpublished_tombstones(loaded, first.snap.exchange, first.snap.account)
                unconfirmed = loaded
                self._restored_floor(key, loaded)
            except (ValueError, KeyError, TypeError):  # unreadable: reported just below
                pass
        # Snapshots started after a restore are newer than the restored state, whatever the
        # clocks say (connector/state.py "Clocks").
        for write in queued:
            write.snap = replace(write.snap, version=not_before(write.snap.version,
                                                               self._floors.get(key)))  # fmt: skip
        batches = [(resend, first.outcome, first.encoded)]
        counts: list[tuple[int, int]] = []
        state = loaded
        for write in queued:
            try:
                applied = apply_snapshot(state, write.snap)
            except (ValueError, KeyError, TypeError) as exc:  # a stored state we cannot read
                log.error("stored state unreadable (%s); starting afresh", type(exc).__name__,
                          extra=ctx)  # fmt: skip
                applied = apply_snapshot(None, write.snap)
            state = applied.state
            batches.append((applied.records, write.outcome, write.encoded))
            counts.append((len(applied.upserts), len(applied.tombstones)))
        assert state is not None  # at least one snapshot was applied
        with_pending(state, (w.snap.version for w in queued), unconfirmed)
        ids = {**ctx, "request_ids": [w.outcome.request_id for w in queued]}
        if not await self.store.store(key, state):
            # The stored state is unchanged (in memory too), so it is not ahead of the topic:
            # like a FAILED snapshot, this one changes nothing; the next one catches up.
            log.error("state records not published: the table change was refused (INTERNAL)",
                      extra=ids)  # fmt: skip
            return
        refused = await self.outages.until_acked(lambda: self._send(batches))
        if refused is not None:
            log.error("state records refused by the broker (%s)", refusal_name(refused), extra=ids)
            return
        self._published[key] = state
        # Counted as acknowledged (connector_state_records_total) only now.
        for write, (upserts, tombstones) in zip(queued, counts, strict=True):
            write.upserts, write.tombstones = upserts, tombstones

    def _restored_floor(self, key: str, loaded: AccountState) -> None:
        """Remember the newest version time of a state this process restored (not published)."""
        newest = newest_started_at(loaded)
        if newest is not None:
            self._floors[key] = max(newest, self._floors.get(key, newest))

    async def _confirm_restored(self, outcome: Outcome) -> None:
        """A FAILED or EXPIRED outcome changes no state; but when its account's state was
        restored by this process (a command re-run after a crash), the tombstones it names as
        pending may never have been sent. Send them now and store the state without them once
        they are acknowledged, rather than leaving those orders open on the state topic until
        the account's next OK snapshot. Affects the state topic and the stored state (only its
        ``pending``)."""
        if not outcome.exchange or not outcome.account:
            return
        key = table_key(outcome.exchange, outcome.account)
        async with self.lock(key):
            loaded = self.store.load(key)
            if loaded is None or loaded is self._published.get(key) or not loaded.get("pending"):
                return
            try:
                resend = unpublished_tombstones(loaded, outcome.exchange, outcome.account)
                self._restored_floor(key, loaded)
            except (ValueError, KeyError, TypeError):  # unreadable: the next OK snapshot says so
                return
            ids = {"exchange": outcome.exchange, "account": outcome.account,
                   "request_ids": [outcome.request_id]}  # fmt: skip
            refused = await self.outages.until_acked(lambda: self._send([(resend, outcome, {})]))
            if refused is not None:
                log.error("state records refused by the broker (%s)", refusal_name(refused),
                          extra=ids)  # fmt: skip
                return
            confirmed = {**loaded, "pending": []}
            if await self.store.store(key, confirmed):
                self._published[key] = confirmed
            else:
                log.error("state table change refused (pending tombstones were sent)", extra=ids)

    async def _send(
        self, batches: list[tuple[list[StateRecord], Outcome, dict[int, bytes]]]
    ) -> None:
        """Encode state records (inside the retry: encoding may meet a registry outage) and
        send them; each batch carries its command's headers."""
        records: list[Record] = []
        for recs, outcome, encoded in batches:
            ids = {"request_id": outcome.request_id, "exchange": outcome.exchange,
                   "account": outcome.account}  # fmt: skip
            encoded_records = await encode_state_records(
                self.serializer, self.topic, recs, encoded=encoded, **ids
            )
            records += [Record(self.topic, k, v, h) for k, v, h in encoded_records]
        await self.publisher.send(records)
