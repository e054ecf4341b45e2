"""The worker without a broker: /healthz semantics (a dead agent actor or stuck pending work
fails liveness, an idle worker stays alive), bounded metric labels, and how publishing treats
an outage (wait, log once) versus a permanent refusal (answer FAILED instead)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connector.account import Accounts
from connector.settings import Settings
from connector.worker import Connector


class Ref:
    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self.actor_task = task


class FakeAgent:
    def __init__(self, refs: list[Ref]) -> None:
        self.started = True
        self._actors = set(refs)


def connector(tmp_path: Any, **settings: Any) -> Connector:
    return Connector(
        Settings(data_dir=str(tmp_path), worker_concurrency=2, **settings), Accounts([]), {}
    )


async def test_dead_actor_fails_liveness(tmp_path: Any) -> None:
    c = connector(tmp_path)
    running = asyncio.create_task(asyncio.sleep(60))
    crashed = asyncio.create_task(asyncio.sleep(0))
    await crashed
    c.agent = FakeAgent([Ref(running), Ref(running)])  # type: ignore[assignment]
    assert c.alive() == (True, "ok")
    c.agent = FakeAgent([Ref(running), Ref(crashed)])  # type: ignore[assignment]
    ok, reason = c.alive()
    assert not ok and "dead" in reason
    running.cancel()


async def test_stuck_pending_work_fails_liveness_idle_does_not(tmp_path: Any) -> None:
    c = connector(tmp_path, liveness_stall_s=5)
    c._progress = time.monotonic() - 60  # no progress for a minute...
    assert c.alive()[0]  # ...but nothing pending: an idle worker is alive
    c._pending = 1
    ok, reason = c.alive()
    assert not ok and "pending" in reason
    c._beat()
    assert c.alive()[0]


async def test_agent_failure_fails_liveness(tmp_path: Any) -> None:
    c = connector(tmp_path)
    c._fatal = "agent failed: RuntimeError"
    assert c.alive() == (False, "agent failed: RuntimeError")


async def test_metric_labels_are_the_configured_venues(tmp_path: Any) -> None:

    c = Connector(
        Settings(data_dir=str(tmp_path)),
        Accounts([]),
        {"ascendex": object()},  # type: ignore[dict-item]
    )
    assert c.venues == frozenset({"ascendex"})


class FakeProducer:
    """Stands in for Faust's producer: fails the first ``fail`` sends with ``error``, or every
    send of a value larger than ``max_bytes``; otherwise returns an already-acked future."""

    def __init__(self, error: BaseException | None = None, fail: int = 0, max_bytes: int = 0):
        self.error, self.fail, self.max_bytes = error, fail, max_bytes
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, key: Any, value: bytes, partition: Any, ts: Any, headers: Any
    ) -> Any:
        from aiokafka.errors import MessageSizeTooLargeError
        from faust.exceptions import ProducerSendError

        if self.fail:
            self.fail -= 1
            assert self.error is not None
            raise self.error
        if self.max_bytes and len(value) > self.max_bytes:
            raise ProducerSendError("too large") from MessageSizeTooLargeError()
        self.sent.append((topic, key, value, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def with_producer(c: Connector, producer: FakeProducer) -> Connector:
    c.app._producer = producer  # type: ignore[attr-defined]
    return c


async def test_broker_outage_while_publishing_is_waited_out(tmp_path: Any, caplog: Any) -> None:
    from aiokafka.errors import KafkaConnectionError

    producer = FakeProducer(KafkaConnectionError(), fail=3)
    c = with_producer(connector(tmp_path, outage_backoff_max_s=0.01), producer)
    out = await c.handle(b'{"request_id": "r1", "exchange": "ascendex", "account": "a"}')
    assert not out.ok and out.request_id == "r1"
    assert [t for t, *_ in producer.sent] == [c.settings.topic_errors, c.settings.topic_results]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("broker unavailable" in m for m in messages) == 1
    assert sum("broker available again" in m for m in messages) == 1


async def test_outputs_the_broker_refuses_become_a_failed_answer(tmp_path: Any) -> None:
    from connector import codec

    producer = FakeProducer(max_bytes=2000)
    c = with_producer(connector(tmp_path), producer)
    big = (
        b'{"request_id": "r2", "exchange": "kraken", "account": "a", "x": "' + b"y" * 10_000 + b'"}'
    )
    out = await c.handle(big)
    assert out.result is not None and out.result.value["error_code"] == "INTERNAL"
    assert out.error is not None and out.error.value["command"] is None
    assert out.error.value["message"] == "outputs could not be published: MessageSizeTooLargeError"
    assert out.request_id == "r2"
    topics = [t for t, *_ in producer.sent]
    assert topics == [c.settings.topic_errors, c.settings.topic_results]
    assert codec.decode_single_object(producer.sent[-1][2])[1]["status"] == "FAILED"


class FakeEvent:
    def __init__(self, topic: str, offset: int, value: bytes, timestamp: float = 1.0) -> None:
        from types import SimpleNamespace

        self.value = value
        self.message = SimpleNamespace(
            topic=topic, partition=0, offset=offset, timestamp=timestamp, headers=[]
        )
        self.acks = 0

    def ack(self) -> bool:
        self.acks += 1
        return True


class FakeStream:
    def __init__(self, events: list[FakeEvent]) -> None:
        self._events = events

    async def events(self) -> Any:
        for e in self._events:
            yield e


async def test_a_record_redelivered_to_the_same_worker_is_answered_once(tmp_path: Any) -> None:
    """Faust can deliver a record twice around a rebalance (fetched before its post-recovery
    seek and again after it): the worker answers it once and acknowledges both deliveries. A
    different record at the same offset (the embedded broker restarts offsets at 0) is new."""
    from connector import codec

    producer = FakeProducer()
    c = with_producer(connector(tmp_path), producer)
    topic = c.settings.commands_by_account_topic
    cmd = b'{"request_id": "r1", "exchange": "ascendex", "account": "a"}'
    other = b'{"request_id": "r2", "exchange": "ascendex", "account": "a"}'
    events = [FakeEvent(topic, 7, cmd), FakeEvent(topic, 7, cmd), FakeEvent(topic, 7, other, 2.0)]
    await c._agent(FakeStream(events))
    results = [
        codec.decode_single_object(v)[1]
        for t, _k, v, _h in producer.sent
        if t == c.settings.topic_results
    ]
    assert [r["request_id"] for r in results] == ["r1", "r2"]
    assert [e.acks for e in events] == [1, 1, 1]


async def test_table_recovery_stuck_past_the_stall_limit_fails_liveness(tmp_path: Any) -> None:
    from types import SimpleNamespace

    c = connector(tmp_path, liveness_stall_s=5)
    recovery = SimpleNamespace(in_recovery=True, _recovery_started_at=time.monotonic() - 2)
    c.app.tables._recovery = recovery  # type: ignore[attr-defined]  # what .recovery returns
    assert c.alive()[0]  # recovering for 2 s: fine
    recovery._recovery_started_at = time.monotonic() - 60
    ok, reason = c.alive()
    assert not ok and "recovery stuck" in reason
    recovery.in_recovery = False
    assert c.alive()[0]
