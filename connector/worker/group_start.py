"""Where a new consumer group starts reading the command topic (``CONNECTOR_NEW_GROUP_START``).

A worker started with a new ``CONNECTOR_APP_ID`` is a new consumer group with no committed
offsets. Read from ``earliest``, it answered the command topic's whole history a second time
into the shared output topics: FAILED EXPIRED after another group's OK for old commands, a
second (possibly different) answer for recent ones. So the default, ``start-time``, starts a
command-topic partition that has no committed offset at the first command produced after this
worker process started, minus :data:`START_GRACE_S`; ``latest`` starts at the partition's end;
``earliest`` reads the history (what tests that replay a topic ask for).

Why the process start and not the time the group joined: the demo and the tests produce
commands right after starting a worker, before its group has joined (that takes seconds);
those commands are after the process start and are answered. The grace covers the process's
start time being read a moment late (``/proc`` has a one-second resolution for boot time) and
small clock differences between a producer's host (the record's CreateTime) and the worker's.
Its cost: a command another group answered in the last few seconds before a new group's first
worker started is answered again. Two groups running at once answer everything twice anyway.

The position chosen is committed at once (faust_internals.TunedConsumer), so it is the
group's: a partition that moves to a worker started later continues from the commit, and
nothing between the group's start and that worker's start is skipped. Only the command topic
is positioned: the by-account topic is per group (``<app_id>-query-orders-by-account``) and
holds only what this group forwarded, so it is always read from its start.

Some brokers do not answer timestamp lookups (ListOffsets by time; the embedded development
broker returns offset 0 and the current time for any time), so the answer is checked against
the records at it and before it, and when they contradict it the offset is found by a binary
search over the records' timestamps, which assumes they grow with the offset (the producers'
clocks; a few records out of order near the boundary only move it by those records).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..kafka import consumer_kwargs
from ..settings import Settings

Policy = Literal["earliest", "latest", "start-time"]

#: Seconds before the worker process's start from which a new group reads commands.
START_GRACE_S = 5.0

_IMPORTED_AT = time.time()


def process_started_at() -> float:
    """When this process started (epoch seconds): from ``/proc`` on Linux, else when this module
    was imported (early in ``connector worker``)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return min(_IMPORTED_AT, btime + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


@dataclass(frozen=True)
class GroupStart:
    """The policy, the topics it applies to, and for ``start-time`` the time in epoch ms."""

    policy: Policy
    topics: frozenset[str]
    since_ms: int

    @classmethod
    def from_settings(cls, settings: Settings, started_at: float | None = None) -> GroupStart:
        started = process_started_at() if started_at is None else started_at
        return cls(
            settings.new_group_start,
            frozenset({settings.topic_query_orders}),
            int((started - START_GRACE_S) * 1000),
        )


#: Partition -> (offset, timestamp) of the first record at or after a time, None for none.
TimeLookup = Callable[[Sequence[Any], int], Awaitable[Mapping[Any, "tuple[int, int] | None"]]]
#: Partition -> timestamp of the first record at or after an offset (None past the end).
RecordTime = Callable[[Any, int], Awaitable["tuple[int, int] | None"]]


async def start_offsets(
    start: GroupStart,
    tps: Sequence[Any],
    *,
    ends: Mapping[Any, int],
    beginnings: Mapping[Any, int],
    by_time: TimeLookup,
    record_time: RecordTime,
) -> dict[Any, int]:
    """Where each of ``tps`` (partitions of the group without a committed offset) starts; empty
    for ``earliest`` (the consumer's own reset policy applies)."""
    tps = [tp for tp in tps if tp.topic in start.topics]
    if start.policy == "earliest" or not tps:
        return {}
    if start.policy == "latest":
        return {tp: ends[tp] for tp in tps}
    found = await by_time(tps, start.since_ms)
    out: dict[Any, int] = {}
    for tp in tps:
        answer = found.get(tp)
        first, end = beginnings[tp], ends[tp]
        if answer is not None and await _is_boundary(tp, answer[0], start.since_ms, first,
                                                     record_time):  # fmt: skip
            out[tp] = answer[0]
        else:  # no answer, or one the records contradict: search them
            out[tp] = await search_by_time(tp, start.since_ms, first, end, record_time)
    return out


async def _is_boundary(
    tp: Any, offset: int, since_ms: int, first: int, record_time: RecordTime
) -> bool:
    """Whether ``offset`` is where records reach ``since_ms``: its record is at or after the
    time and the one before it (if any) is before it."""
    at = await record_time(tp, offset)
    if at is None or at[0] != offset or at[1] < since_ms:
        return False
    if offset <= first:
        return True
    before = await record_time(tp, offset - 1)
    return before is None or before[0] >= offset or before[1] < since_ms


async def search_by_time(
    tp: Any, since_ms: int, low: int, high: int, record_time: RecordTime
) -> int:
    """The offset of the first record in ``[low, high)`` whose timestamp is at least
    ``since_ms`` (``high`` when none), by binary search."""
    end = high
    while low < high:
        mid = (low + high) // 2
        found = await record_time(tp, mid)
        if found is None or found[0] >= high or found[1] >= since_ms:
            high = mid
        else:
            low = found[0] + 1
    found = await record_time(tp, low) if low < end else None
    return found[0] if found is not None and found[0] < end else end


class BrokerLookup:
    """:func:`start_offsets` for the settings' policy, through a consumer of its own (no
    group): what the worker's consumer calls for partitions without a committed offset."""

    def __init__(self, settings: Settings, start: GroupStart | None = None) -> None:
        self.settings = settings
        self.start = start or GroupStart.from_settings(settings)

    async def __call__(self, tps: Sequence[Any]) -> dict[Any, int]:
        start = self.start
        tps = [tp for tp in tps if tp.topic in start.topics]
        if start.policy == "earliest" or not tps:
            return {}
        consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings), enable_auto_commit=False)
        await consumer.start()
        try:
            atps = {tp: TopicPartition(tp.topic, tp.partition) for tp in tps}
            back = {a: tp for tp, a in atps.items()}
            ends = {
                back[a]: o for a, o in (await consumer.end_offsets(list(atps.values()))).items()
            }
            firsts = await consumer.beginning_offsets(list(atps.values()))
            beginnings = {back[a]: o for a, o in firsts.items()}

            async def by_time(parts: Sequence[Any], ms: int) -> dict[Any, tuple[int, int] | None]:
                found = await consumer.offsets_for_times({atps[tp]: ms for tp in parts})
                return {
                    back[a]: None if f is None else (f.offset, f.timestamp)
                    for a, f in found.items()
                }

            async def record_time(tp: Any, offset: int) -> tuple[int, int] | None:
                a = atps[tp]
                consumer.assign([a])
                consumer.seek(a, offset)
                batch = await consumer.getmany(a, timeout_ms=2000, max_records=1)
                records = batch.get(a) or []
                return (records[0].offset, records[0].timestamp) if records else None

            return await start_offsets(
                start, tps, ends=ends, beginnings=beginnings, by_time=by_time,
                record_time=record_time,
            )  # fmt: skip
        finally:
            await consumer.stop()
