"""Standing queries through the broker: two workers with the same schedules file; the group
leader's timer publishes exactly one command per schedule and slot on the command topic, and
the commands are answered like any other.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from connector.client import topic_partitions
from connector.kafka import consumer_kwargs
from connector.settings import Settings

from .harness import (
    Stack,
    Worker,
    free_port,
    start_worker,
    stop_process,
    wait_all_assigned,
    wait_ready,
)

pytestmark = pytest.mark.integration

SCHEDULES = """\
schedules:
  - exchange: bitget
    account: bitget-demo
    interval_s: 2
  - exchange: ascendex
    account: ascendex-demo
    symbol: BTC-PERP
    interval_s: 3
"""


async def scheduled_commands(
    settings: Settings, count: int, timeout: float
) -> list[tuple[str, float]]:
    """Read the command topic until ``count`` scheduled commands (``sched:...``) were seen:
    (request id, record timestamp in s)."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    seen: list[tuple[str, float]] = []
    try:
        tps = await topic_partitions(consumer, settings.topic_query_orders)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def read() -> None:
            while len(seen) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for m in records:
                        rid = json.loads(m.value)["request_id"]
                        if rid.startswith("sched:"):
                            seen.append((rid, m.timestamp / 1000))

        await asyncio.wait_for(read(), timeout)
        return seen
    finally:
        await consumer.stop()


async def test_two_workers_publish_one_command_per_tick_per_schedule(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(SCHEDULES)
    stack = await isolated_stack("sched", CONNECTOR_SCHEDULES_FILE=str(schedules))
    env2 = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
            "CONNECTOR_DATA_DIR": str(tmp_path / "data-sched-2")}  # fmt: skip
    second = start_worker(env2, tmp_path / "worker-sched-2.log")
    try:
        await wait_ready(second)

        await wait_all_assigned([stack.worker, second])
        seen = await scheduled_commands(stack.settings, 16, timeout=60)
        per_slot = Counter(rid for rid, _ts in seen)
        # One command per (schedule, slot); a second leader during the one rebalance (the second
        # worker joining) may repeat at most one slot per schedule.
        repeats = {rid: n for rid, n in per_slot.items() if n > 1}
        assert len(repeats) <= 2 and all(n == 2 for n in repeats.values()), repeats
        by_schedule = Counter(rid.rsplit(":", 1)[0] for rid in per_slot)
        assert set(by_schedule) == {"sched:bitget:bitget-demo",
                                    "sched:ascendex:ascendex-demo:symbol=BTC-PERP"}  # fmt: skip
        # Consecutive slots of each schedule, answered OK (so none was skipped as unanswered).
        for sid, interval in (("sched:bitget:bitget-demo", 2000),
                              ("sched:ascendex:ascendex-demo:symbol=BTC-PERP", 3000)):  # fmt: skip
            slots = sorted(int(r.rsplit(":", 1)[1]) for r in per_slot if r.startswith(sid + ":"))
            assert all(b - a == interval for a, b in itertools.pairwise(slots)), slots
        for rid in list(per_slot)[:4]:
            answer = await stack.outputs.answer(rid, timeout=60)
            assert answer.results[0].value["status"] == "OK"
    finally:
        stop_process(second.proc)
        second.log_file.close()


async def test_leader_killed_the_other_worker_continues_the_schedule(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    """SIGKILL the worker running the timer: after the rebalance the other one becomes the
    leader and continues from the schedule's progress (a GlobalTable): later slots only, at
    most one repeated slot for the one rebalance, and never two leaders publishing."""
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(
        "schedules:\n  - exchange: bitget\n    account: bitget-demo\n    interval_s: 2\n"
    )
    stack = await isolated_stack("failover", CONNECTOR_SCHEDULES_FILE=str(schedules))
    env2 = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
            "CONNECTOR_DATA_DIR": str(tmp_path / "data-failover-2")}  # fmt: skip
    second = start_worker(env2, tmp_path / "worker-failover-2.log")
    workers = [stack.worker, second]
    try:
        await wait_ready(second)
        before = await scheduled_commands(stack.settings, 4, timeout=60)

        def published(w: Worker) -> list[int]:
            """Slots this worker published (its JSON log lines)."""
            return [
                int(json.loads(line)["request_id"].rsplit(":", 1)[1])
                for line in w.log_text().splitlines()
                if "standing query published" in line
            ]

        # The current leader published the latest slot.
        leader = max(workers, key=lambda w: max(published(w), default=0))
        survivor = next(w for w in workers if w is not leader)
        leader.proc.kill()
        await asyncio.to_thread(leader.proc.wait, 30)
        led_until = len(published(survivor))
        seen = await scheduled_commands(stack.settings, len(before) + 8, timeout=120)
        assert len(published(survivor)) > led_until  # the survivor took the timer over
        per_slot = Counter(rid for rid, _ts in seen)
        repeats = {rid: n for rid, n in per_slot.items() if n > 1}
        # Two rebalances in this test (the second worker joining, the leader dying): at most
        # one repeated slot each.
        assert len(repeats) <= 2 and all(n == 2 for n in repeats.values()), repeats
        # It continued from the progress table: no slot before the dead leader's last one.
        taken_over = published(survivor)[led_until:]
        assert min(taken_over) >= max(published(leader))
    finally:
        stop_process(second.proc)
        second.log_file.close()
