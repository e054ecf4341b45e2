"""Order changes between snapshots: OPENED, CHANGED, CLOSED records. Pure, no Kafka.

The open-orders table says what is open; a risk engine that reacts to *changes* (a fill, a price
amended, an order gone) would otherwise have to diff every snapshot itself. The connector already
does that diff for the state topic (connector/state.py), so it says what it found: one
``OrderChange`` record (``avro/OrderChange.avsc``, topic ``order-changes``, key
``<exchange>:<account>:<order_id>``) per order that opened, changed or closed.

From the state logic's transitions
----------------------------------
:func:`connector.state.apply_snapshot` decides which orders a complete snapshot upserts and
which it retires, with every rule about scopes, versions, older snapshots finishing late and
repeats. This module never second-guesses it; it reads its result (:class:`~connector.state.
Applied`) against the state before (``previous``):

* an **upsert** of an order that was not open before: ``OPENED`` (``after`` set);
* an upsert of an order that was open: ``CHANGED`` when a field of :data:`COMPARED` differs
  from the stored view (``changed_fields`` names them, ``before`` and ``after`` are both set);
  nothing otherwise: ``observed_at`` moving on, or any field outside :data:`COMPARED` (fees,
  margin, the raw JSON), is not a change;
* a **tombstone** of an order that was open: ``CLOSED`` (``before`` is its last view);
* a tombstone of an order already retired (a repeat of the same snapshot): nothing.

So a repeat of a snapshot produces none (its upserts equal the stored views, its tombstones
find the orders retired), and a snapshot older than the stored state produces only what the
state logic let it change.

What is stored per open order
-----------------------------
To tell what changed, the previous values must be kept: the **view** of each open order (the
fields of ``OrderView``, a subset of OrderEvent's: what a change is about), stored compactly in
the order's entry of the account state as ``"f": [VIEW_FORMAT, value, ...]`` in
:data:`VIEW_FIELDS` order (:func:`with_views`). About 120-200 bytes of JSON per open order (no
``raw``, no ids, no copy-trading block); retired orders keep none (their entries are replaced
by the state logic), so the size is bounded by the open orders. The entries of orders a
snapshot does not touch are carried over by the state logic unchanged, views included.

A state stored before views existed (or with another ``VIEW_FORMAT``) has none: the first
snapshot after the upgrade then records the views and reports no ``CHANGED`` for those orders
(nothing to compare with), and a ``CLOSED`` of such an order has ``before`` null.

``seen_open_at`` needs no storage: it is the stored version's ``started_at`` (the last snapshot
that listed the order).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .state import Applied

OPENED, CHANGED, CLOSED = "OPENED", "CHANGED", "CLOSED"

ChangeRecord = dict[str, Any]
"""An ``orderconnector.OrderChange`` record (field names of ``avro/OrderChange.avsc``)."""

#: The fields of ``OrderView``, in schema order (each an OrderEvent field of the same type).
VIEW_FIELDS: tuple[str, ...] = (
    "symbol",
    "product_type",
    "side",
    "position_side",
    "order_type",
    "status",
    "price",
    "stop_price",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "average_fill_price",
    "reduce_only",
    "post_only",
    "liquidation",
    "exec_instructions",
    "observed_at",
)
#: The fields whose difference is a change (``observed_at`` and the order's identity are not).
COMPARED: tuple[str, ...] = tuple(
    f for f in VIEW_FIELDS if f not in ("symbol", "product_type", "observed_at")
)
VIEW_FORMAT = 1
_DEFAULTS: dict[str, Any] = {
    "status": "UNKNOWN",
    "reduce_only": False,
    "post_only": False,
    "liquidation": False,
    "exec_instructions": [],
}


def view_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``OrderView`` of an OrderEvent record."""
    view = {name: event.get(name, _DEFAULTS.get(name)) for name in VIEW_FIELDS}
    view["exec_instructions"] = list(view["exec_instructions"] or [])
    return view


def stored_view(event: Mapping[str, Any]) -> list[Any]:
    """The compact form of an order's view kept in the account state (``"f"``)."""
    view = view_of(event)
    return [VIEW_FORMAT, *(view[name] for name in VIEW_FIELDS)]


def view_from_stored(stored: Any) -> dict[str, Any] | None:
    """The view kept by :func:`stored_view`; None when there is none (or of another format)."""
    if not isinstance(stored, list) or not stored or stored[0] != VIEW_FORMAT:
        return None
    if len(stored) != len(VIEW_FIELDS) + 1:
        return None
    return dict(zip(VIEW_FIELDS, stored[1:], strict=True))


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The :data:`COMPARED` fields whose values differ, in :data:`VIEW_FIELDS` order."""
    return [name for name in COMPARED if before.get(name) != after.get(name)]


def order_changes(
    previous: Mapping[str, Any] | None,
    applied: Applied,
    *,
    exchange: str,
    account: str,
    request_id: str,
    started_at: int,
    observed_at: int,
) -> list[ChangeRecord]:
    """The OrderChange records of one applied snapshot, in the order of its state records
    (upserts in snapshot order, then tombstones by order id).

    ``previous``: the account state the snapshot was applied to (None for none);
    ``applied``: what :func:`connector.state.apply_snapshot` returned for it;
    ``request_id``, ``started_at``, ``observed_at``: the snapshot's request id, when its fetch
    started and when it was received (its QueryResult's ``request_id``, ``started_at`` and its
    OrderEvents' ``observed_at``; for a snapshot without orders, its ``completed_at``).
    """
    before_orders: Mapping[str, Any] = (previous or {}).get("orders", {})
    out: list[ChangeRecord] = []
    for rec in applied.records:
        entry = before_orders.get(rec.order_id)
        was_open = bool(entry and entry["open"])
        before = view_from_stored(entry.get("f")) if entry and was_open else None
        seen_open_at = int(entry["v"][0]) if entry and was_open else None
        after: dict[str, Any] | None
        fields: list[str] = []
        if rec.value is None:  # a tombstone
            if not was_open:
                continue  # retired already: a repeat
            kind, after = CLOSED, None
        elif not was_open:
            kind, after = OPENED, view_of(rec.value)
        else:
            if before is None:
                continue  # no view kept (a state from before views): nothing to compare
            after = view_of(rec.value)
            fields = changed_fields(before, after)
            if not fields:
                continue
            kind = CHANGED
        out.append(
            {
                "exchange": exchange,
                "account": account,
                "order_id": rec.order_id,
                "change": kind,
                "changed_fields": fields,
                "before": before,
                "after": after,
                "detected_by": request_id,
                "snapshot_started_at": started_at,
                "observed_at": after["observed_at"] if after is not None else observed_at,
                "seen_open_at": seen_open_at,
            }
        )
    return out


def with_views(applied: Applied) -> dict[str, Any]:
    """``applied.state`` with the view of every upserted order stored in its entry (what the
    next snapshot is compared with). The entries are replaced, never modified: the state logic
    shares unchanged entries with the previous state."""
    state = applied.state
    orders: dict[str, Any] = state["orders"]
    for rec in applied.records:
        if rec.value is not None:
            orders[rec.order_id] = {**orders[rec.order_id], "f": stored_view(rec.value)}
    return state
