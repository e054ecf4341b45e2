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

from faust.types import TP

from connector.faust_transport import commit_blocked, transport_class

TP0 = TP("query-orders", 0)


def test_nothing_pending_never_blocks() -> None:
    assert not commit_blocked([11, 12], [], committed=10)
    assert not commit_blocked([], [3], committed=None)


def test_an_unfinished_offset_below_the_first_acknowledged_blocks() -> None:
    assert commit_blocked([11, 12], [10], committed=10)  # Faust alone would commit 13
    assert commit_blocked([3, 4], [0], committed=None)  # before any commit: no guard in Faust


def test_pending_offsets_above_the_run_or_already_committed_do_not_block() -> None:
    assert not commit_blocked([10, 11], [12, 15], committed=10)
    assert not commit_blocked([10, 11], [7], committed=10)


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
