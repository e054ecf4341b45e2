"""AscendEX end to end: command on the broker -> worker -> sandbox exchange -> Avro events."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from connector import codec

from .harness import LARGE_ACCOUNT, Commands, Outputs, Worker, rid

pytestmark = pytest.mark.integration

DEMO = {"exchange": "ascendex", "account": "ascendex-demo"}
AVRO_DIR = Path(__file__).resolve().parents[2] / "avro"


async def test_open_orders_become_a_complete_snapshot(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(request_id=rid("asc-demo"), **DEMO)
    answer = await outputs.answer(request_id)
    result = answer.result
    orders = answer.orders
    assert result["status"] == "OK"
    assert result["order_count"] == len(orders) > 0
    assert result["exchange_calls"] >= 1
    assert sorted(o.value["snapshot_seq"] for o in orders) == list(range(1, len(orders) + 1))
    assert {o.value["snapshot_size"] for o in orders} == {len(orders)}
    assert answer.errors == []
    # Keys, headers and schema as in docs/contract.md.
    for o in orders:
        v = o.value
        assert o.key == f"ascendex:ascendex-demo:{v['order_id']}"
        assert o.headers == {
            "request_id": request_id, "exchange": "ascendex", "account": "ascendex-demo",
            "schema": codec.ORDER_EVENT,
        }  # fmt: skip
        assert v["exchange"] == "ascendex" and v["request_id"] == request_id
        assert v["raw"] and json.loads(v["raw"])["orderId"] == v["order_id"]
        assert v["observed_at"] >= result["started_at"]
    assert answer.results[0].key == "ascendex:ascendex-demo"
    # Each key on the partition aiokafka's default partitioner (Kafka's murmur2 rule) picks.
    for m in [*orders, *answer.results]:
        all_partitions = list(range(outputs.partition_count(m.topic)))
        assert m.key is not None and len(all_partitions) > 1
        expected = DefaultPartitioner()(m.key.encode(), all_partitions, all_partitions)
        assert m.partition == expected, m.key
    # The result is published only after every order event was acknowledged.
    assert answer.timestamp(answer.results[0]) >= max(answer.timestamp(o) for o in orders)
    statuses = {o.value["status"] for o in orders}
    assert {"ACK", "PENDING_NEW"} <= statuses
    assert {o.value["unified_symbol"] for o in orders if o.value["symbol"] == "BTC-PERP"} == {
        "BTC/USDT:USDT"
    }


async def test_large_snapshot_published_as_record_batches_is_complete_and_in_order(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    """100 orders: about 25 per partition, so they go as aiokafka record batches (see
    KafkaPublisher.send in connector/worker/publisher.py). Same keys, partitions, headers and
    per-partition order as one send per record, and the result only after every event was
    acknowledged."""
    account = LARGE_ACCOUNT
    request_id = await commands.send(
        request_id=rid("asc-big"), exchange="ascendex", account=account
    )
    answer = await outputs.answer(request_id)
    orders = answer.orders
    assert answer.result["status"] == "OK"
    assert answer.result["order_count"] == len(orders) == 100
    assert sorted(o.value["snapshot_seq"] for o in orders) == list(range(1, 101))
    per_partition: dict[int, list[Any]] = {}
    for o in orders:
        assert o.key == f"ascendex:{account}:{o.value['order_id']}"
        assert o.headers == {"request_id": request_id, "exchange": "ascendex", "account": account,
                             "schema": codec.ORDER_EVENT}  # fmt: skip
        all_partitions = list(range(outputs.partition_count(o.topic)))
        expected = DefaultPartitioner()(o.key.encode(), all_partitions, all_partitions)
        assert o.partition == expected
        per_partition.setdefault(o.partition, []).append(o)
    assert len(per_partition) > 1
    for events in per_partition.values():
        # Within a partition, offsets follow snapshot order (the order the pipeline built them).
        by_offset = sorted(events, key=lambda o: o.offset)
        assert [o.value["snapshot_seq"] for o in by_offset] == sorted(
            o.value["snapshot_seq"] for o in events
        )
    assert answer.timestamp(answer.results[0]) >= max(answer.timestamp(o) for o in orders)


async def test_symbol_filter(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    request_id = await commands.send(request_id=rid("asc-sym"), symbol="ETH-PERP", **DEMO)
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "OK"
    assert answer.result["symbol"] == "ETH-PERP"
    assert answer.orders and {o.value["symbol"] for o in answer.orders} == {"ETH-PERP"}


async def test_account_without_orders_gives_ok_with_zero(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(
        request_id=rid("asc-empty"), exchange="ascendex", account="ascendex-empty"
    )
    answer = await outputs.answer(request_id)
    assert (answer.result["status"], answer.result["order_count"]) == ("OK", 0)
    assert answer.orders == [] and answer.errors == []


async def test_avro_command(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    request_id = rid("asc-avro")
    record = {"request_id": request_id, "exchange": "ASCENDEX", "account": "ascendex-empty",
              "symbol": None, "product_type": None, "trader_id": None, "requested_at": 1700000000000,
              "deadline_ms": None}  # fmt: skip
    await commands.send_raw(codec.encode_single_object(codec.QUERY_ORDERS, record))
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "OK"
    assert answer.result["requested_at"] == 1700000000000


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b'{"request_id": "x", "exchange": "ascendex", ', "INVALID_COMMAND"),
        (os.urandom(64), "INVALID_COMMAND"),
        (b"\xc3\x01" + os.urandom(30), "INVALID_COMMAND"),
    ],
    ids=["malformed-json", "random-bytes", "corrupt-avro"],
)
async def test_unreadable_commands_fail_and_the_worker_keeps_serving(
    worker: Worker, commands: Commands, outputs: Outputs, value: bytes, code: str
) -> None:
    await commands.send_raw(value)

    def answered(msgs: list) -> bool:  # type: ignore[type-arg]
        return any(
            m.schema == codec.ERROR_EVENT and m.value.get("command") == _text(value) for m in msgs
        )

    msgs = await outputs.wait_for(answered)
    error = next(
        m for m in msgs if m.schema == codec.ERROR_EVENT and m.value["command"] == _text(value)
    )
    assert error.value["code"] == code
    assert error.key is None
    request_id = error.value["request_id"]
    answer = await outputs.answer(request_id)
    assert (answer.result["status"], answer.result["error_code"]) == ("FAILED", code)
    # ...and the next good command is still served.
    follow_up = await commands.send(
        request_id=rid("after-bad"), exchange="ascendex", account="ascendex-empty"
    )
    assert (await outputs.answer(follow_up)).result["status"] == "OK"
    assert worker.proc.poll() is None


def _text(value: bytes) -> str:
    """How connector.codec.to_plain renders the command bytes."""
    import base64

    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


async def test_unknown_account(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    request_id = await commands.send(
        request_id=rid("asc-unknown"), exchange="ascendex", account="nobody"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "FAILED"
    assert answer.result["error_code"] == "UNKNOWN_ACCOUNT"
    assert [e.value["code"] for e in answer.errors] == ["UNKNOWN_ACCOUNT"]
    assert answer.errors[0].key == "ascendex:nobody"


async def test_authentication_failure(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    request_id = await commands.send(
        request_id=rid("asc-auth"), exchange="ascendex", account="ascendex-badkey"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["error_code"] == "AUTH_FAILED"
    (error,) = answer.errors
    assert error.value["code"] == "AUTH_FAILED"
    assert error.value["exchange_code"]
    assert error.value["retryable"] is False
    # It failed at the shared account lookup (metadata, counted in a metric): no open-orders
    # request was sent, so exchange_calls is 0, the same every time.
    assert answer.result["exchange_calls"] == 0


async def test_socket_dropped_mid_request_is_retried(
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    # Make sure the account's socket is open first, so the drop hits an established connection.
    warm = await commands.send(request_id=rid("asc-warm"), **DEMO)
    expected = (await outputs.answer(warm)).result["order_count"]
    before = (await control.get(f"{base}/__sandbox/stats")).json()
    (
        await control.post(f"{base}/__sandbox/faults", json={"drop_next_requests": 1})
    ).raise_for_status()
    request_id = await commands.send(request_id=rid("asc-drop"), **DEMO)
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "OK"
    assert answer.result["order_count"] == expected == len(answer.orders)
    after = (await control.get(f"{base}/__sandbox/stats")).json()
    assert after["dropped"] == before.get("dropped", 0) + 1
    assert after["connections"] > before["connections"]


async def test_deadline_passed_is_expired(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(request_id=rid("asc-expired"), deadline_ms=1_000, **DEMO)
    answer = await outputs.answer(request_id)
    assert answer.result["error_code"] == "EXPIRED"


async def test_published_events_decode_with_another_library_and_the_avsc_alone(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    """A consumer with Apache avro and avro/*.avsc only (no connector code) reads the events."""
    import io

    import avro.io
    import avro.schema

    request_id = await commands.send(request_id=rid("asc-avro-lib"), **DEMO)
    answer = await outputs.answer(request_id)
    readers = {
        name: avro.io.DatumReader(avro.schema.parse((AVRO_DIR / f"{name}.avsc").read_text()))
        for name in ("OrderEvent", "QueryResult")
    }
    raw = [m for m in outputs.raw if dict(m.headers)["request_id"] == request_id.encode()]
    assert len(raw) == answer.result["order_count"] + 1
    for msg in raw:
        assert msg.value[:2] == b"\xc3\x01"
        name = dict(msg.headers)["schema"].decode().rsplit(".", 1)[1]
        record = readers[name].read(avro.io.BinaryDecoder(io.BytesIO(msg.value[10:])))
        assert record["request_id"] == request_id
        if name == "OrderEvent":
            assert record["order_id"] in msg.key.decode()
            assert isinstance(record["price"], str) or record["price"] is None
