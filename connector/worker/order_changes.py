"""The ``order-changes`` topic in the worker: the OrderChange records of each applied snapshot
(connector/changes.py), derived by the state writer right after it applies the snapshot and
published after the snapshot's state records (docs/contract.md "order-changes").

The views the next snapshot is compared with are stored in the account's state
(``changes.with_views``), in the same store as the state, so a restarted worker compares with
what its predecessor stored. Delivery is at-least-once, like every output: a retried send
repeats the records (readers deduplicate on ``detected_by`` and ``order_id``). A worker killed
after storing a snapshot's state and before its changes were acknowledged loses those changes
(the repeated command fetches anew and finds nothing changed since the stored views); the
open-orders topic is still right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..changes import ChangeRecord, order_changes
from ..codec import ORDER_CHANGE, Serializer
from ..pipeline import Outcome
from ..state import Applied, record_key
from .outcomes import utf8
from .publisher import Record


def changes_of(
    previous: Mapping[str, Any] | None, applied: Applied, outcome: Outcome
) -> list[ChangeRecord]:
    """The changes of ``outcome``'s snapshot, applied to ``previous`` with result ``applied``.
    ``observed_at``: its OrderEvents' (all equal); for a snapshot without orders, when it
    completed."""
    observed = next((o.value.get("observed_at") for o in outcome.orders), None)
    if observed is None and outcome.result is not None:
        observed = outcome.result.value["completed_at"]
    return order_changes(
        previous,
        applied,
        exchange=outcome.exchange,
        account=outcome.account,
        request_id=outcome.request_id,
        started_at=outcome.started_at,
        observed_at=int(observed or outcome.started_at),
    )


async def encode_changes(
    serializer: Serializer, topic: str, changes: Iterable[tuple[Outcome, list[ChangeRecord]]]
) -> list[Record]:
    """The records of each command's changes, keyed by order, with its headers."""
    records: list[Record] = []
    for outcome, recs in changes:
        ids = (("request_id", outcome.request_id), ("exchange", outcome.exchange),
               ("account", outcome.account), ("schema", ORDER_CHANGE))  # fmt: skip
        headers = [(k, utf8(v)) for k, v in ids]
        for change in recs:
            key = utf8(record_key(change["exchange"], change["account"], change["order_id"]))
            value = await serializer.encode(topic, ORDER_CHANGE, change)
            records.append(Record(topic, key, value, headers))
    return records
