"""The compacted ``open-orders`` state topic from the outside: creating it, reading it as a table.

:mod:`connector.state` decides which upserts and tombstones to publish; this module is what
``connector broker`` and ``connector state`` need around it:

* :func:`ensure_state_topic` creates the topic with ``cleanup.policy=compact`` (Kafka keeps the
  last record per key, and drops a key after its tombstone once ``delete.retention.ms`` passed).
  The embedded broker (Tansu 0.6) accepts the config and reports it back from DescribeConfigs,
  but does not compact its in-memory log: a reader sees every record ever written. Readers must
  fold anyway (compaction never touches the log's active segment, on any broker), so the
  result is the same; only the amount read differs.
* :func:`read_state` folds the topic, from the beginning to the end offsets taken when it
  started, into the current table of one account (last value per key, tombstones delete).
  The embedded broker can report end offsets that are too low after a produce batch of several
  records (DESIGN.md), so reaching them is confirmed by one more fetch that returns nothing;
  and ``idle_timeout`` ends the read if the end offsets are never reached.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from .client import OutputClosed, decode_message, topic_partitions
from .codec import ORDER_EVENT, Serializer, serializer_for
from .kafka import consumer_kwargs, create_missing_topics
from .settings import Settings
from .state import StateRecord
from .topicplan import worker_topics

STATE_TOPIC_CONFIG = {"cleanup.policy": "compact"}


def state_topic(settings: Settings) -> NewTopic:
    """The state topic as created: compacted, with the command topic's partition count."""
    return NewTopic(
        settings.topic_state,
        settings.topic_partitions,
        settings.topic_replication_factor,
        topic_configs=STATE_TOPIC_CONFIG,
    )


async def ensure_state_topic(settings: Settings) -> bool:
    """Create the state topic, compacted, if missing; True if this call created it."""
    return bool(await create_missing_topics(settings, [state_topic(settings)]))


def internal_topics(settings: Settings) -> list[NewTopic]:
    """The worker's internal topics as planned (:func:`connector.topicplan.topic_plan`): the
    commands repartitioned by account and the state table's changelog (compacted) have as many
    partitions as the command topic, so partition p of each lands on the same worker; the
    standing queries' progress (compacted) and Faust's leader election topic have one."""
    rf = settings.topic_replication_factor
    return [t.new_topic(rf) for t in worker_topics(settings) if t.name != settings.topic_state]


async def ensure_internal_topics(settings: Settings) -> list[str]:
    """Create the state topic and the worker's internal topics if missing; returns the created.

    Called by ``connector broker`` and by the worker at start (as Kafka Streams does for its
    internal topics) unless ``CONNECTOR_CREATE_TOPICS=false``; on a cluster where the worker may
    not create topics, create them beforehand (``connector topics --create``, or the names and
    configs of docs/operations.md "Topics").
    """
    rf = settings.topic_replication_factor
    return await create_missing_topics(settings, [t.new_topic(rf) for t in worker_topics(settings)])


async def encode_state_records(
    serializer: Serializer,
    topic: str,
    records: Iterable[StateRecord],
    *,
    request_id: str,
    exchange: str,
    account: str,
    encoded: Mapping[int, bytes] | None = None,
) -> list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]]:
    """Key, value (None for a tombstone) and headers of each state-topic record of one
    snapshot, as published: the one encoder of state records (the worker's state writer and
    the tests use it).

    Headers are those of every output record (``request_id`` of the snapshot that caused it,
    ``exchange``, ``account``), and ``schema`` on upserts only: a tombstone has no value. An
    upsert's value is taken from ``encoded`` (by id of the value: the same OrderEvent already
    encoded for the orders topic) when there, else encoded here.
    """  # fmt: skip
    headers = state_headers(request_id, exchange, account)
    out: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []
    for rec in records:
        value = None
        if rec.value is not None:
            value = encoded.get(id(rec.value)) if encoded is not None else None
            if value is None:
                value = await serializer.encode(topic, ORDER_EVENT, dict(rec.value))
        key = rec.key.encode("utf-8", "backslashreplace")
        out.append((key, value, headers[value is not None]))
    return out


async def encode_state_record(
    serializer: Serializer,
    topic: str,
    rec: StateRecord,
    *,
    request_id: str,
    exchange: str,
    account: str,
) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """One record through :func:`encode_state_records`."""
    records = await encode_state_records(
        serializer, topic, [rec], request_id=request_id, exchange=exchange, account=account
    )
    return records[0]


def state_headers(
    request_id: str, exchange: str, account: str
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """The encoded headers of a snapshot's state records: (for tombstones, for upserts)."""
    common = [("request_id", request_id), ("exchange", exchange), ("account", account)]
    tombstone = [(k, v.encode()) for k, v in common]
    return tombstone, [*tombstone, ("schema", ORDER_EVENT.encode())]


@dataclass
class StateTable:
    """One account's open orders as the state topic says: record key -> OrderEvent (plain)."""

    exchange: str
    account: str
    orders: dict[str, dict[str, Any]]
    records_read: int = 0
    tombstones_read: int = 0


async def read_state(
    settings: Settings,
    exchange: str,
    account: str,
    *,
    symbol: str | None = None,
    idle_timeout: float = 5.0,
) -> StateTable | None:
    """Fold the state topic into ``exchange``/``account``'s current open orders.

    Returns None if the topic does not exist. Only keys ``<exchange>:<account>:...`` whose value
    names that account are kept (an alias may itself contain ``:``).
    """
    exchange = exchange.lower()
    prefix = f"{exchange}:{account}:".encode()
    serializer = serializer_for(settings)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic_state)
        if not tps:
            return None
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        table = StateTable(exchange, account, {})
        latest: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        last_data = loop.time()
        # Longer than one broker long-poll, so an empty answer means "nothing more", not "wait".
        poll_ms = settings.kafka_fetch_max_wait_ms + 200
        while True:
            batches = await consumer.getmany(timeout_ms=poll_ms)
            got = False
            for records in batches.values():
                for msg in records:
                    got = True
                    if msg.key is None or not msg.key.startswith(prefix):
                        continue
                    table.records_read += 1
                    key = msg.key.decode("utf-8", "replace")
                    if msg.value is None:
                        table.tombstones_read += 1
                        latest.pop(key, None)
                    else:
                        latest[key] = msg
            if got:
                last_data = loop.time()
                continue
            at_end = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            if at_end or loop.time() - last_data > idle_timeout:
                break
        for key in sorted(latest):
            decoded = await decode_message(latest[key], serializer)
            value = decoded.value
            if decoded.schema != ORDER_EVENT or not isinstance(value, dict):
                table.orders[key] = {"undecodable": value}
                continue
            if value.get("account") != account or str(value.get("exchange")).lower() != exchange:
                continue
            if symbol is not None and value.get("symbol") != symbol:
                continue
            table.orders[key] = value
        return table
    finally:
        await consumer.stop()
        await serializer.aclose()


def print_state(table: StateTable, fmt: str, out: TextIO = sys.stdout) -> None:
    """``jsonl``: one ``{"key", "value"}`` line per open order; ``summary``: counts and one line
    per order."""
    if fmt == "jsonl":
        for key, value in table.orders.items():
            print(json.dumps({"key": key, "value": value}), file=out)
        return
    orders = list(table.orders.values())
    print(
        f"{table.exchange}:{table.account}: {len(orders)} open orders "
        f"({table.records_read} records read, {table.tombstones_read} tombstones)",
        file=out,
    )
    by_symbol = Counter(str(o.get("symbol")) for o in orders)
    for sym, n in sorted(by_symbol.items()):
        print(f"  {sym}: {n}", file=out)
    for o in orders:
        fields = ("order_id", "symbol", "side", "order_type", "status", "price", "quantity")
        print("  " + " ".join("-" if o.get(f) is None else str(o.get(f)) for f in fields), file=out)


async def state_command(
    settings: Settings,
    exchange: str,
    account: str,
    *,
    symbol: str | None,
    fmt: str,
    idle_timeout: float,
    out: TextIO = sys.stdout,
) -> int:
    """``connector state``: 0 when printed, 1 when the topic does not exist."""
    table = await read_state(settings, exchange, account, symbol=symbol, idle_timeout=idle_timeout)
    if table is None:
        print(f"topic {settings.topic_state!r} does not exist", file=sys.stderr)
        return 1
    try:
        print_state(table, fmt, out)
        out.flush()
    except BrokenPipeError:  # ``| head``: the reader has what it wanted
        raise OutputClosed from None
    return 0
