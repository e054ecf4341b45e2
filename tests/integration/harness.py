"""Test harness: real broker, real sandbox and real worker processes, as a user would run them."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from connector import devstack
from connector.client import Decoded, decode_message, topic_partitions
from connector.codec import ERROR_EVENT, ORDER_EVENT, QUERY_RESULT, Serializer
from connector.kafka import client_kwargs, consumer_kwargs
from connector.settings import Settings

PY = sys.executable

# Starting, waiting for and stopping processes: the one launcher (connector/devstack.py), shared
# with `make demo` and `make bench`.
free_port = devstack.free_port
parse_env_line = devstack.parse_env_line
stop_process = devstack.stop_process
wait_until = devstack.wait_until
wait_all_assigned = devstack.wait_all_assigned
Worker = devstack.Worker


def start_worker(env: dict[str, str], log_path: Path) -> Worker:
    """A ``connector worker`` with ``env`` (over this process's environment), logging to
    ``log_path``; returns at once."""
    return devstack.start_worker(env, log_path)


#: An AscendEX account with a 100-order book, seeded into the run's sandbox (its orders file).
LARGE_ACCOUNT = "ascendex-large-100"


def write_orders_file(path: Path) -> Path:
    """The run's sandbox seed (``connector sandbox --orders-file``): :data:`LARGE_ACCOUNT`."""
    from connector.exchanges.ascendex import simulator as asc_sim

    account_id = asc_sim.seeded_account(LARGE_ACCOUNT).futures_account_id
    rows = [asc_sim.order_row(account_id, orderId=f"large100o{i:06d}", time=1615696544843 + i,
                              lastExecTime=1615696544851 + i, seqNum=i,
                              symbol=("BTC-PERP", "ETH-PERP")[i % 2], side=("Buy", "Sell")[i % 2],
                              price=f"{60000 + i}.5" if i % 2 == 0 else f"{3000 + i}.25",
                              orderQty="0.0100") for i in range(100)]  # fmt: skip
    path.write_text(json.dumps({"ascendex": {LARGE_ACCOUNT: rows}}))
    return path


async def wait_ready(worker: Worker, timeout: float = 90) -> None:
    """Until /readyz says ready; fails at once, with the log's tail, if the process exits."""
    await worker.wait_ready(timeout)


@dataclass
class Collector:
    """Decodes every record of some topics, from their beginning, as it arrives; waiters on
    ``_cond`` are woken after each batch. Subclasses say which topics and what they keep."""

    settings: Settings
    _cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    def topics(self) -> list[str]:
        raise NotImplementedError

    def keep(self, msg: Any, decoded: Decoded) -> None:
        """Store one record (called with ``_cond`` held)."""
        raise NotImplementedError

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        tps = []
        for topic in self.topics():
            found = await topic_partitions(self._consumer, topic)
            assert found, f"topic {topic} missing"
            tps += found
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        serializer = Serializer(self.settings.schema_registry_url)
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200)
            except KafkaError:  # e.g. a broker restarted by a fault test: keep collecting
                await asyncio.sleep(0.2)
                continue
            new = [(m, await decode_message(m, serializer))
                   for records in batches.values() for m in records]  # fmt: skip
            if new:
                async with self._cond:
                    for msg, decoded in new:
                        self.keep(msg, decoded)
                    self._cond.notify_all()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()


@dataclass
class Outputs(Collector):
    """Every decoded record of the three output topics, from the start of the run."""

    messages: list[Decoded] = field(default_factory=list)
    timestamps: dict[int, int] = field(default_factory=dict)
    raw: list[Any] = field(default_factory=list)

    def topics(self) -> list[str]:
        s = self.settings
        return [s.topic_orders, s.topic_results, s.topic_errors]

    def keep(self, msg: Any, decoded: Decoded) -> None:
        decoded.value = decoded.value if isinstance(decoded.value, dict) else {}
        self.timestamps[id(decoded)] = msg.timestamp
        self.raw.append(msg)
        self.messages.append(decoded)

    def partition_count(self, topic: str) -> int:
        assert self._consumer is not None
        return len(self._consumer.partitions_for_topic(topic) or ())

    async def wait_for(
        self, predicate: Callable[[list[Decoded]], bool], timeout: float = 90
    ) -> list[Decoded]:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: predicate(self.messages)), timeout)
            return list(self.messages)

    async def answer(self, request_id: str, timeout: float = 90) -> Answer:
        """All outputs of one command, once its QueryResult has arrived."""

        def done(msgs: list[Decoded]) -> bool:
            # Complete = the result is in and so is everything it counts (they travel on other
            # partitions, so they may be fetched after it).
            mine = [m for m in msgs if m.headers.get("request_id") == request_id]
            results = [m for m in mine if m.schema == QUERY_RESULT]
            if not results:
                return False
            n_orders = sum(m.schema == ORDER_EVENT for m in mine)
            n_errors = sum(m.schema == ERROR_EVENT for m in mine)
            r = results[0].value
            return n_orders >= r["order_count"] and (r["status"] == "OK" or n_errors >= 1)

        msgs = await self.wait_for(done, timeout)
        mine = [m for m in msgs if m.headers.get("request_id") == request_id]
        return Answer(mine, self.timestamps)


@dataclass
class Answer:
    messages: list[Decoded]
    timestamps: dict[int, int]

    @property
    def orders(self) -> list[Decoded]:
        return [m for m in self.messages if m.schema == ORDER_EVENT]

    @property
    def errors(self) -> list[Decoded]:
        return [m for m in self.messages if m.schema == ERROR_EVENT]

    @property
    def results(self) -> list[Decoded]:
        return [m for m in self.messages if m.schema == QUERY_RESULT]

    @property
    def result(self) -> dict[str, Any]:
        assert len(self.results) == 1, f"expected exactly one QueryResult, got {len(self.results)}"
        value = self.results[0].value
        assert isinstance(value, dict)
        return value

    def timestamp(self, m: Decoded) -> int:
        return self.timestamps[id(m)]


class Commands:
    """Publishes commands to the run's command topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
        self._ends: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        md = await self.producer.send_and_wait(self.settings.topic_query_orders, value, key=key)
        tp = (md.topic, md.partition)
        self._ends[tp] = max(self._ends.get(tp, 0), md.offset + 1)

    def ends(self, topic: str) -> dict[int, int]:
        """Per partition, the offset just past the last command this run sent."""
        return {p: end for (t, p), end in self._ends.items() if t == topic}

    async def send(self, **command: Any) -> str:
        await self.send_raw(
            json.dumps(command).encode(),
            key=f"{command.get('exchange')}:{command.get('account')}".encode(),
        )
        return str(command["request_id"])


def rid(prefix: str) -> str:
    """A request id unique to this test run."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Stack:
    """A worker with its own topics and consumer group, isolated from the session's worker."""

    settings: Settings
    env: dict[str, str]
    worker: Worker
    outputs: Outputs
    commands: Commands


def isolated_env(
    base: dict[str, str], tag: str, extra: dict[str, str], data_dir: Path
) -> dict[str, str]:
    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    return {
        **base,
        "CONNECTOR_APP_ID": f"it-{suffix}",
        "CONNECTOR_TOPIC_QUERY_ORDERS": f"it-{suffix}-query-orders",
        "CONNECTOR_TOPIC_ORDERS": f"it-{suffix}-orders",
        "CONNECTOR_TOPIC_RESULTS": f"it-{suffix}-order-query-results",
        "CONNECTOR_TOPIC_ERRORS": f"it-{suffix}-order-errors",
        "CONNECTOR_TOPIC_STATE": f"it-{suffix}-open-orders",
        "CONNECTOR_WEB_PORT": str(free_port()),
        "CONNECTOR_DATA_DIR": str(data_dir),
        **extra,
    }


def settings_from_env(env: dict[str, str]) -> Settings:
    fields = Settings.model_fields
    values = {k.removeprefix("CONNECTOR_").lower(): v for k, v in env.items()}
    return Settings(**{k: v for k, v in values.items() if k in fields})
