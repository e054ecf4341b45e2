"""The compacted state topic through a real broker: created compacted, written with
connector.state's records, read back as a table by `connector state` (a subprocess).

The worker does not publish state records yet (phase 2); here the test publishes exactly what
:func:`connector.state.apply_snapshot` returns, as the worker will, and checks what a consumer
sees: tombstones are null values, values decode with Apache Avro from the .avsc alone, and
`connector state` folds the topic into the account's open orders.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connector.client import topic_partitions
from connector.codec import Serializer
from connector.kafka import client_kwargs, consumer_kwargs, wait_for_broker
from connector.model import Order, OrderQuery
from connector.pipeline import order_event
from connector.settings import Settings
from connector.state import AccountState, Snapshot, apply_snapshot, scope_of
from connector.statetopic import encode_state_record, ensure_state_topic

from .harness import PY, settings_from_env

pytestmark = pytest.mark.integration

AVSC = Path(__file__).resolve().parents[2] / "avro" / "OrderEvent.avsc"
ACC, OTHER = "bitget-follower", "bitget-follower-2"


@pytest.fixture
async def state_env(kafka_env: dict[str, str]) -> tuple[dict[str, str], Settings]:
    env = {**kafka_env, "CONNECTOR_TOPIC_STATE": f"it-state-{uuid.uuid4().hex[:8]}"}
    settings = settings_from_env(env)
    await wait_for_broker(settings)
    assert await ensure_state_topic(settings) is True
    assert await ensure_state_topic(settings) is False  # idempotent
    return env, settings


def events(
    account: str, request_id: str, orders: list[tuple[str, str, str]], started_at: int
) -> list[dict[str, Any]]:
    query = OrderQuery(request_id, "bitget", account)
    return [
        order_event(
            Order(
                "bitget",
                oid,
                symbol,
                raw="{}",
                price=Decimal(price),
                product_type="USDT-FUTURES",
            ),
            query,
            seq=i,
            size=len(orders),
            observed_at=started_at + 5,
        )
        for i, (oid, symbol, price) in enumerate(orders, start=1)
    ]


class StateWriter:
    """Applies snapshots per account and publishes the records, as the worker will."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.states: dict[str, AccountState] = {}
        self.serializer = Serializer()
        self.offset = 0

    async def apply(
        self,
        producer: AIOKafkaProducer,
        account: str,
        orders: list[tuple[str, str, str]],
        *,
        started_at: int,
        symbol: str | None = None,
        complete: bool = True,
    ) -> list[tuple[str, bool]]:
        self.offset += 1
        request_id = f"r-{self.offset}"
        snap = Snapshot(
            "bitget", account, scope_of({"symbol": symbol, "product_type": "USDT-FUTURES"}),
            (started_at, 0, self.offset), events(account, request_id, orders, started_at),
            complete,
        )  # fmt: skip
        applied = apply_snapshot(self.states.get(account), snap)
        self.states[account] = applied.state
        futures = []
        for rec in applied.records:
            key, value, headers = await encode_state_record(
                self.serializer, self.settings.topic_state, rec,
                request_id=request_id, exchange="bitget", account=account,
            )  # fmt: skip
            futures.append(
                await producer.send(self.settings.topic_state, value, key=key, headers=headers)
            )
        await asyncio.gather(*futures)
        return [(r.order_id, r.value is not None) for r in applied.records]


async def connector_state(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", "state", "--exchange", "bitget", *args, "--idle-timeout", "5",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    assert not err.strip() or proc.returncode != 0, err.decode()
    return proc.returncode, out.decode()


def jsonl(text: str) -> dict[str, dict[str, Any]]:
    return {(d := json.loads(line))["key"]: d["value"] for line in text.splitlines() if line}


async def test_state_topic_is_created_compacted(state_env: tuple[dict[str, str], Settings]) -> None:
    _, settings = state_env
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        (resp,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic_state)]
        )
    finally:
        await admin.close()
    (resource,) = resp.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    assert configs.get("cleanup.policy") == "compact"


async def test_snapshots_become_upserts_and_tombstones_read_back_as_a_table(
    state_env: tuple[dict[str, str], Settings],
) -> None:
    env, settings = state_env
    writer = StateWriter(settings)
    # linger: several records per produce batch, the embedded broker's end-offset weak spot
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", linger_ms=20)
    await producer.start()
    try:
        first = await writer.apply(
            producer, ACC,
            [("a", "BTCUSDT", "100"), ("b", "BTCUSDT", "101"), ("c", "ETHUSDT", "3000")],
            started_at=1_000,
        )  # fmt: skip
        assert first == [("a", True), ("b", True), ("c", True)]
        await writer.apply(producer, OTHER, [("z", "BTCUSDT", "1")], started_at=1_000)
        # a changed, b gone, d new
        second = await writer.apply(
            producer, ACC,
            [("a", "BTCUSDT", "99.5"), ("c", "ETHUSDT", "3000"), ("d", "ETHUSDT", "2999")],
            started_at=2_000,
        )  # fmt: skip
        assert second == [("a", True), ("c", True), ("d", True), ("b", False)]
        # a FAILED snapshot changes nothing
        assert await writer.apply(producer, ACC, [], started_at=3_000, complete=False) == []
        # ETH-only snapshot without c: only c is retired, BTC's a stays
        eth = await writer.apply(
            producer, ACC, [("d", "ETHUSDT", "2999")], started_at=4_000, symbol="ETHUSDT"
        )
        assert eth == [("d", True), ("c", False)]
        # an older snapshot finishing last changes nothing it has no right to
        late = await writer.apply(
            producer, ACC, [("b", "BTCUSDT", "101"), ("c", "ETHUSDT", "3000")], started_at=1_500
        )
        assert late == []
    finally:
        await producer.stop()

    code, out = await connector_state(env, "--account", ACC)
    assert code == 0
    table = jsonl(out)
    assert sorted(table) == [f"bitget:{ACC}:a", f"bitget:{ACC}:d"]
    assert table[f"bitget:{ACC}:a"]["price"] == "99.5"
    assert table[f"bitget:{ACC}:d"]["request_id"] == "r-5"

    code, out = await connector_state(env, "--account", ACC, "--symbol", "ETHUSDT")
    assert code == 0 and sorted(jsonl(out)) == [f"bitget:{ACC}:d"]

    code, out = await connector_state(env, "--account", OTHER, "--format", "summary")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"bitget:{OTHER}: 1 open orders")
    assert lines[1] == "  BTCUSDT: 1"

    # What any consumer sees: tombstones are null values; values are Avro single-object
    # records that Apache Avro decodes with the .avsc alone.
    raw = await read_all(settings)
    tombstones = [k for k, v in raw if v is None]
    assert sorted(tombstones) == [f"bitget:{ACC}:b", f"bitget:{ACC}:c"]
    reader = avro.io.DatumReader(avro.schema.parse(AVSC.read_text()))
    decoded = [
        reader.read(avro.io.BinaryDecoder(io.BytesIO(v[10:]))) for _, v in raw if v is not None
    ]
    assert all(v[:2] == b"\xc3\x01" for _, v in raw if v is not None)
    assert {(d["account"], d["order_id"]) for d in decoded} == {
        (ACC, "a"), (ACC, "b"), (ACC, "c"), (ACC, "d"), (OTHER, "z")
    }  # fmt: skip
    assert len(raw) == 3 + 1 + 4 + 2  # nothing published for FAILED or for the late snapshot


async def test_missing_topic_is_exit_1(kafka_env: dict[str, str]) -> None:
    env = {**kafka_env, "CONNECTOR_TOPIC_STATE": f"it-missing-{uuid.uuid4().hex[:8]}"}
    code, out = await connector_state(env, "--account", ACC)
    assert code == 1 and out == ""


async def read_all(settings: Settings) -> list[tuple[str, bytes | None]]:
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic_state)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[str, bytes | None]] = []
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500)
            got = [m for recs in batches.values() for m in recs]
            idle = 0 if got else idle + 1
            out += [(m.key.decode(), m.value) for m in got]
        return out
    finally:
        await consumer.stop()
