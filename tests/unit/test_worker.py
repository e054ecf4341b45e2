"""The worker without a broker: /healthz semantics (a dead agent actor, stuck pending work or a
stuck table recovery fails liveness, an idle worker stays alive), bounded metric labels, how
publishing treats an outage (wait, log once) versus a permanent refusal (answer FAILED instead),
and the redelivery guard. Kafka is replaced by :class:`InMemoryPublisher`."""

from __future__ import annotations

import asyncio
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import ProducerSendError

from connector import codec
from connector.account import Accounts
from connector.settings import Settings
from connector.worker import Connector
from connector.worker.faust_internals import live_actor_count, recovery_started_at
from connector.worker.health import Liveness
from connector.worker.outages import is_outage
from connector.worker.publisher import InMemoryPublisher, Record
from connector.worker.state_store import InMemoryStateStore


class Ref:
    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self.actor_task = task


class FakeAgent:
    """Faust's agent as faust_internals.live_actor_count reads it (its actor references)."""

    def __init__(self, refs: list[Ref]) -> None:
        self.started = True
        self._actors = set(refs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connector(
    tmp_path: Any, publisher: InMemoryPublisher | None = None, **settings: Any
) -> Connector:
    return Connector(
        Settings(data_dir=str(tmp_path), worker_concurrency=2, **settings),
        Accounts([]),
        {},
        publisher=publisher or InMemoryPublisher(),
        state_store=InMemoryStateStore(),
    )


async def test_dead_actor_fails_liveness() -> None:
    running = asyncio.create_task(asyncio.sleep(60))
    crashed = asyncio.create_task(asyncio.sleep(0))
    await crashed
    agent = FakeAgent([Ref(running), Ref(running)])
    liveness = Liveness(30, 2, actors_alive=partial(live_actor_count, agent))
    assert liveness.check() == (True, "ok")
    agent = FakeAgent([Ref(running), Ref(crashed)])
    liveness = Liveness(30, 2, actors_alive=partial(live_actor_count, agent))
    ok, reason = liveness.check()
    assert not ok and "dead" in reason
    running.cancel()


def test_an_agent_not_started_has_no_actor_count() -> None:
    agent = FakeAgent([])
    agent.started = False
    assert live_actor_count(agent) is None
    assert Liveness(30, 2, actors_alive=partial(live_actor_count, agent)).check() == (True, "ok")


async def test_stuck_pending_work_fails_liveness_idle_does_not() -> None:
    clock = Clock()
    liveness = Liveness(5, 2, clock=clock)
    clock.now += 60  # no progress for a minute...
    assert liveness.check()[0]  # ...but nothing pending: an idle worker is alive
    liveness.started()
    clock.now += 60
    ok, reason = liveness.check()
    assert not ok and "pending" in reason
    liveness.beat()
    assert liveness.check()[0]


async def test_agent_failure_fails_liveness(tmp_path: Any) -> None:
    class UnackableEvent(FakeEvent):
        def ack(self) -> bool:
            if self.acks + 1 >= self.message.refcount:  # the final ack, once answered
                raise RuntimeError("ack failed")
            return super().ack()

    c = connector(tmp_path)
    assert c.health.alive() == (True, "ok")
    event = UnackableEvent(c.settings.commands_by_account_topic, 0, b"{}")
    await c.consume(FakeStream([event]))
    await c.lanes.wait_idle()
    assert c.health.alive() == (False, "agent failed: RuntimeError")
    assert event.message.refcount > 0  # held: the stream's own final ack is never the last


async def test_metric_labels_are_the_configured_venues(tmp_path: Any) -> None:
    c = Connector(
        Settings(data_dir=str(tmp_path)),
        Accounts([]),
        {"ascendex": object()},  # type: ignore[dict-item]
    )
    assert c.venues == frozenset({"ascendex"})


async def test_broker_outage_while_publishing_is_waited_out(tmp_path: Any, caplog: Any) -> None:
    publisher = InMemoryPublisher()
    publisher.fail(KafkaConnectionError(), times=3)
    c = connector(tmp_path, publisher, outage_backoff_max_s=0.01)
    out = await c.handle(b'{"request_id": "r1", "exchange": "ascendex", "account": "a"}')
    assert not out.ok and out.request_id == "r1"
    assert len(publisher.attempts) == 4  # refused three times, then ErrorEvent + QueryResult
    assert publisher.topics() == [c.settings.topic_errors, c.settings.topic_results]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("broker unavailable" in m for m in messages) == 1
    assert sum("broker available again" in m for m in messages) == 1


async def test_outputs_the_broker_refuses_become_a_failed_answer(tmp_path: Any) -> None:
    publisher = InMemoryPublisher(max_value_bytes=2000)
    c = connector(tmp_path, publisher)
    big = (
        b'{"request_id": "r2", "exchange": "kraken", "account": "a", "x": "' + b"y" * 10_000 + b'"}'
    )
    out = await c.handle(big)
    assert out.result is not None and out.result.value["error_code"] == "INTERNAL"
    assert out.error is not None and out.error.value["command"] is None
    assert out.error.value["message"] == "outputs could not be published: MessageSizeTooLargeError"
    assert out.request_id == "r2"
    assert publisher.topics() == [c.settings.topic_errors, c.settings.topic_results]
    value = publisher.sent[-1].value
    assert value is not None and codec.decode_single_object(value)[1]["status"] == "FAILED"


class FakeMessage(SimpleNamespace):
    """Faust's Message as the worker uses it: its fields and its reference count."""

    refcount = 0

    def incref(self, n: int = 1) -> None:
        self.refcount += n


class FakeEvent:
    """Faust's Event: ``acks`` counts every ack, ``final`` is true once the acks reached the
    references taken (Faust's stream takes one when it delivers the event)."""

    def __init__(
        self,
        topic: str,
        offset: int,
        value: bytes,
        timestamp: float = 1.0,
        key: bytes | None = None,
        partition: int = 0,
    ) -> None:
        self.value = value
        self.message = FakeMessage(
            topic=topic, partition=partition, offset=offset, timestamp=timestamp, headers=[],
            key=key, refcount=1,
        )  # fmt: skip
        self.acks = 0

    def ack(self) -> bool:
        self.acks += 1
        return self.final

    @property
    def final(self) -> bool:
        return self.acks >= self.message.refcount


class FakeStream:
    """Faust's stream of events: like Faust, it acks an event when the agent asks for the next
    one (and at the end); ``taken`` counts the events the agent took."""

    def __init__(self, events: list[FakeEvent]) -> None:
        self._events = events
        self.taken = 0

    async def events(self) -> Any:
        for e in self._events:
            self.taken += 1
            try:
                yield e
            finally:
                e.ack()


async def test_a_record_redelivered_to_the_same_worker_is_answered_once(tmp_path: Any) -> None:
    """Faust can deliver a record twice around a rebalance (fetched before its post-recovery
    seek and again after it): the worker answers it once and acknowledges both deliveries. A
    different record at the same offset (the embedded broker restarts offsets at 0) is new."""
    publisher = InMemoryPublisher()
    c = connector(tmp_path, publisher)
    topic = c.settings.commands_by_account_topic
    cmd = b'{"request_id": "r1", "exchange": "ascendex", "account": "a"}'
    other = b'{"request_id": "r2", "exchange": "ascendex", "account": "a"}'
    events = [FakeEvent(topic, 7, cmd), FakeEvent(topic, 7, cmd), FakeEvent(topic, 7, other, 2.0)]
    await c.consume(FakeStream(events))
    await c.lanes.wait_idle()
    results = [
        codec.decode_single_object(r.value)[1]
        for r in publisher.sent
        if r.topic == c.settings.topic_results and r.value is not None
    ]
    assert [r["request_id"] for r in results] == ["r1", "r2"]
    assert all(e.final for e in events)


def test_table_recovery_stuck_past_the_stall_limit_fails_liveness() -> None:
    clock = Clock()
    started: list[float | None] = [clock.now - 2]
    liveness = Liveness(5, 2, recovery_since=lambda: started[0], clock=clock)
    assert liveness.check()[0]  # recovering for 2 s: fine
    started[0] = clock.now - 60
    ok, reason = liveness.check()
    assert not ok and "recovery stuck" in reason
    started[0] = None  # recovery done
    assert liveness.check()[0]


def test_the_recovery_start_is_read_only_while_recovering() -> None:
    """faust_internals.recovery_started_at over Faust's Recovery (its private start time)."""
    recovery = SimpleNamespace(in_recovery=True, _recovery_started_at=42.0)
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery))
    assert recovery_started_at(app) == 42.0
    recovery.in_recovery = False
    assert recovery_started_at(app) is None


async def test_in_memory_publisher_fails_as_told_then_acknowledges() -> None:
    publisher = InMemoryPublisher(max_value_bytes=3)
    small, big = Record("t", b"k", b"abc", []), Record("t", b"k", b"abcd", [])
    await publisher.send([])  # nothing to send: not an attempt
    publisher.fail(KafkaConnectionError(), times=2)
    for _ in range(2):
        with pytest.raises(KafkaConnectionError) as outage:
            await publisher.send([small])
        assert is_outage(outage.value)
    await publisher.send([small])
    with pytest.raises(ProducerSendError) as refused:
        await publisher.send([small, big])
    assert isinstance(refused.value.__cause__, MessageSizeTooLargeError)
    assert not is_outage(refused.value)
    publisher.fail(RecordTooLargeError(), times=None)
    for _ in range(3):
        with pytest.raises(RecordTooLargeError):
            await publisher.send([small])
    publisher.heal()
    await publisher.send([small])
    assert publisher.sent == [small, small]
    assert len(publisher.attempts) == 8


async def test_in_memory_publisher_holds_sends_at_its_gate() -> None:
    publisher = InMemoryPublisher()
    publisher.gate = asyncio.Event()
    send = asyncio.create_task(publisher.send([Record("t", None, b"v", [])]))
    await publisher.sending.wait()
    assert publisher.sent == [] and not send.done()
    publisher.gate.set()
    await send
    assert publisher.topics() == ["t"]


def test_a_by_account_topic_keeping_commands_less_long_than_the_command_topic_is_refused() -> None:
    from connector.worker.routing import retention_problem

    line = retention_problem("by", 60_000, "cmd", 86_400_000)
    assert line is not None and "retention.ms=60000" in line and "'cmd' (86400000 ms)" in line
    assert "forever" in (retention_problem("by", 60_000, "cmd", -1) or "")
    assert retention_problem("by", 86_400_000, "cmd", 86_400_000) is None
    assert retention_problem("by", -1, "cmd", 1000) is None
    assert retention_problem("by", None, "cmd", 1000) is None  # not reported: not checked
    assert retention_problem("by", 1000, "cmd", None) is None
