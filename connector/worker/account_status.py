"""The ``account-status`` topic in the worker: each account's freshness record
(connector/freshness.py) kept, updated and published (docs/contract.md "account-status").

Where the last record lives
---------------------------
Next to the account's state: in the same changelogged Faust table, under the key
``<exchange>:<account>|status`` (:func:`status_key`), its changelog record sent to the account's
own partition (the one routing handles the account on). So the worker that owns an account
recovers its status with its state after a restart or a rebalance and continues from it: no
repeated ``UNKNOWN``, no missed ``STALE``. The record is stored (acknowledged by the changelog)
before it is published, as the state is (docs/state-topic.md): the stored record is never behind
the topic, and a record equal to the stored one but for ``updated_at`` is never published.

Who writes it
-------------
Only the worker that owns the account's partition, so one writer per account:

* :meth:`AccountStatuses.after_command`, called by the agent after a command handled on the
  account's partition has its state records acknowledged (Connector.handle): a reader that sees
  ``FRESH`` with ``as_of`` T already has the open-orders records of the snapshot started at T.
* :meth:`AccountStatuses.tick`, every second (:func:`install_timer`), for the configured
  accounts on its partitions: ``UNKNOWN``/``DISABLED`` for one with no record yet, ``STALE``
  once its bound passed with no newer complete snapshot (connector/freshness.py ``refresh``).

Both take the account's lock, so an attempt and the clock never interleave.

The bound (``stale_after_ms``) of an account with a standing query is
``CONNECTOR_SCHEDULE_STALE_FACTOR`` times its shortest interval (three missed slots); otherwise
``CONNECTOR_ACCOUNT_STALE_AFTER_S``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import metrics
from ..account import Accounts
from ..codec import ACCOUNT_STATUS, Serializer
from ..freshness import (
    DISABLED,
    FAILING,
    FRESH,
    STALE,
    UNKNOWN,
    Attempt,
    StatusRecord,
    apply_attempt,
    attempt_of,
    initial,
    refresh,
)
from ..kafka import partition_for
from ..model import now_ms
from ..pipeline import Outcome
from ..schedules import Schedule
from ..settings import Settings
from ..state import scope_of_query, table_key
from .outages import Outages, refusal_name
from .outcomes import utf8
from .publisher import Publisher, Record

log = logging.getLogger(__name__)

STATUSES = (FRESH, FAILING, STALE, UNKNOWN, DISABLED)
STATUS_SUFFIX = "|status"


def status_key(account_key: str) -> str:
    """The table key of an account's status record (next to its state, ``account_key``)."""
    return account_key + STATUS_SUFFIX


class StatusStore(Protocol):
    """Keeps each account's last status record, by account key (``<exchange>:<account>``)."""

    def load(self, key: str) -> StatusRecord | None:
        """The account's stored record, or None."""
        ...

    async def store(self, key: str, record: StatusRecord) -> bool:
        """Store ``record``; True once durable, False when refused for good (outages are
        waited out)."""
        ...


class TableStatusStore:
    """:class:`StatusStore` over the worker's state table (module docstring). The changelog
    record goes through the publisher to the account's partition, not through
    ``table[key] = value`` (which needs the current event's partition: the timer has none);
    the in-memory table changes once it is acknowledged."""

    def __init__(
        self, table: Any, publisher: Publisher, outages: Outages, changelog: str, partitions: int
    ) -> None:
        self.table = table
        self.publisher = publisher
        self.outages = outages
        self.changelog = changelog
        self.partitions = partitions

    def load(self, key: str) -> StatusRecord | None:
        value = self.table.data.get(status_key(key))
        return dict(value) if isinstance(value, dict) else None

    async def store(self, key: str, record: StatusRecord) -> bool:
        skey = status_key(key)
        rec = Record(
            self.changelog,
            json.dumps(skey).encode(),
            json.dumps(record).encode(),
            [],
            partition_for(utf8(key), self.partitions),
        )
        refused = await self.outages.until_acked(lambda: self.publisher.send([rec]))
        if refused is not None:
            log.error("account status not stored (%s)", refusal_name(refused))
            return False
        self.table.data[skey] = record
        return True


class InMemoryStatusStore:
    """:class:`StatusStore` for tests: ``records`` by account key."""

    def __init__(self, records: dict[str, StatusRecord] | None = None) -> None:
        self.records: dict[str, StatusRecord] = dict(records or {})

    def load(self, key: str) -> StatusRecord | None:
        record = self.records.get(key)
        return None if record is None else dict(record)

    async def store(self, key: str, record: StatusRecord) -> bool:
        self.records[key] = dict(record)
        return True


def stale_bounds(settings: Settings, schedules: Iterable[Schedule]) -> dict[str, int]:
    """``stale_after_ms`` of each account with a standing query (by account key): the factor
    times its shortest interval. Other accounts: ``settings.account_stale_after_ms``."""
    bounds: dict[str, int] = {}
    for s in schedules:
        key = table_key(s.exchange, s.account)
        ms = int(s.interval_s * settings.schedule_stale_factor * 1000)
        bounds[key] = min(bounds.get(key, ms), ms)
    return bounds


@dataclass(eq=False)
class _Attempt:
    """An answered command's attempt waiting for its account's lock (after_command)."""

    attempt: Attempt
    request_id: str
    done: bool = False


class AccountStatuses:
    """The status records of the accounts this worker owns: updated by attempts and by time,
    stored, then published on ``account-status``; and their metrics."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        store: StatusStore,
        publisher: Publisher,
        outages: Outages,
        serializer: Serializer,
        *,
        schedules: Iterable[Schedule] = (),
        disabled: Collection[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.topic = settings.topic_account_status
        self.store = store
        self.publisher = publisher
        self.outages = outages
        self.serializer = serializer
        self.disabled = frozenset(disabled)
        # The configured accounts (metric labels are these aliases only: bounded).
        pairs = [(a.exchange, a.alias) for a in accounts] + list(accounts.switched_off)
        self.accounts = {table_key(ex, alias): (ex, alias) for ex, alias in pairs}
        self.bounds = stale_bounds(settings, schedules)
        # Per account: the lock that serializes its record's updates, and the attempts waiting
        # for it: whoever holds it next applies them all and writes once (a busy account's
        # commands would otherwise queue for two round trips each, as in the state writer).
        self._locks: dict[str, asyncio.Lock] = {}
        self._queues: dict[str, list[_Attempt]] = {}

    def queued(self, key: str) -> int:
        """How many answered commands of the account (table key) wait for its lock."""
        return len(self._queues.get(key, ()))

    def stale_after_ms(self, key: str) -> int:
        return self.bounds.get(key, self.settings.account_stale_after_ms)

    def partition(self, key: str) -> int:
        """The account's partition (where routing handles it; its status is stored there)."""
        return partition_for(utf8(key), self.settings.topic_partitions)

    async def after_command(self, outcome: Outcome) -> None:
        """Called by the agent (Connector.handle) once a command handled on its account's
        partition has its outputs and state records acknowledged: the attempt it describes
        applied to the account's record; a change is stored, then published."""
        if outcome.result is None:
            return
        error = outcome.error.value if outcome.error is not None else None
        scope = scope_of_query(outcome.query) if outcome.query is not None else None
        attempt = attempt_of(outcome.result.value, error, scope)
        key = table_key(outcome.exchange, outcome.account)
        if attempt is None or key not in self.accounts:
            return
        mine = _Attempt(attempt, outcome.request_id)
        self._queues.setdefault(key, []).append(mine)
        async with self._lock(key):
            if mine.done:  # applied and written by the holder before this command
                return
            queued = self._queues.pop(key)
            try:
                await self._apply(key, queued)
            except BaseException:  # cancelled: the others go back, for the next holder
                rest = [a for a in queued if a is not mine]
                self._queues[key] = rest + self._queues.get(key, [])
                raise
            for a in queued:
                a.done = True

    async def _apply(self, key: str, queued: list[_Attempt]) -> None:
        """Apply the queued attempts of one account in turn; store and publish the result once
        (with the request id of the last attempt that changed it)."""
        exchange, alias = self.accounts[key]
        record, changed, request_id = self.store.load(key), None, None
        for a in queued:
            new = apply_attempt(
                record,
                exchange,
                alias,
                a.attempt,
                now_ms=now_ms(),
                stale_after_ms=self.stale_after_ms(key),
                disabled=exchange in self.disabled,
            )
            if new is not None:
                record, changed, request_id = new, new, a.request_id
        if changed is not None:
            await self._write(key, changed, request_id)

    async def tick(self, owned: Collection[int], now: int | None = None) -> None:
        """Called every second by the timer with the partitions this worker owns: each
        configured account there gets its first record (``UNKNOWN``/``DISABLED``) or turns
        ``STALE`` when due; then the metrics are set. Affects the table, the topic, metrics."""
        counts = {(ex, st): 0 for ex, _ in self.accounts.values() for st in STATUSES}
        for key, (exchange, alias) in self.accounts.items():
            if self.partition(key) not in owned:
                _forget_age(exchange, alias)
                continue
            async with self._lock(key):
                t = now_ms() if now is None else now
                previous = self.store.load(key)
                disabled = exchange in self.disabled
                bound = self.stale_after_ms(key)
                new = (
                    initial(exchange, alias, stale_after_ms=bound, now_ms=t, disabled=disabled)
                    if previous is None
                    else refresh(previous, now_ms=t, stale_after_ms=bound, disabled=disabled)
                )
                if new is not None and await self._write(key, new, None):
                    previous = new
            if previous is None:
                continue
            counts[(exchange, str(previous["status"]))] += 1
            as_of = previous.get("as_of")
            if as_of is None:
                _forget_age(exchange, alias)
            else:
                metrics.ACCOUNT_AS_OF_AGE.labels(exchange, alias).set(max(0, t - as_of) / 1000)
        for (exchange, status), n in counts.items():
            metrics.ACCOUNTS_BY_STATUS.labels(exchange, status).set(n)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _write(self, key: str, record: StatusRecord, request_id: str | None) -> bool:
        """Store, then publish (waiting out outages); True once published. ``request_id``: the
        command that caused the change; for a change by time alone, the account's last
        snapshot (``as_of_request_id``), if any."""
        if not await self.store.store(key, record):
            return False
        rid = request_id or record.get("as_of_request_id")
        headers = [("request_id", rid)] if rid else []
        headers += [("exchange", record["exchange"]), ("account", record["account"]),
                    ("schema", ACCOUNT_STATUS)]  # fmt: skip

        async def send() -> None:
            value = await self.serializer.encode(self.topic, ACCOUNT_STATUS, record)
            encoded = [(k, utf8(v)) for k, v in headers]
            await self.publisher.send([Record(self.topic, utf8(key), value, encoded)])

        refused = await self.outages.until_acked(send)
        ids = {"exchange": record["exchange"], "account": record["account"]}
        if refused is not None:
            log.error("account status refused by the broker (%s)", refusal_name(refused),
                      extra=ids)  # fmt: skip
            return False
        log.info("account status %s", record["status"],
                 extra={**ids, **({"request_id": rid} if rid else {})})  # fmt: skip
        return True


def _forget_age(exchange: str, alias: str) -> None:
    try:
        metrics.ACCOUNT_AS_OF_AGE.remove(exchange, alias)
    except KeyError:
        pass


def install_timer(app: Any, statuses: AccountStatuses, settings: Settings, idle: Any) -> None:
    """Run :meth:`AccountStatuses.tick` every second on every worker, for the partitions of the
    by-account topic assigned to it, once its tables are recovered (the stored records are
    those of its partitions only then). ``idle()``: True while draining for shutdown."""

    async def timer(*args: Any) -> None:
        if idle() or app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        topic = settings.commands_by_account_topic
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
        try:
            await statuses.tick(owned)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next tick tries again
            log.warning("account status: tick failed (%s)", type(exc).__name__)

    app.timer(interval=1.0, name="account-status")(timer)
