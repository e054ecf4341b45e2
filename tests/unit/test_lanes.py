"""Bulkheads (issue 20), through the worker's agent loop with fake venues: a venue whose
exchange never answers does not delay another venue's commands; a venue's running commands stay
within its limit; the commands held in memory stay within the cap, the agent waiting for room;
a freed slot goes to the account with the fewest commands running; a drain starts no waiting
command and waits for the running ones. Kafka is replaced by InMemoryPublisher, Faust's stream
and events by the fakes of test_worker.py (which count the acks against the references)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from prometheus_client import REGISTRY

from connector import codec
from connector.account import Account, Accounts
from connector.devstack import wait_until
from connector.model import FetchResult, OrderQuery
from connector.secrets import Secret
from connector.settings import Settings
from connector.worker import Connector
from connector.worker.publisher import InMemoryPublisher
from connector.worker.state_store import InMemoryStateStore

from .test_worker import FakeEvent, FakeStream

ACCOUNTS = Accounts(
    [
        Account("desk-a", "ascendex", Secret("key-aaaaaaaa"), Secret("secret-aaaaaaaa")),
        Account("desk-b", "ascendex", Secret("key-bbbbbbbb"), Secret("secret-bbbbbbbb")),
        Account(
            "copy", "bitget", Secret("key-cccccccc"), Secret("secret-cccccccc"), Secret("pass-cc")
        ),
    ]
)


class GatedVenue:
    """An exchange whose every fetch waits until released (by request id, or all at once);
    counts the fetches running at once."""

    def __init__(self, exchange: str, *, open_: bool = False) -> None:
        self.exchange = exchange
        self.started: list[str] = []
        self.running = 0
        self.max_running = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._all = asyncio.Event()
        if open_:
            self._all.set()

    def release(self, request_id: str) -> None:
        self._gates.setdefault(request_id, asyncio.Event()).set()

    def release_all(self) -> None:
        self._all.set()

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.started.append(query.request_id)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        gate = self._gates.setdefault(query.request_id, asyncio.Event())
        try:
            waits = [asyncio.ensure_future(gate.wait()), asyncio.ensure_future(self._all.wait())]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()
        finally:
            self.running -= 1
        return FetchResult([], calls=1)

    async def aclose(self) -> None:
        pass


def make(tmp_path: Any, **settings: Any) -> tuple[Connector, GatedVenue, GatedVenue, Any]:
    ascendex, bitget = GatedVenue("ascendex"), GatedVenue("bitget", open_=True)
    publisher = InMemoryPublisher()
    c = Connector(
        Settings(data_dir=str(tmp_path), worker_concurrency=1, **settings),
        ACCOUNTS,
        {"ascendex": ascendex, "bitget": bitget},  # type: ignore[dict-item]
        publisher=publisher,
        state_store=InMemoryStateStore(),
    )
    return c, ascendex, bitget, publisher


def command(c: Connector, offset: int, exchange: str, account: str, request_id: str) -> FakeEvent:
    """A command on the by-account topic (keyed by its account, as the router forwards it);
    each has its own symbol, so no two share a fetch (connector/resilience/coalesce.py)."""
    value = json.dumps(
        {"request_id": request_id, "exchange": exchange, "account": account,
         "symbol": f"S{offset}"}
    ).encode()  # fmt: skip
    key = f"{exchange}:{account}".encode()
    topic = c.settings.commands_by_account_topic
    return FakeEvent(topic, offset, value, timestamp=time.time(), key=key)


def answers(c: Connector, publisher: InMemoryPublisher) -> dict[str, dict[str, Any]]:
    """The QueryResults published so far, by request id."""
    results = [
        codec.decode_single_object(r.value)[1]
        for r in publisher.sent
        if r.topic == c.settings.topic_results and r.value is not None
    ]
    return {r["request_id"]: r for r in results}


def gauge(name: str, exchange: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"exchange": exchange})


async def test_a_venue_that_hangs_does_not_delay_another_venues_commands(tmp_path: Any) -> None:
    """Four commands for an AscendEX that never answers are taken first, then three for Bitget
    and one for a venue the worker does not have: the Bitget commands and the unknown one are
    answered and acknowledged while AscendEX's are still waiting, with one actor. AscendEX runs
    at most its limit (2) at once; the other two wait in its lane, unacknowledged."""
    c, ascendex, bitget, publisher = make(tmp_path, worker_venue_concurrency=2)
    slow = [command(c, i, "ascendex", ("desk-a", "desk-b")[i % 2], f"asc-{i}") for i in range(4)]
    fast = [command(c, 4 + i, "bitget", "copy", f"bg-{i}") for i in range(3)]
    unknown = command(c, 7, "kraken", "desk-k", "kr-0")
    await asyncio.wait_for(c.consume(FakeStream([*slow, *fast, unknown])), 5)

    await wait_until(lambda: len(answers(c, publisher)) == 4, timeout=5,
                     what="the Bitget and unknown-venue answers", interval=0)  # fmt: skip
    done = answers(c, publisher)
    assert {r: done[r]["status"] for r in done} == {
        "bg-0": "OK", "bg-1": "OK", "bg-2": "OK", "kr-0": "FAILED"
    }  # fmt: skip
    assert all(e.final for e in [*fast, unknown])
    assert not any(e.final for e in slow)
    assert ascendex.started == ["asc-0", "asc-1"] and ascendex.running == 2
    assert c.lanes.in_flight("ascendex") == 2 and c.lanes.lane("ascendex").waiting == 2
    assert gauge("connector_commands_in_flight_by_venue", "ascendex") == 2
    assert gauge("connector_commands_waiting_by_venue", "ascendex") == 2
    assert c.liveness.pending == 2  # the two running; waiting is not work

    ascendex.release_all()
    await c.lanes.wait_idle()
    assert set(answers(c, publisher)) == {*[f"asc-{i}" for i in range(4)], "bg-0", "bg-1",
                                          "bg-2", "kr-0"}  # fmt: skip
    assert all(e.final for e in slow)
    assert ascendex.max_running == 2 and bitget.max_running >= 1
    assert gauge("connector_commands_in_flight_by_venue", "ascendex") == 0
    assert gauge("connector_commands_waiting_by_venue", "ascendex") == 0
    assert c.liveness.pending == 0


async def test_commands_held_are_capped_and_the_agent_waits_for_room(tmp_path: Any) -> None:
    """With room for three commands, the agent takes a fourth and waits with it, unsubmitted,
    until one of the three is answered: bounded memory, and the backpressure on fetching."""
    c, ascendex, _, publisher = make(tmp_path, worker_max_in_flight=3)
    events = [command(c, i, "ascendex", "desk-a", f"asc-{i}") for i in range(5)]
    stream = FakeStream(events)
    agent = asyncio.create_task(c.consume(stream))
    await wait_until(lambda: len(ascendex.started) == 3, timeout=5, what="three fetches",
                     interval=0)  # fmt: skip
    assert stream.taken == 4 and c.lanes.held == 3 and not agent.done()
    assert ascendex.started == ["asc-0", "asc-1", "asc-2"]

    ascendex.release("asc-1")
    await wait_until(lambda: len(ascendex.started) == 4, timeout=5, what="the fourth fetch",
                     interval=0)  # fmt: skip
    assert list(answers(c, publisher)) == ["asc-1"] and events[1].final
    assert stream.taken == 5 and c.lanes.held == 3 and not agent.done()

    ascendex.release_all()
    await asyncio.wait_for(agent, 5)
    await c.lanes.wait_idle()
    assert len(answers(c, publisher)) == 5 and all(e.final for e in events)
    assert ascendex.max_running == 3


async def test_a_freed_slot_goes_to_the_account_with_fewest_running(tmp_path: Any) -> None:
    """desk-a's commands fill AscendEX's two slots (say, all waiting on desk-a's own budget);
    when one ends, desk-b's command, taken after desk-a's third, gets the slot first."""
    c, ascendex, _, _ = make(tmp_path, worker_venue_concurrency=2)
    events = [command(c, i, "ascendex", "desk-a", f"a-{i}") for i in range(3)]
    events.append(command(c, 3, "ascendex", "desk-b", "b-0"))
    await asyncio.wait_for(c.consume(FakeStream(events)), 5)
    await wait_until(lambda: len(ascendex.started) == 2, timeout=5, what="two fetches",
                     interval=0)  # fmt: skip
    ascendex.release("a-0")
    await wait_until(lambda: len(ascendex.started) == 3, timeout=5, what="a third fetch",
                     interval=0)  # fmt: skip
    assert ascendex.started == ["a-0", "a-1", "b-0"]
    ascendex.release_all()
    await c.lanes.wait_idle()
    assert ascendex.started == ["a-0", "a-1", "b-0", "a-2"]


async def test_a_drain_starts_no_waiting_command_and_waits_for_the_running_one(
    tmp_path: Any,
) -> None:
    """At shutdown the running command is answered and acknowledged; the one waiting for a
    slot is never started nor acknowledged (its offset stays for the next owner); nothing
    taken after the drain began is started either."""
    c, ascendex, _, publisher = make(tmp_path, worker_venue_concurrency=1)
    events = [command(c, i, "ascendex", "desk-a", f"asc-{i}") for i in range(2)]
    await asyncio.wait_for(c.consume(FakeStream(events)), 5)
    await wait_until(lambda: ascendex.running == 1, timeout=5, what="one fetch", interval=0)
    c.draining = True  # what the shutdown hook (connector/worker/shutdown.py) does first
    drain = asyncio.create_task(c.lanes.drain(30))
    await asyncio.sleep(0)
    assert not drain.done()
    ascendex.release("asc-0")
    assert await asyncio.wait_for(drain, 5) == 0
    assert list(answers(c, publisher)) == ["asc-0"]
    assert events[0].final and not events[1].final
    assert ascendex.started == ["asc-0"]
    late = command(c, 2, "bitget", "copy", "bg-late")
    agent = asyncio.create_task(c.consume(FakeStream([late])))
    await asyncio.sleep(0)
    assert not agent.done() and not late.final  # parked until the agent is cancelled
    agent.cancel()
    assert list(answers(c, publisher)) == ["asc-0"]


async def test_a_drain_past_its_time_abandons_the_command_unacknowledged(tmp_path: Any) -> None:
    c, ascendex, _, publisher = make(tmp_path)
    event = command(c, 0, "ascendex", "desk-a", "asc-0")
    await asyncio.wait_for(c.consume(FakeStream([event])), 5)
    await wait_until(lambda: ascendex.running == 1, timeout=5, what="the fetch", interval=0)
    c.draining = True
    assert await c.lanes.drain(0.01) == 1
    assert not event.final and answers(c, publisher) == {}
    assert c.lanes.held == 0 and gauge("connector_commands_in_flight_by_venue", "ascendex") == 0
