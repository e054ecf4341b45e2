"""The ``account-status`` topic from the outside: one account's last status record, and the
line ``connector state`` prints above the account's orders (so whoever reads the orders sees at
once whether they can be trusted: docs/consuming.md "Is my view fresh?").

The topic is compacted and keyed ``<exchange>:<account>``, and the worker partitions it with
Kafka's default rule (murmur2), so only the key's partition is read, from its beginning to the
end offset taken when reading started; the last record of the key is the account's status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from .client import decode_message, topic_partitions
from .codec import ACCOUNT_STATUS, serializer_for
from .kafka import consumer_kwargs, partition_for
from .settings import Settings


async def read_account_status(
    settings: Settings, exchange: str, account: str, *, idle_timeout: float = 5.0
) -> dict[str, Any] | None:
    """The account's last AccountStatus record; None when there is none (or no topic)."""
    key = f"{exchange.lower()}:{account}".encode()
    serializer = serializer_for(settings)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic_account_status)
        if not tps:
            return None
        tp = tps[partition_for(key, len(tps))]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: Any = None
        loop = asyncio.get_running_loop()
        last_data = loop.time()
        poll_ms = settings.kafka_fetch_max_wait_ms + 200
        while await consumer.position(tp) < end and loop.time() - last_data < idle_timeout:
            for records in (await consumer.getmany(tp, timeout_ms=poll_ms)).values():
                for msg in records:
                    last_data = loop.time()
                    if msg.key == key:
                        latest = msg
        if latest is None or latest.value is None:
            return None
        decoded = await decode_message(latest, serializer)
        if decoded.schema != ACCOUNT_STATUS or not isinstance(decoded.value, dict):
            return None
        value: dict[str, Any] = decoded.value
        return value
    finally:
        await consumer.stop()
        await serializer.aclose()


def status_line(record: dict[str, Any] | None, now_ms: int | None = None) -> str:
    """One line: status, as of when (and how long ago), failures and the last error."""
    if record is None:
        return "status: none yet (no account-status record)"
    parts = [f"status: {record['status']}"]
    as_of = record.get("as_of")
    if as_of is None:
        parts.append("no complete snapshot yet")
    else:
        when = datetime.fromtimestamp(as_of / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        parts.append(f"as of {when}Z ({record.get('open_orders')} open orders, "
                     f"{record.get('as_of_request_id')})")  # fmt: skip
        if now_ms is not None:
            parts[-1] += f", {max(0, now_ms - as_of) / 1000:.1f}s ago"
    if record.get("consecutive_failures"):
        code, message = record.get("last_error_code"), record.get("last_error_message")
        parts.append(f"{record['consecutive_failures']} failed attempts, last {code}: {message}")
    parts.append(f"stale after {record['stale_after_ms'] / 1000:g}s")
    return "; ".join(parts)
