"""Order changes (connector/changes.py): OPENED, CHANGED, CLOSED from the state logic's
transitions, with exact changed_fields, before and after; the records encode with the schema."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from connector import codec
from connector.changes import (
    COMPARED,
    VIEW_FIELDS,
    order_changes,
    stored_view,
    view_from_stored,
    view_of,
    with_views,
)
from connector.model import Order, OrderQuery, OrderStatus, OrderType, PositionSide, Side
from connector.pipeline import order_event
from connector.state import AccountState, Snapshot, Version, apply_snapshot

EX, ACC = "bitget", "f-1"
DECIMALS = {"price", "quantity", "filled_quantity", "remaining_quantity", "average_fill_price",
            "stop_price", "fee", "leverage", "margin"}  # fmt: skip


def event(order_id: str, observed_at: int = 1_000, **fields: Any) -> dict[str, Any]:
    """A real OrderEvent record (the pipeline's builder), with ``fields`` changed on the order."""
    base: dict[str, Any] = {
        "exchange": EX,
        "order_id": order_id,
        "symbol": "BTCUSDT",
        "raw": "{}",
        "status": OrderStatus.NEW,
        "price": "100",
        "quantity": "2",
        "filled_quantity": "0",
    }
    merged = {**base, **fields}
    enums = {"side": Side, "position_side": PositionSide, "order_type": OrderType}
    for name, value in merged.items():
        if name in enums and isinstance(value, str):
            merged[name] = enums[name](value)
        elif name in DECIMALS and isinstance(value, str):
            merged[name] = Decimal(value)
    order = Order(**merged)
    query = OrderQuery(request_id=f"r-{observed_at}", exchange=EX, account=ACC)
    return order_event(order, query, seq=1, size=1, observed_at=observed_at)


def step(
    state: AccountState | None,
    version: Version,
    orders: list[dict[str, Any]],
    scope: dict[str, str] | None = None,
    complete: bool = True,
) -> tuple[AccountState, list[dict[str, Any]]]:
    """Apply one snapshot as the worker will: apply, compute the changes, store the views."""
    snap = Snapshot(EX, ACC, scope or {}, version, orders, complete)
    applied = apply_snapshot(state, snap)
    changes = order_changes(
        state,
        applied,
        exchange=EX,
        account=ACC,
        request_id=f"r-{version[0]}",
        started_at=version[0],
        observed_at=version[0] + 50,
    )
    return with_views(applied), changes


def summary(changes: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(c["order_id"], c["change"], c["changed_fields"]) for c in changes]


def test_first_snapshot_opens_every_order_with_after_only() -> None:
    a, b = event("a"), event("b", price="101")
    _state, changes = step(None, (1_000, 0, 1), [a, b])
    assert summary(changes) == [("a", "OPENED", []), ("b", "OPENED", [])]
    first = changes[0]
    assert first["before"] is None and first["seen_open_at"] is None
    assert first["after"] == view_of(a)
    assert first["after"]["price"] == "100" and changes[1]["after"]["price"] == "101"
    assert first["detected_by"] == "r-1000" and first["snapshot_started_at"] == 1_000
    assert first["observed_at"] == a["observed_at"]
    assert {c["exchange"] for c in changes} == {EX} and {c["account"] for c in changes} == {ACC}


def test_the_same_orders_again_are_no_change_even_with_a_new_observed_at() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    _state, changes = step(state, (2_000, 0, 2), [event("a", 2_050), event("b", 2_050)])
    assert changes == []


def test_a_repeat_of_the_same_snapshot_produces_none() -> None:
    s0, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    snap = [event("a", 2_050, filled_quantity="1", status=OrderStatus.PARTIALLY_FILLED)]
    s1, first = step(s0, (2_000, 0, 2), snap)
    assert summary(first) == [("a", "CHANGED", ["status", "filled_quantity"]), ("b", "CLOSED", [])]
    _s2, again = step(s1, (2_000, 0, 2), snap)
    assert again == []


def test_a_partial_fill_names_exactly_the_fields_that_moved() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a")])
    filled = event(
        "a",
        2_050,
        status=OrderStatus.PARTIALLY_FILLED,
        filled_quantity="0.5",
        remaining_quantity="1.5",
        average_fill_price="99.5",
    )
    _state, (change,) = step(state, (2_000, 0, 2), [filled])
    assert change["change"] == "CHANGED"
    assert change["changed_fields"] == [
        "status",
        "filled_quantity",
        "remaining_quantity",
        "average_fill_price",
    ]
    assert change["before"]["status"] == "NEW" and change["after"]["status"] == "PARTIALLY_FILLED"
    assert (
        change["before"]["filled_quantity"] == "0" and change["after"]["filled_quantity"] == "0.5"
    )
    assert change["before"]["observed_at"] == 1_000 and change["after"]["observed_at"] == 2_050
    assert change["seen_open_at"] == 1_000  # the fetch that last listed it started then
    assert change["observed_at"] == 2_050


def test_each_compared_field_alone_is_a_change() -> None:
    amended: dict[str, dict[str, Any]] = {
        "side": {"side": "SELL"},
        "position_side": {"position_side": "LONG"},
        "order_type": {"order_type": "MARKET"},
        "status": {"status": OrderStatus.PENDING_NEW},
        "price": {"price": "100.5"},
        "stop_price": {"stop_price": "90"},
        "quantity": {"quantity": "3"},
        "filled_quantity": {"filled_quantity": "1"},
        "remaining_quantity": {"remaining_quantity": "1"},
        "average_fill_price": {"average_fill_price": "100"},
        "reduce_only": {"reduce_only": True},
        "post_only": {"post_only": True},
        "liquidation": {"liquidation": True},
        "exec_instructions": {"exec_instructions": ("Post",)},
    }
    assert set(amended) == set(COMPARED)
    for name, fields in amended.items():
        state, _ = step(None, (1_000, 0, 1), [event("a", side="BUY", order_type="LIMIT")])
        changed = event("a", 2_050, **{"side": "BUY", "order_type": "LIMIT", **fields})
        _state, changes = step(state, (2_000, 0, 2), [changed])
        assert summary(changes) == [("a", "CHANGED", [name])], name


def test_fields_outside_the_view_are_not_changes() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a")])
    noise = event("a", 2_050, fee="0.1", leverage="20", margin="5", updated_at=1_999, raw="{1}")
    _state, changes = step(state, (2_000, 0, 2), [noise])
    assert changes == []


def test_an_order_no_longer_listed_closes_with_its_last_view() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("b", price="7")])
    state, _ = step(state, (2_000, 0, 2), [event("a", 2_050), event("b", 2_050, price="8")])
    _state, changes = step(state, (3_000, 0, 3), [event("a", 3_050)])
    assert summary(changes) == [("b", "CLOSED", [])]
    (closed,) = changes
    assert closed["after"] is None
    assert closed["before"] == view_of(event("b", 2_050, price="8"))
    assert closed["seen_open_at"] == 2_000  # closed after that fetch started...
    assert closed["observed_at"] == 3_050  # ...and before this snapshot was received
    assert closed["detected_by"] == "r-3000" and closed["snapshot_started_at"] == 3_000


def test_an_empty_snapshot_closes_everything_with_the_given_observed_at() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    _state, changes = step(state, (2_000, 0, 2), [])
    assert summary(changes) == [("a", "CLOSED", []), ("b", "CLOSED", [])]
    assert {c["observed_at"] for c in changes} == {2_050}


def test_a_reopened_order_is_opened_again() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a")])
    state, _ = step(state, (2_000, 0, 2), [])
    _state, changes = step(state, (3_000, 0, 3), [event("a", 3_050)])
    assert summary(changes) == [("a", "OPENED", [])]
    assert changes[0]["before"] is None and changes[0]["seen_open_at"] is None


def test_a_failed_snapshot_changes_nothing() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a")])
    after, changes = step(state, (2_000, 0, 2), [], complete=False)
    assert changes == [] and after["orders"] == state["orders"]


def test_a_filtered_snapshot_closes_only_inside_its_scope() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("e", symbol="ETHUSDT")])
    _state, changes = step(state, (2_000, 0, 2), [], scope={"symbol": "ETHUSDT"})
    assert summary(changes) == [("e", "CLOSED", [])]


def test_an_older_snapshot_finishing_last_reports_only_what_the_state_logic_let_it_change() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a")])
    state, newer = step(state, (3_000, 0, 3), [event("a", 3_050, price="105")])
    assert summary(newer) == [("a", "CHANGED", ["price"])]
    # The snapshot started at 2_000 finishes now: it neither reverts the price nor reopens.
    _state, older = step(state, (2_000, 0, 2), [event("a", 2_050, price="102"), event("z")])
    assert older == []


def test_a_state_stored_before_views_records_them_without_reporting_changes() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    legacy = json.loads(json.dumps(state))
    for entry in legacy["orders"].values():
        del entry["f"]
    state, changes = step(legacy, (2_000, 0, 2), [event("a", 2_050, price="1")])
    assert summary(changes) == [("b", "CLOSED", [])]  # known open, no view: before is null
    assert changes[0]["before"] is None and changes[0]["seen_open_at"] == 1_000
    _state, changes = step(state, (3_000, 0, 3), [event("a", 3_050, price="2")])
    assert summary(changes) == [("a", "CHANGED", ["price"])]  # compared from now on
    assert changes[0]["before"]["price"] == "1"


def test_views_are_stored_per_open_order_only_and_the_previous_state_is_untouched() -> None:
    s0, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    frozen = json.dumps(s0, sort_keys=True)
    s1, _ = step(s0, (2_000, 0, 2), [event("a", 2_050, price="9")])
    assert json.dumps(s0, sort_keys=True) == frozen
    assert "f" not in s1["orders"]["b"]  # retired: its view is dropped
    assert view_from_stored(s1["orders"]["a"]["f"]) == view_of(event("a", 2_050, price="9"))
    assert json.loads(json.dumps(s1)) == s1  # still a JSON value


def test_the_stored_view_is_compact_and_versioned() -> None:
    e = event("a", exec_instructions=("Post",), reduce_only=True)
    stored = stored_view(e)
    assert stored[0] == 1 and len(stored) == len(VIEW_FIELDS) + 1
    assert len(json.dumps(stored, separators=(",", ":"))) < 200
    assert view_from_stored(stored) == view_of(e)
    assert view_from_stored([2, *stored[1:]]) is None  # another format: no view
    assert view_from_stored(None) is None and view_from_stored(stored[:-1]) is None


def test_change_records_encode_with_the_schema_and_decode_back() -> None:
    state, _ = step(None, (1_000, 0, 1), [event("a"), event("b")])
    _state, changes = step(state, (2_000, 0, 2), [event("a", 2_050, price="3")])
    kinds = {c["change"] for c in changes}
    assert kinds == {"CHANGED", "CLOSED"}
    opened = step(None, (5_000, 0, 5), [event("c")])[1]
    for change in [*changes, *opened]:
        data = codec.encode_single_object(codec.ORDER_CHANGE, change)
        name, decoded = codec.decode_single_object(data)
        assert name == codec.ORDER_CHANGE
        assert codec.to_plain(decoded) == change
