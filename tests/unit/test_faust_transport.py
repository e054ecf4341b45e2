"""The commit rule the connector adds to Faust's consumer (connector/faust_transport.py).

Faust commits the first run of consecutive acknowledged offsets even when an earlier offset is
still being processed (its guard is off by one and absent before the first commit). These tests
pin the corrected rule, on the pure function and on the consumer's ``_new_offset`` itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from weakref import WeakSet

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from connector.worker.faust_internals import (
    HOLE_GRACE_S,
    ReadOffsets,
    commit_end,
    first_hole,
    gap_to_record,
    transport_class,
)

TP0 = TP("query-orders", 0)


def test_the_commit_ends_where_the_answered_run_from_the_base_ends() -> None:
    assert commit_end(10, [10, 11, 12]) == 13
    assert commit_end(10, [10, 11, 13]) == 12  # 12 is unanswered: stop before it
    assert commit_end(0, [0]) == 1


def test_nothing_is_committed_while_the_base_is_unanswered() -> None:
    assert commit_end(10, [11, 12]) is None  # Faust alone commits 13 (its guard is off by one)
    assert commit_end(0, [3, 4]) is None  # before any commit Faust has no guard at all
    assert commit_end(10, []) is None
    assert commit_end(10, [7, 8]) is None  # repeats of committed records


@dataclass(eq=False)
class _Msg:
    tp: TP
    offset: int
    acked: bool = False


def _consumer(committed: int | None, acked: list[int], pending: list[_Msg]) -> Any:
    consumer: Any = object.__new__(transport_class(500).Consumer)
    consumer._acked = defaultdict(list, {TP0: list(acked)})
    consumer._acked_index = defaultdict(set, {TP0: set(acked)})
    consumer._gap = defaultdict(list)  # no gaps (Faust keeps IntervalTrees here)
    consumer._committed_offset = defaultdict(lambda: None, {TP0: committed})
    consumer._unacked_messages = WeakSet(pending)
    consumer._first_offset = {}
    consumer._holes = {}
    return consumer


def test_consumer_holds_the_commit_until_the_slow_command_is_acknowledged() -> None:
    slow = _Msg(TP0, 10)
    consumer = _consumer(committed=10, acked=[11, 12], pending=[slow])
    assert consumer._new_offset(TP0) is None
    slow.acked = True
    consumer._acked[TP0].append(10)
    assert consumer._new_offset(TP0) == 13


def test_consumer_commits_as_faust_does_when_nothing_is_in_the_way() -> None:
    later = _Msg(TP0, 14)
    consumer = _consumer(committed=10, acked=[10, 11, 12], pending=[later])
    assert consumer._new_offset(TP0) == 13


# --- gaps: offsets Faust treats as skipped by the fetcher ------------------------------------


def test_a_real_jump_is_a_gap_without_the_record_being_delivered() -> None:
    # Read up to 10, next record 15 (11-14 compacted away or transaction markers).
    assert gap_to_record(11, 15, delivered=10) == (11, 14)
    assert gap_to_record(11, 15, delivered=None) == (11, 14)
    assert gap_to_record(11, 12, delivered=10) == (11, 11)


def test_a_jump_over_offsets_already_delivered_is_no_gap() -> None:
    # The post-recovery seek reset the read offset to 65 while a batch fetched before it was
    # still being delivered: 66-70 were delivered (maybe still queued for the agent), not missing.
    assert gap_to_record(66, 71, delivered=70) is None
    assert gap_to_record(66, 75, delivered=70) == (71, 74)  # only what lies above them


def test_read_offsets_remember_what_was_delivered_until_revocation() -> None:
    offsets = ReadOffsets()
    assert offsets[TP0] is None  # Faust's default for a partition never read
    for offset in range(60, 71):
        offsets[TP0] = offset  # the fetcher, record by record
    offsets.update({TP0: 65})  # Faust's seek to the committed offset
    assert offsets[TP0] == 65 and offsets.delivered[TP0] == 70
    offsets.pop(TP0, None)  # revoked
    assert TP0 not in offsets.delivered


def _seeking_consumer(consumer_class: Any) -> Any:
    """A consumer that delivered 60-70, committed 65 (only 65 is answered since) and was reset
    to read offset 65 by the post-recovery seek, as Faust's Consumer keeps them."""
    consumer: Any = object.__new__(consumer_class)
    faust_own = consumer_class is Consumer
    consumer._read_offset = defaultdict(lambda: None) if faust_own else ReadOffsets()
    for offset in range(60, 71):
        consumer._read_offset[TP0] = offset
    consumer._read_offset.update({TP0: 65})
    consumer._committed_offset = defaultdict(lambda: None, {TP0: 65})
    consumer._gap = defaultdict(IntervalTree)
    consumer._acked = defaultdict(list, {TP0: [65]})
    consumer._acked_index = defaultdict(set, {TP0: {65}})
    consumer._unacked_messages = WeakSet()  # 66-70 are queued for the agent: not yet tracked
    consumer._first_offset = {TP0: 0}
    return consumer


async def test_a_stale_batch_after_the_seek_cannot_commit_past_queued_commands() -> None:
    # The next record of the stale batch, 71, is delivered and answered before 66-70.
    # Faust's own consumer took 71 for a jump from 65: 66-71 count as acknowledged, and the
    # commit passes five commands nobody has answered.
    faust_consumer = _seeking_consumer(Consumer)
    await Consumer._add_gap(faust_consumer, TP0, 66, 71)
    faust_consumer._acked[TP0].append(71)
    assert faust_consumer._new_offset(TP0) == 72
    # The connector's: no gap, the commit stops after 65 until 66-70 are answered.
    consumer = _seeking_consumer(transport_class(500).Consumer)
    await consumer._add_gap(TP0, 66, 71)
    consumer._acked[TP0].append(71)
    assert not consumer._gap[TP0]
    assert consumer._new_offset(TP0) == 66


# --- holes: records fetched but never delivered to the agent ---------------------------------


def test_first_hole_is_an_offset_neither_answered_nor_in_flight_below_an_answered_one() -> None:
    assert first_hole(4, acked=[5, 6], pending=[]) == 4
    assert first_hole(0, acked=[0, 1, 3], pending=[]) == 2
    assert first_hole(4, acked=[5, 6], pending=[4]) is None  # 4 is being answered
    assert first_hole(4, acked=[4, 5], pending=[7]) is None  # nothing answered above a hole
    assert first_hole(4, acked=[], pending=[4]) is None
    assert first_hole(4, acked=[1, 2], pending=[]) is None  # repeats of committed offsets


def test_commit_never_passes_an_offset_that_never_reached_the_agent() -> None:
    # 4 was dropped between fetcher and agent: not acknowledged, not in flight. Faust alone
    # commits 7 (its guard: 5 - 4 is not > 1); the connector holds the commit at 4.
    consumer = _consumer(committed=4, acked=[5, 6], pending=[])
    assert consumer._new_offset(TP0) is None


def test_before_any_commit_the_partitions_first_offset_is_the_base() -> None:
    consumer = _consumer(committed=None, acked=[1, 2], pending=[])
    assert consumer._new_offset(TP0) is None  # first offset not known yet
    consumer._first_offset[TP0] = 1  # log start 1: offset 0 was deleted by retention
    assert consumer._new_offset(TP0) == 3
    consumer = _consumer(committed=None, acked=[1, 2], pending=[])
    consumer._first_offset[TP0] = 0  # offset 0 exists and was never answered
    assert consumer._new_offset(TP0) is None


def test_a_commit_older_than_the_partitions_first_offset_does_not_hold_it() -> None:
    # The group was idle longer than the topic's retention: committed 10, records from 50 on.
    consumer = _consumer(committed=10, acked=[50, 51], pending=[])
    consumer._first_offset[TP0] = 50
    assert consumer._new_offset(TP0) == 52


async def test_a_lasting_hole_is_fetched_again_from_the_hole() -> None:
    consumer = _consumer(committed=None, acked=[0, 1, 3, 4], pending=[])
    seeks: list[tuple[TP, int]] = []
    asked: list[tuple[TP, ...]] = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        return {tp: 0 for tp in tps}

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    consumer.earliest_offsets = earliest_offsets
    consumer.seek = seek
    await consumer.heal_offsets(now=100.0)
    assert asked == [(TP0,)] and consumer._first_offset == {TP0: 0}
    assert seeks == []  # a hole may be a record on its way to an actor: not yet
    await consumer.heal_offsets(now=100.0 + HOLE_GRACE_S / 2)
    assert seeks == []
    await consumer.heal_offsets(now=100.0 + HOLE_GRACE_S)
    assert seeks == [(TP0, 2)]
    await consumer.heal_offsets(now=100.0 + HOLE_GRACE_S + 1)
    assert seeks == [(TP0, 2)]  # the refetch gets its own grace
    consumer._acked[TP0].append(2)  # answered after the refetch
    await consumer.heal_offsets(now=100.0 + 3 * HOLE_GRACE_S)
    assert seeks == [(TP0, 2)] and consumer._holes == {}
    assert consumer._new_offset(TP0) == 5


def test_asking_for_the_commit_twice_gives_it_twice() -> None:
    # Faust's own rule drops the acks it counted, whether or not that commit is then sent: a
    # commit skipped at shutdown (one already running) lost them, and the next owner repeated
    # those commands. The connector forgets acks only once the committed offset passed them.
    faust_consumer = _consumer(committed=10, acked=[10, 11, 12], pending=[])
    assert Consumer._new_offset(faust_consumer, TP0) == 13
    assert Consumer._new_offset(faust_consumer, TP0) is None
    consumer = _consumer(committed=10, acked=[10, 11, 12], pending=[])
    assert consumer._new_offset(TP0) == 13
    assert consumer._new_offset(TP0) == 13
    consumer._committed_offset[TP0] = 13  # the commit went through
    consumer._acked[TP0].append(13)
    assert consumer._new_offset(TP0) == 14 and consumer._acked[TP0] == [13]
