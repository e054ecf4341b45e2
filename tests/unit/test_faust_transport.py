"""The commit rule the connector adds to Faust's consumer (connector/worker/faust_internals.py).

Faust commits the first run of consecutive acknowledged offsets even when an earlier offset is
still being processed (its guard is off by one and absent before the first commit). These tests
pin the corrected rule's pure functions, and the consumer's acknowledgement on the consumer
Faust builds. The rule on a running consumer (committed offsets, both of Faust's stream
iterators, holes fetched again, transaction markers) is tested against the embedded broker in
tests/integration/test_commit_rule.py: the committed offset can only be set by a broker.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from connector.worker.faust_internals import (
    App,
    ReadOffsets,
    commit_end,
    first_hole,
    gap_to_record,
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


# --- holes: records fetched but never delivered to the agent ---------------------------------


def test_first_hole_is_an_offset_neither_answered_nor_in_flight_below_an_answered_one() -> None:
    assert first_hole(4, acked=[5, 6], pending=[]) == 4
    assert first_hole(0, acked=[0, 1, 3], pending=[]) == 2
    assert first_hole(4, acked=[5, 6], pending=[4]) is None  # 4 is being answered
    assert first_hole(4, acked=[4, 5], pending=[7]) is None  # nothing answered above a hole
    assert first_hole(4, acked=[], pending=[4]) is None
    assert first_hole(4, acked=[1, 2], pending=[]) is None  # repeats of committed offsets


def test_read_offsets_count_what_the_seek_to_the_commit_never_delivered_as_skipped() -> None:
    offsets = ReadOffsets()
    offsets.update({TP0: 4})  # Faust's seek to the committed offset 4
    offsets[TP0] = 6  # the next record: 4 and 5 are a transaction marker, compacted away...
    assert offsets.skipped[TP0] == (4, 5)
    offsets[TP0] = 9  # later jumps are Faust's own gap logic
    assert offsets.skipped[TP0] == (4, 5)
    offsets.update({TP0: 9})
    offsets[TP0] = 9  # delivered where the seek put it: nothing skipped
    assert offsets.skipped[TP0] == (4, 5)
    offsets.pop(TP0, None)  # revoked
    assert TP0 not in offsets.skipped
    stale = ReadOffsets()
    for offset in range(60, 71):
        stale[TP0] = offset
    stale.update({TP0: 65})
    stale[TP0] = 71  # a batch fetched before the seek: 65-70 were delivered, not skipped
    assert TP0 not in stale.skipped


async def _consumer_of(topic: str) -> Any:
    """The connector's consumer as Faust builds it (not started: no broker), with acks enabled
    for ``topic`` as Faust's conductor enables them for an agent's topic."""
    app = App("t", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=500, topic_allow_declare=False)
    app.topics.add(app.topic(topic, internal=False))
    await app.topics._update_indices()
    assert app.topics.acks_enabled_for(topic)
    return app.consumer


def _message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(TP0.topic, TP0.partition, offset, 0.0, 0, None, None, b"x", None)


async def test_a_message_skipped_before_it_was_tracked_is_not_acknowledged() -> None:
    # Faust's pure-Python stream iterator acks the events it skips (issue 20); they were never
    # tracked, as every event an agent sees is. Refused, the record stays a hole: fetched again.
    consumer = await _consumer_of(TP0.topic)
    skipped = _message(5)
    assert not consumer.ack(skipped) and not skipped.acked
    answered = _message(6)
    consumer.track_message(answered)  # pending
    assert answered in consumer.unacked
    assert consumer.ack(answered) and answered.acked
    assert answered not in consumer.unacked
    assert not consumer.ack(answered)  # a second ack is a no-op, as in Faust
