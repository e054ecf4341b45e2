"""``connector query`` and ``connector tail``: publish a command, read the outputs.

Both check first that the broker is listening (:class:`BrokerUnreachable`, one line naming
``CONNECTOR_KAFKA_BOOTSTRAP``), so a missing broker is one clear line rather than a traceback.
``tail`` decodes Avro (single-object or Confluent framing) and JSON (hand-written commands), and
shows each record's partition, offset, timestamp and headers.

Output goes through :func:`emit`: a reader that stops reading (``connector tail orders | head -1``)
is not a failure of the command, so a closed stdout becomes :class:`OutputClosed`, which the
command line turns into a quiet exit 0, as Unix tools do, instead of a "broker" error.
"""

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
from .kafka import client_kwargs, consumer_kwargs, wait_for_broker
from .logs import iso_utc
from .settings import Settings

#: The schema name ``tail`` shows for a JSON (not Avro) record, e.g. a hand-written command.
JSON_SCHEMA = "json"
#: How long ``query``/``tail``/``state`` wait for the broker's port before giving up.
CONNECT_TIMEOUT_S = 10.0


class BrokerUnreachable(Exception):
    """The broker did not answer within the connect timeout (one line, no traceback)."""


class OutputClosed(Exception):
    """Whoever read our output closed it (``| head``): stop quietly, nothing failed."""


def emit(line: str, out: TextIO) -> None:
    """Print one line and flush it, so a reader sees each record as it comes; a closed output
    (EPIPE) is :class:`OutputClosed`, told apart from a broker connection's broken pipe."""
    try:
        print(line, file=out, flush=True)
    except BrokenPipeError:
        raise OutputClosed from None


async def require_broker(settings: Settings, timeout: float = CONNECT_TIMEOUT_S) -> None:
    try:
        await wait_for_broker(settings, timeout=timeout)
    except TimeoutError:
        raise BrokerUnreachable(
            f"CONNECTOR_KAFKA_BOOTSTRAP: no broker answering at {settings.kafka_bootstrap} "
            f"within {timeout:g}s"
        ) from None


@dataclass
class Decoded:
    topic: str
    key: str | None
    headers: dict[str, str]
    schema: str | None
    value: Any
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None

    def to_json(self) -> str:
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": iso_utc(self.timestamp_ms / 1000) if self.timestamp_ms else None,
            "key": self.key,
            "headers": self.headers,
            "schema": self.schema,
            "value": self.value,
        }
        return json.dumps(out, sort_keys=False)


async def decode_message(msg: Any, serializer: Serializer) -> Decoded:
    headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers or [])}
    key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
    schema: str | None = None
    value: Any = None
    if msg.value is not None:  # None: a tombstone (compacted state topic), no schema
        try:
            schema, record = await serializer.decode(msg.value or b"")
            value = to_plain(record)
        except (DecodeError, RegistryUnavailable) as exc:
            schema, value = _decode_json(msg.value or b"", exc)
    return Decoded(
        msg.topic,
        key,
        headers,
        schema,
        value,
        partition=getattr(msg, "partition", None),
        offset=getattr(msg, "offset", None),
        timestamp_ms=getattr(msg, "timestamp", None),
    )


def _decode_json(data: bytes, exc: Exception) -> tuple[str | None, Any]:
    """A JSON record (commands may be JSON), else a note saying why it is undecodable."""
    if data[:1] in (b"{", b"["):
        try:
            return JSON_SCHEMA, json.loads(data)
        except ValueError:
            pass
    return None, {"undecodable": str(exc), "bytes": len(data)}


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
    fmt: str = "jsonl",
    connect_timeout: float = CONNECT_TIMEOUT_S,
    out: TextIO = sys.stdout,
) -> int:
    """Publish one command; with ``wait``, print its outputs and return 0 (OK) / 1 (FAILED).

    Returns 2 if no result arrived within ``timeout``.
    """
    await require_broker(settings, connect_timeout)
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
        try:
            await producer.start()
            key = f"{command['exchange']}:{command['account']}".lower().encode()
            await producer.send_and_wait(settings.topic_query_orders, value, key=key)
        finally:
            await producer.stop()
        if consumer is None:
            emit(json.dumps({"published": command["request_id"]}), out)
            return 0
        return await _await_result(consumer, serializer, command["request_id"], timeout, out, fmt)
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
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    tps: list[TopicPartition] = []
    for topic in topics:
        tps += await topic_partitions(consumer, topic)
    consumer.assign(tps)
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, offset)
    return consumer


async def _await_result(
    consumer: AIOKafkaConsumer,
    serializer: Serializer,
    request_id: str,
    timeout: float,
    out: TextIO,
    fmt: str = "jsonl",
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
                    emit(render(decoded, fmt), out)
                return 0 if ok else 1
    for decoded in sorted(collected, key=_contract_order):  # what did arrive, for diagnosis
        emit(render(decoded, fmt), out)
    print(json.dumps({"error": f"no result for {request_id} within {timeout}s"}), file=sys.stderr)
    return 2


def render(decoded: Decoded, fmt: str) -> str:
    """One record as a JSON line (``jsonl``) or as the readable line ``summary`` prints."""
    return decoded.to_json() if fmt == "jsonl" else summary_line(decoded)


#: The OrderEvent booleans ``summary`` lists after ``flags=`` when true (docs/contract.md).
ORDER_FLAGS = ("reduce_only", "post_only", "liquidation")


def _text(value: Any) -> str:
    """A field as the summary shows it: ``-`` for an absent value, never ``None``."""
    return "-" if value is None or value == "" else str(value)


def _identity(d: Decoded, v: dict[str, Any]) -> str:
    """``exchange:account req=<request_id>``, from the record or, failing that, its headers."""

    def field(name: str) -> str:
        value = v.get(name)
        return _text(value if value not in (None, "") else d.headers.get(name))

    return f"{field('exchange')}:{field('account')} req={field('request_id')}"


def summary_line(d: Decoded) -> str:
    """The fields a risk engineer looks at first, on one line: record kind, then
    ``exchange:account req=<request_id>`` on every line (so lines from several commands can be
    told apart in ``tail``), then the record's own fields; ``-`` marks an absent value."""
    v = d.value if isinstance(d.value, dict) else {}
    who = _identity(d, v)
    if d.schema == ORDER_EVENT:
        flags = ",".join(name for name in ORDER_FLAGS if v.get(name)) or "-"
        return (
            f"OrderEvent  {who} {_text(v.get('snapshot_seq'))}/{_text(v.get('snapshot_size'))} "
            f"{_text(v.get('symbol')):<9} ({_text(v.get('unified_symbol'))}) "
            f"{_text(v.get('side'))} {_text(v.get('position_side'))} {_text(v.get('order_type'))} "
            f"{_text(v.get('status'))} price={_text(v.get('price'))} "
            f"qty={_text(v.get('quantity'))} filled={_text(v.get('filled_quantity'))} "
            f"flags={flags} order_id={_text(v.get('order_id'))}"
        )
    if d.schema == QUERY_RESULT:
        took = (v.get("completed_at") or 0) - (v.get("started_at") or 0)
        return (
            f"QueryResult {who} {_text(v.get('status'))} order_count={_text(v.get('order_count'))} "
            f"error_code={_text(v.get('error_code'))} "
            f"exchange_calls={_text(v.get('exchange_calls'))} took={took}ms"
        )
    if d.schema == ERROR_EVENT:
        return (
            f"ErrorEvent  {who} {_text(v.get('code'))} "
            f"exchange_code={_text(v.get('exchange_code'))}: {_text(v.get('message'))}"
        )
    if d.schema in (QUERY_ORDERS, JSON_SCHEMA) and "request_id" in v:
        options = " ".join(
            f"{name}={_text(v.get(name))}"
            for name in ("symbol", "product_type", "trader_id", "requested_at", "deadline_ms")
        )
        return f"QueryOrders {who} {options}"
    where = f"{d.topic}[{d.partition}]@{d.offset}"
    return f"{d.schema or 'record'} {who} {where} key={_text(d.key)} {json.dumps(d.value)}"


def _contract_order(d: Decoded) -> tuple[int, int]:
    rank = {ORDER_EVENT: 0, ERROR_EVENT: 1, QUERY_RESULT: 2}.get(d.schema or "", 3)
    seq = d.value.get("snapshot_seq", 0) if isinstance(d.value, dict) else 0
    return rank, int(seq or 0)


def resolve_topic(settings: Settings, topic: str) -> str:
    """A role (``orders``, ``results``, ``errors``, ``commands``, ``state``) or a topic name."""
    return settings.topic_for(topic) if topic in TAIL_ROLES else topic


TAIL_ROLES = ("orders", "results", "errors", "commands", "state")


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    request_id: str | None = None,
    fmt: str = "jsonl",
    connect_timeout: float = CONNECT_TIMEOUT_S,
    out: TextIO = sys.stdout,
) -> int:
    """Decode and print a topic (or a role's topic) as JSON lines, optionally only the records
    of one ``request_id`` (its header, or the field of a JSON/Avro command)."""
    await require_broker(settings, connect_timeout)
    topic = resolve_topic(settings, topic)
    serializer = serializer_for(settings)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        tps = await topic_partitions(consumer, topic)
        if not tps:
            print(f"connector tail: topic {topic!r} does not exist", file=sys.stderr)
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
                    last = loop.time()
                    decoded = await decode_message(msg, serializer)
                    if request_id is not None and _request_id(decoded) != request_id:
                        continue
                    emit(render(decoded, fmt), out)
                    seen += 1
                    if max_messages is not None and seen >= max_messages:
                        return 0
            if idle_timeout is not None and loop.time() - last > idle_timeout:
                return 0
    finally:
        await consumer.stop()
        await serializer.aclose()


def _request_id(d: Decoded) -> str | None:
    if "request_id" in d.headers:
        return d.headers["request_id"]
    value = d.value.get("request_id") if isinstance(d.value, dict) else None
    return value if isinstance(value, str) else None
