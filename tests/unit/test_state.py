"""State-topic logic (connector/state.py): upserts, tombstones, scopes, versions, repeats."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable
from typing import Any

import pytest

from connector.state import (
    AccountState,
    Snapshot,
    Version,
    apply_snapshot,
    open_orders,
    record_key,
    scope_key,
    scope_of,
    table_key,
    unpublished_tombstones,
    with_pending,
)

EX, ACC = "bitget", "follower-1"


def event(
    order_id: str, symbol: str = "BTCUSDT", request_id: str = "r", **extra: Any
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "symbol": symbol,
        "request_id": request_id,
        "account": ACC,
        **extra,
    }


def snap(
    version: Version | int,
    *orders: dict[str, Any],
    scope: dict[str, str] | None = None,
    complete: bool = True,
) -> Snapshot:
    v = (version, 0, 0) if isinstance(version, int) else version
    return Snapshot(EX, ACC, scope or {}, v, list(orders), complete)


def run(state: AccountState | None, *snaps: Snapshot) -> tuple[AccountState, list[tuple[str, Any]]]:
    """Apply in order; returns the final state and every record as (order_id, value or None)."""
    out: list[tuple[str, Any]] = []
    st: AccountState | None = state
    for s in snaps:
        applied = apply_snapshot(st, s)
        out += [(r.order_id, r.value) for r in applied.records]
        st = applied.state
    assert st is not None
    return st, out


def fold(records: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """What a compacted-topic reader ends with: last value per key, tombstones delete."""
    table: dict[str, Any] = {}
    for oid, value in records:
        if value is None:
            table.pop(oid, None)
        else:
            table[oid] = value
    return table


# --- keys and shapes -----------------------------------------------------------------------


def test_keys_and_scope_helpers() -> None:
    assert table_key(EX, ACC) == "bitget:follower-1"
    assert record_key(EX, ACC, "42") == "bitget:follower-1:42"
    assert scope_of({"symbol": None, "product_type": "USDT-FUTURES"}) == {
        "product_type": "USDT-FUTURES"
    }
    assert scope_key({"b": "2", "a": "1"}) == scope_key({"a": "1", "b": "2"})


def test_state_is_json_and_previous_is_not_modified() -> None:
    first = apply_snapshot(None, snap(1, event("a"), event("b"))).state
    frozen = json.dumps(first, sort_keys=True)
    second = apply_snapshot(first, snap(2, event("a"))).state
    assert json.dumps(first, sort_keys=True) == frozen
    assert json.loads(json.dumps(second)) == second


# --- upserts and tombstones ----------------------------------------------------------------


def test_added_changed_and_removed_orders_give_exact_upserts_and_tombstones() -> None:
    st, _ = run(None, snap(1, event("a", price="1"), event("b"), event("c")))
    applied = apply_snapshot(st, snap(2, event("a", price="2"), event("c"), event("d")))
    assert [(r.key, r.value) for r in applied.records] == [
        ("bitget:follower-1:a", event("a", price="2")),
        ("bitget:follower-1:c", event("c")),
        ("bitget:follower-1:d", event("d")),
        ("bitget:follower-1:b", None),
    ]
    assert set(open_orders(applied.state)) == {"a", "c", "d"}


def test_first_snapshot_upserts_everything_and_retires_nothing() -> None:
    applied = apply_snapshot(None, snap(1, event("a"), event("b")))
    assert [r.order_id for r in applied.upserts] == ["a", "b"] and applied.tombstones == []


def test_empty_snapshot_retires_every_open_order_of_the_scope() -> None:
    st, _ = run(None, snap(1, event("a"), event("b")))
    applied = apply_snapshot(st, snap(2))
    assert sorted(r.order_id for r in applied.tombstones) == ["a", "b"]
    assert open_orders(applied.state) == {}


def test_a_duplicate_order_in_one_snapshot_is_upserted_once_with_the_last_value() -> None:
    applied = apply_snapshot(None, snap(1, event("a", price="1"), event("a", price="2")))
    assert [(r.order_id, r.value) for r in applied.records] == [("a", event("a", price="2"))]


def test_failed_snapshot_changes_nothing() -> None:
    st, _ = run(None, snap(1, event("a"), event("b")))
    applied = apply_snapshot(st, snap(2, complete=False))
    assert applied.records == [] and applied.state == st


# --- scopes --------------------------------------------------------------------------------


def test_symbol_filtered_snapshot_retires_only_that_symbols_orders() -> None:
    st, _ = run(None, snap(1, event("a", "BTCUSDT"), event("b", "ETHUSDT"), event("c", "BTCUSDT")))
    applied = apply_snapshot(st, snap(2, event("c", "BTCUSDT"), scope={"symbol": "BTCUSDT"}))
    assert [r.order_id for r in applied.tombstones] == ["a"]
    assert set(open_orders(applied.state)) == {"b", "c"}


def test_unfiltered_snapshot_retires_orders_first_seen_by_a_filtered_one() -> None:
    st, _ = run(None, snap(1, event("a", "ETHUSDT"), scope={"symbol": "ETHUSDT"}))
    applied = apply_snapshot(st, snap(2, event("b", "BTCUSDT")))
    assert [r.order_id for r in applied.tombstones] == ["a"]


def test_venue_option_scope_retires_only_inside_it() -> None:
    usdt, coin = {"product_type": "USDT-FUTURES"}, {"product_type": "COIN-FUTURES"}
    st, _ = run(
        None,
        snap(1, event("u1", product_type="USDT-FUTURES"), scope=usdt),
        snap(2, event("c1", "BTCUSD", product_type="COIN-FUTURES"), scope=coin),
    )
    applied = apply_snapshot(st, snap(3, scope=usdt))
    assert [r.order_id for r in applied.tombstones] == ["u1"]
    assert set(open_orders(applied.state)) == {"c1"}


def test_scope_attribute_comes_from_the_snapshot_when_the_event_lacks_it() -> None:
    # The event carries no trader; the snapshot filtered by trader proves it.
    st, _ = run(None, snap(1, event("a"), scope={"trader_id": "T1"}))
    applied = apply_snapshot(st, snap(2, scope={"trader_id": "T1"}))
    assert [r.order_id for r in applied.tombstones] == ["a"]


def test_an_unknown_attribute_never_matches_so_nothing_is_wrongly_retired() -> None:
    st, _ = run(None, snap(1, event("a")))  # trader unknown
    applied = apply_snapshot(st, snap(2, scope={"trader_id": "T1"}))
    assert applied.tombstones == [] and set(open_orders(applied.state)) == {"a"}


def test_trader_attribute_is_read_from_the_copy_trading_record() -> None:
    st, _ = run(None, snap(1, event("a", copy_trading={"trader_id": "T1"}), event("b")))
    applied = apply_snapshot(st, snap(2, scope={"trader_id": "T1"}))
    assert [r.order_id for r in applied.tombstones] == ["a"]


# --- versions: concurrency -----------------------------------------------------------------


def test_older_snapshot_finishing_last_does_not_resurrect_a_retired_order() -> None:
    st, _ = run(None, snap(1, event("a"), event("b")))
    newer, older = snap(3, event("b")), snap(2, event("a"), event("b"))
    st, records = run(st, newer)
    assert records == [("b", event("b")), ("a", None)]
    late = apply_snapshot(st, older)
    assert late.records == [] and set(open_orders(late.state)) == {"b"}


def test_older_snapshot_finishing_last_does_not_retire_a_newer_order() -> None:
    st, _ = run(None, snap(1, event("a")))
    newer, older = snap(3, event("a"), event("n")), snap(2, event("a"))
    st, records = run(st, newer, older)
    assert set(open_orders(st)) == {"a", "n"}
    assert all(value is not None for _, value in records)


def test_older_snapshot_cannot_add_an_order_a_newer_one_did_not_list() -> None:
    # "z" closed between the two fetches; the state never saw it open before.
    newer, older = snap(3, event("a")), snap(2, event("a"), event("z"))
    st, records = run(None, newer, older)
    assert set(open_orders(st)) == {"a"} and "z" not in fold(records)


def test_newer_unfiltered_blocks_older_filtered_and_vice_versa() -> None:
    btc = {"symbol": "BTCUSDT"}
    # newer unfiltered, older BTC-only finishing last: its stale BTC order stays out
    st, _ = run(None, snap(5, event("e", "ETHUSDT")), snap(4, event("x", "BTCUSDT"), scope=btc))
    assert set(open_orders(st)) == {"e"}
    # newer BTC-only, older unfiltered finishing last: BTC rows untouched, ETH rows updated
    st, records = run(
        None,
        snap(5, event("b2", "BTCUSDT"), scope=btc),
        snap(4, event("b1", "BTCUSDT"), event("e1", "ETHUSDT")),
    )
    assert set(open_orders(st)) == {"b2", "e1"}
    assert fold(records) == {"b2": event("b2", "BTCUSDT"), "e1": event("e1", "ETHUSDT")}


def test_equal_start_times_are_ordered_by_the_tie_breaker() -> None:
    st, _ = run(None, snap((7, 1, 10), event("a")), snap((7, 0, 99), event("b")))
    # (7, 0, 99) < (7, 1, 10): the second is older and cannot add "b" (not listed by the newer)
    assert set(open_orders(st)) == {"a"}


# --- repeats -------------------------------------------------------------------------------


def test_reapplying_the_same_snapshot_is_idempotent_and_republishes_the_same_records() -> None:
    st, _ = run(None, snap(1, event("a"), event("b")))
    s2 = snap(2, event("a"), event("c"))
    first = apply_snapshot(st, s2)
    again = apply_snapshot(first.state, s2)
    assert again.state == first.state
    assert again.records == first.records


def test_retired_markers_are_pruned_after_the_retention() -> None:
    st, _ = run(None, snap(1, event("a")), snap(2))
    assert "a" in st["orders"]
    later = apply_snapshot(st, snap(10_000, event("b")), retain_ms=1_000).state
    assert "a" not in later["orders"]
    # ...and the scope version still keeps an older snapshot from resurrecting it.
    assert open_orders(apply_snapshot(later, snap(1_500, event("a")), retain_ms=1_000).state) == {
        "b": {"symbol": "BTCUSDT"}
    }


def test_unknown_state_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        apply_snapshot({"format": 99}, snap(1))


# --- property: any completion order ends in the truth of the newest covering snapshot -------

SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]


def _world(rng: random.Random) -> dict[str, tuple[str, int, int]]:
    """order id -> (symbol, opened_at, closed_at): the exchange's history, ids never reused."""
    orders = {}
    for i in range(rng.randint(0, 12)):
        opened = rng.randint(0, 40)
        orders[f"o{i}"] = (rng.choice(SYMBOLS), opened, opened + rng.randint(1, 40))
    return orders


def _snapshots(rng: random.Random, world: dict[str, tuple[str, int, int]]) -> list[Snapshot]:
    out = []
    for n, t in enumerate(sorted(rng.sample(range(1, 80), rng.randint(1, 8)))):
        scope = {} if rng.random() < 0.4 else {"symbol": rng.choice(SYMBOLS)}
        listed = [
            event(oid, sym, request_id=f"r{n}")
            for oid, (sym, opened, closed) in sorted(world.items())
            if opened <= t < closed and sym == scope.get("symbol", sym)
        ]
        rng.shuffle(listed)
        out.append(snap((t, rng.randint(0, 3), n), *listed, scope=scope))
    return out


def _expected(snaps: list[Snapshot]) -> dict[str, Any]:
    """Per order: the newest complete snapshot covering its symbol decides; its event is the value."""
    symbol_of = {str(e["order_id"]): str(e["symbol"]) for s in snaps for e in s.orders}
    expected = {}
    for oid, sym in symbol_of.items():
        covering = [s for s in snaps if s.complete and s.scope.get("symbol", sym) == sym]
        newest = max(covering, key=lambda s: s.version)
        listed = [e for e in newest.orders if e["order_id"] == oid]
        if listed:
            expected[oid] = listed[0]
    return expected


@pytest.mark.parametrize("seed", range(300))
def test_any_completion_order_with_repeats_and_failures_converges(seed: int) -> None:
    rng = random.Random(seed)
    world = _world(rng)
    snaps = _snapshots(rng, world)
    order = snaps[:]
    rng.shuffle(order)
    # repeats (crash re-delivery of the same outcome) and FAILED snapshots anywhere
    for _ in range(rng.randint(0, 3)):
        order.insert(rng.randint(0, len(order)), rng.choice(snaps))
    for _ in range(rng.randint(0, 2)):
        failed = snap((rng.randint(0, 99), 9, 9), event("ghost"), complete=False)
        order.insert(rng.randint(0, len(order)), failed)
    state, records = run(None, *order)
    expected = _expected(snaps)
    assert {oid: e for oid, e in fold(records).items()} == expected
    assert set(open_orders(state)) == set(expected)
    # The order in which they finished does not matter for the state either.
    in_version_order, _ = run(None, *sorted(snaps, key=lambda s: s.version))
    assert open_orders(in_version_order) == open_orders(state)


def test_scope_of_a_validated_command_includes_venue_defaults() -> None:
    from connector.commands import RawCommand, validate_command
    from connector.state import scope_of_query

    bitget = validate_command(RawCommand({"request_id": "r", "exchange": "bitget", "account": "f"}))
    assert scope_of_query(bitget) == {"product_type": "USDT-FUTURES"}
    asc = validate_command(
        RawCommand(
            {"request_id": "r", "exchange": "ascendex", "account": "d", "symbol": "BTC-PERP"}
        )
    )
    assert scope_of_query(asc) == {"symbol": "BTC-PERP"}


# --- publishing: the versions pending when a state is stored -------------------------------


def test_pending_names_the_versions_being_published_and_their_tombstones_only() -> None:
    st, _ = run(None, snap(1, event("a"), event("b"), event("c")))
    st, _ = run(st, snap(2, event("c")))  # a and b retired at version 2
    st, _ = run(st, snap(3, event("c"), event("d")))  # nothing retired at version 3
    assert unpublished_tombstones(st, EX, ACC) == []  # stored before "pending" existed
    assert unpublished_tombstones(with_pending(copy.deepcopy(st), [(3, 0, 0)]), EX, ACC) == []
    resend = unpublished_tombstones(with_pending(st, [(2, 0, 0), (3, 0, 0)]), EX, ACC)
    assert [(r.key, r.value) for r in resend] == [
        (record_key(EX, ACC, "a"), None),
        (record_key(EX, ACC, "b"), None),
    ]
    assert unpublished_tombstones(None, EX, ACC) == []


def test_pending_of_an_unconfirmed_state_is_carried_until_confirmed_and_pruned() -> None:
    previous = with_pending(run(None, snap(1, event("a")))[0], [(1, 0, 0)])
    st = with_pending(run(previous, snap(2))[0], [(2, 0, 0)], previous)
    assert st["pending"] == [[1, 0, 0], [2, 0, 0]]
    assert with_pending(run(st, snap(3))[0], [(3, 0, 0)])["pending"] == [[3, 0, 0]]
    day = 24 * 3600 * 1000
    late = with_pending(run(st, snap(day + 5))[0], [(day + 5, 0, 0)], st, retain_ms=day)
    assert late["pending"] == [[day + 5, 0, 0]]  # older than the retained markers: dropped
    assert json.loads(json.dumps(late)) == late
    assert "pending" not in apply_snapshot(st, snap(4)).state  # each store names its own
