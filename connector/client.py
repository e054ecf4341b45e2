"""``connector query`` and ``connector tail``: publish a command, read the outputs."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .codec import (
    ERROR_EVENT,
    ORDER_EVENT,
    QUERY_ORDERS,
    QUERY_RESULT,
    DecodeError,
    RegistryUnavailable,
    Serializer,
    serializer_for,
    to_plain,
)
from .kafka import client_kwargs, consumer_kwargs
from .settings import Settings


@dataclass
class Decoded:
    topic: str
    key: str | None
    headers: dict[str, str]
    schema: str | None
    value: Any

    def to_json(self) -> str:
        return json.dumps(
            {"topic": self.topic, "key": self.key, "schema": self.schema, "value": self.value},
            sort_keys=False,
        )


async def decode_message(msg: Any, serializer: Serializer) -> Decoded:
    headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers or [])}
    key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
    if msg.value is None:  # a tombstone (compacted state topic): no value, no schema
        return Decoded(msg.topic, key, headers, None, None)
    try:
        schema, record = await serializer.decode(msg.value or b"")
        value: Any = to_plain(record)
    except (DecodeError, RegistryUnavailable) as exc:
        schema, value = None, {"undecodable": str(exc), "bytes": len(msg.value or b"")}
    return Decoded(msg.topic, key, headers, schema, value)


def build_command(
    *,
    exchange: str,
    account: str,
    request_id: str | None = None,
    symbol: str | None = None,
    product_type: str | None = None,
    trader_id: str | None = None,
    deadline_ms: int | None = None,
    requested_at: int | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id or str(uuid.uuid4()),
        "exchange": exchange,
        "account": account,
        "symbol": symbol,
        "product_type": product_type,
        "trader_id": trader_id,
        "requested_at": requested_at,
        "deadline_ms": deadline_ms,
    }


async def query(
    settings: Settings,
    command: dict[str, Any],
    *,
    wait: bool,
    timeout: float,
    avro: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Publish one command; with ``wait``, print its outputs and return 0 (OK) / 1 (FAILED).

    Returns 2 if no result arrived within ``timeout``.
    """
    serializer = serializer_for(settings)
    consumer = None
    try:
        if wait:
            consumer = await _consumer_at_end(
                settings, [settings.topic_orders, settings.topic_results, settings.topic_errors]
            )
        if avro:
            value = await serializer.encode(settings.topic_query_orders, QUERY_ORDERS, command)
        else:
            value = json.dumps({k: v for k, v in command.items() if v is not None}).encode()
        producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
        await producer.start()
        try:
            key = f"{command['exchange']}:{command['account']}".lower().encode()
            await producer.send_and_wait(settings.topic_query_orders, value, key=key)
        finally:
            await producer.stop()
        if consumer is None:
            print(json.dumps({"published": command["request_id"]}), file=out, flush=True)
            return 0
        return await _await_result(consumer, serializer, command["request_id"], timeout, out)
    finally:
        if consumer is not None:
            await consumer.stop()
        await serializer.aclose()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, refreshing metadata once if the consumer has not seen it yet;
    empty if the topic does not exist."""
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


async def _consumer_at_end(settings: Settings, topics: list[str]) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition of ``topics``.

    Filtering by request_id makes an early position harmless (it only re-reads older records),
    which matters on the embedded broker, whose end offsets can lag after batched produces.
    """
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    tps: list[TopicPartition] = []
    for topic in topics:
        tps += await topic_partitions(consumer, topic)
    consumer.assign(tps)
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, offset)
    return consumer


async def _await_result(
    consumer: AIOKafkaConsumer, serializer: Serializer, request_id: str, timeout: float, out: TextIO
) -> int:
    """Collect the command's records until its QueryResult *and* everything it counts are in,
    then print them in contract order: OrderEvents by ``snapshot_seq``, ErrorEvent, QueryResult.

    The result is published after the order events are acknowledged, but they live on other
    partitions, so a reader may fetch the result first: completeness is judged by the result's
    ``order_count`` (and, for FAILED, its one ErrorEvent), never by arrival order.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    result: dict[str, Any] | None = None
    collected: list[Decoded] = []
    orders = errors = 0
    while loop.time() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for msg in records:
                headers = dict(msg.headers or [])
                if headers.get("request_id", b"").decode() != request_id:
                    continue
                decoded = await decode_message(msg, serializer)
                collected.append(decoded)
                if decoded.schema == QUERY_RESULT:
                    result = decoded.value
                elif decoded.schema == ORDER_EVENT:
                    orders += 1
                elif decoded.schema == ERROR_EVENT:
                    errors += 1
        if result is not None:
            ok = result.get("status") == "OK"
            if orders >= result.get("order_count", 0) and (ok or errors >= 1):
                for decoded in sorted(collected, key=_contract_order):
                    print(decoded.to_json(), file=out, flush=True)
                return 0 if ok else 1
    for decoded in sorted(collected, key=_contract_order):  # what did arrive, for diagnosis
        print(decoded.to_json(), file=out, flush=True)
    print(json.dumps({"error": f"no result for {request_id} within {timeout}s"}), file=sys.stderr)
    return 2


def _contract_order(d: Decoded) -> tuple[int, int]:
    rank = {ORDER_EVENT: 0, ERROR_EVENT: 1, QUERY_RESULT: 2}.get(d.schema or "", 3)
    seq = d.value.get("snapshot_seq", 0) if isinstance(d.value, dict) else 0
    return rank, int(seq or 0)


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    out: TextIO = sys.stdout,
) -> int:
    """Decode and print a topic as JSON lines."""
    serializer = serializer_for(settings)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            print(f"topic {topic!r} does not exist", file=sys.stderr)
            return 1
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp, offset in (await consumer.end_offsets(tps)).items():
                consumer.seek(tp, offset)
        seen = 0
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for msg in records:
                    print((await decode_message(msg, serializer)).to_json(), file=out, flush=True)
                    seen += 1
                    last = loop.time()
                    if max_messages is not None and seen >= max_messages:
                        return 0
            if idle_timeout is not None and loop.time() - last > idle_timeout:
                return 0
    finally:
        await consumer.stop()
        await serializer.aclose()
