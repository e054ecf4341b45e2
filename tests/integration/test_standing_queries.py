"""Standing queries through the broker: two workers with the same schedules file; the group
leader's timer publishes exactly one command per schedule and slot on the command topic, and
the commands are answered like any other.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
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


# One AscendEX account per partition of the command topic (4, the default; murmur2 of
# "<exchange>:<account>"), so with two workers some accounts are handled by the worker that is
# not the leader: the leader must keep their cadence without seeing their answers.
STEADY_ACCOUNTS = ("ascendex-empty", "ascendex-grp-03", "ascendex-demo", "ascendex-grp-01")
STEADY_INTERVAL_MS = 3000
STEADY_WINDOW_MS = 30_000


async def test_two_workers_steady_state_one_command_per_slot_for_every_account(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    """With two workers in the group, every schedule gets a command in (at least) N-1 of the N
    slots of a 30 s window and never two for one slot, whichever worker answers it: the
    scheduler never makes an account's data older than one interval by itself."""
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(
        "schedules:\n"
        + "".join(
            f"  - exchange: ascendex\n    account: {a}\n    interval_s: {STEADY_INTERVAL_MS // 1000}\n"
            for a in STEADY_ACCOUNTS
        )
    )
    stack = await isolated_stack("steady", CONNECTOR_SCHEDULES_FILE=str(schedules))
    env2 = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
            "CONNECTOR_DATA_DIR": str(tmp_path / "data-steady-2")}  # fmt: skip
    second = start_worker(env2, tmp_path / "worker-steady-2.log")
    workers = [stack.worker, second]
    try:
        await wait_ready(second)
        await wait_all_assigned(workers)
        # The window starts at the second slot boundary from now: the rebalance is over.
        now = int(time.time() * 1000)
        start = now - now % STEADY_INTERVAL_MS + 2 * STEADY_INTERVAL_MS
        end = start + STEADY_WINDOW_MS
        expected = list(range(start, end, STEADY_INTERVAL_MS))
        slots = await scheduled_slots_until(stack.settings, end, timeout=(end - now) / 1000 + 60)
        for account in STEADY_ACCOUNTS:
            sid = f"sched:ascendex:{account}"
            mine = [s for s in slots.get(sid, []) if start <= s < end]
            assert len(mine) == len(set(mine)), f"{account}: a slot published twice: {mine}"
            assert len(set(mine) & set(expected)) >= len(expected) - 1, (account, mine, expected)

        # The window covered the case that matters: both workers answered scheduled commands.
        def answered_scheduled(w: Worker) -> int:
            return sum(
                "command answered" in line and '"request_id": "sched:' in line
                for line in w.log_text().splitlines()
            )

        assert all(answered_scheduled(w) > 0 for w in workers)
    finally:
        stop_process(second.proc)
        second.log_file.close()


async def scheduled_slots_until(
    settings: Settings, end_ms: int, timeout: float
) -> dict[str, list[int]]:
    """Schedule id (``sched:<id>``) -> the slots of the scheduled commands on the command topic,
    read until every schedule seen has published a slot at or after ``end_ms``."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    slots: dict[str, list[int]] = {}
    try:
        tps = await topic_partitions(consumer, settings.topic_query_orders)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def read() -> None:
            while not slots or any(max(v) < end_ms for v in slots.values()):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for m in records:
                        rid = json.loads(m.value)["request_id"]
                        if rid.startswith("sched:"):
                            sid, _, slot = rid.rpartition(":")
                            slots.setdefault(sid, []).append(int(slot))

        await asyncio.wait_for(read(), timeout)
        return slots
    finally:
        await consumer.stop()
