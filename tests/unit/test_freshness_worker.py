"""Freshness as data in the worker, without a broker: the account-status records
(connector/worker/account_status.py) from answered commands and from the clock, stored before
they are published; and the order-changes records the state writer publishes after a
snapshot's state records (connector/worker/order_changes.py). Doubles: InMemoryStatusStore,
InMemoryStateStore, InMemoryPublisher; records decoded with the connector's codec."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connector.account import Account, Accounts
from connector.codec import ACCOUNT_STATUS, ORDER_CHANGE, Serializer, to_plain
from connector.devstack import wait_until
from connector.model import OrderQuery, now_ms
from connector.pipeline import Outcome, OutputRecord
from connector.schedules import Schedule
from connector.secrets import Secret
from connector.settings import Settings
from connector.state import table_key
from connector.worker.account_status import AccountStatuses, InMemoryStatusStore, stale_bounds
from connector.worker.outages import Outages
from connector.worker.publisher import InMemoryPublisher
from connector.worker.state_store import InMemoryStateStore
from connector.worker.state_writer import StateWriter

ACC, IDLE, OFF = "desk-1", "desk-idle", "desk-off"
KEY = table_key("bitget", ACC)
T = 0  # each test's fetches start at T + n, T set just before it runs (well within the bound)
SETTINGS = Settings(account_stale_after_s=60, topic_partitions=1)


@pytest.fixture(autouse=True)
def recent() -> None:
    global T
    T = now_ms() - 10


def accounts() -> Accounts:
    def account(alias: str, exchange: str) -> Account:
        return Account(alias, exchange, Secret("k"), Secret("s"), Secret("p"))

    # OFF: in the accounts file, not loaded: its venue is disabled (accounts_file.py)
    return Accounts([account(ACC, "bitget"), account(IDLE, "bitget")], [("ascendex", OFF)])


def statuses(publisher: InMemoryPublisher, store: InMemoryStatusStore) -> AccountStatuses:
    return AccountStatuses(
        SETTINGS, accounts(), store, publisher, Outages(0.01), Serializer(),
        disabled={"ascendex"},
    )  # fmt: skip


def answered(
    n: int, ok: bool = True, orders: int = 2, code: str = "TIMEOUT", symbol: str | None = None
) -> Outcome:
    """Command ``n`` of the account, its fetch started at ``T + n``."""
    rid = f"r{n}"
    result = {"request_id": rid, "exchange": "bitget", "account": ACC, "symbol": symbol,
              "status": "OK" if ok else "FAILED", "order_count": orders if ok else 0,
              "error_code": None if ok else code, "started_at": T + n}  # fmt: skip
    error = None if ok else OutputRecord("errors", KEY, "ErrorEvent",
                                          {"code": code, "message": "venue\n  slow"}, {})  # fmt: skip
    query = (
        OrderQuery(request_id=rid, exchange="bitget", account=ACC, symbol=symbol) if ok else None
    )
    return Outcome(rid, "bitget", ACC, ok, [], error,
                   OutputRecord("results", KEY, "QueryResult", result, {}), query=query,
                   started_at=T + n)  # fmt: skip


async def published(publisher: InMemoryPublisher, topic: str) -> list[tuple[str, dict[str, Any]]]:
    serializer = Serializer()
    out = []
    for r in publisher.sent:
        if r.topic == topic:
            assert r.key is not None and r.value is not None
            schema, value = await serializer.decode(r.value)
            out.append((r.key.decode(), {"schema": schema, **to_plain(value)}))
    return out


async def test_ok_fresh_then_failing_keeps_as_of_and_own_mistakes_change_nothing() -> None:
    publisher, store = InMemoryPublisher(), InMemoryStatusStore()
    s = statuses(publisher, store)
    await s.after_command(answered(1))
    await s.after_command(answered(2, ok=False))
    await s.after_command(answered(3, ok=False, code="INVALID_COMMAND"))
    await s.after_command(answered(4, ok=False))  # the same status, one more failure
    records = await published(publisher, SETTINGS.topic_account_status)
    assert [k for k, _ in records] == [KEY] * 3
    first, failing, again = (v for _, v in records)
    assert first["schema"] == ACCOUNT_STATUS
    assert (first["status"], first["as_of"], first["as_of_request_id"], first["open_orders"]) == (
        "FRESH", T + 1, "r1", 2)  # fmt: skip
    assert (failing["status"], failing["as_of"], failing["consecutive_failures"]) == (
        "FAILING", T + 1, 1)  # fmt: skip
    assert failing["last_error_code"] == "TIMEOUT" and failing["last_error_message"] == "venue slow"
    assert again["consecutive_failures"] == 2
    assert store.records[KEY]["consecutive_failures"] == 2  # stored: what was published last
    headers = dict(publisher.sent[-1].headers)
    assert headers["request_id"] == b"r4" and headers["schema"] == ACCOUNT_STATUS.encode()


async def test_a_symbol_filtered_snapshot_does_not_move_as_of() -> None:
    publisher, store = InMemoryPublisher(), InMemoryStatusStore()
    s = statuses(publisher, store)
    await s.after_command(answered(1))
    await s.after_command(answered(2, orders=7, symbol="BTCUSDT"))
    assert store.records[KEY]["as_of"] == T + 1 and store.records[KEY]["open_orders"] == 2


async def test_the_clock_publishes_unknown_disabled_then_stale_once() -> None:
    publisher, store = InMemoryPublisher(), InMemoryStatusStore()
    s = statuses(publisher, store)
    await s.after_command(answered(1))
    await s.tick({0}, now=T + 2)
    await s.tick({0}, now=T + 3)  # nothing changed: nothing published
    records = dict(await published(publisher, SETTINGS.topic_account_status))
    assert records[table_key("bitget", IDLE)]["status"] == "UNKNOWN"
    assert records[table_key("ascendex", OFF)]["status"] == "DISABLED"
    assert len(publisher.sent) == 3
    by_status = {"exchange": "bitget", "status": "FRESH"}
    assert REGISTRY.get_sample_value("connector_accounts_by_status", by_status) == 1
    age = {"exchange": "bitget", "account": ACC}
    assert REGISTRY.get_sample_value("connector_account_as_of_age_seconds", age) == pytest.approx(
        0.002
    )

    await s.tick({0}, now=T + 1 + 60_000)  # exactly at the bound: still FRESH
    await s.tick({0}, now=T + 1 + 60_001)
    await s.tick({0}, now=T + 1 + 90_000)
    stale = [v for k, v in await published(publisher, SETTINGS.topic_account_status) if k == KEY]
    assert [v["status"] for v in stale] == ["FRESH", "STALE"]
    assert dict(publisher.sent[-1].headers)["request_id"] == b"r1"  # the account's last snapshot
    assert REGISTRY.get_sample_value("connector_accounts_by_status", by_status) == 0

    await s.tick(set(), now=T + 1 + 90_000)  # the partition went elsewhere
    assert REGISTRY.get_sample_value("connector_account_as_of_age_seconds", age) is None


async def test_a_restored_record_is_continued_not_repeated() -> None:
    publisher, store = InMemoryPublisher(), InMemoryStatusStore()
    await statuses(publisher, store).tick({0}, now=5)
    again = InMemoryPublisher()
    await statuses(again, store).tick({0}, now=6)  # a new worker over the restored table
    assert again.sent == []


def test_stale_bound_of_a_scheduled_account_is_a_multiple_of_its_interval() -> None:
    schedules = [Schedule(exchange="bitget", account=ACC, interval_s=10),
                 Schedule(exchange="bitget", account=ACC, symbol="X", interval_s=30)]  # fmt: skip
    assert stale_bounds(Settings(schedule_stale_factor=3), schedules) == {KEY: 30_000}


async def test_order_changes_follow_the_state_records_exactly_once() -> None:
    publisher = InMemoryPublisher()
    writer = StateWriter(
        InMemoryStateStore(), publisher, Outages(0.01), Serializer(), "open-orders", frozenset(),
        changes_topic="order-changes",
    )  # fmt: skip

    def snapshot(n: int, **prices: str) -> Outcome:
        rid = f"r{n}"
        orders = [OutputRecord("orders", f"bitget:{ACC}:{oid}", "OrderEvent",
                               {"order_id": oid, "symbol": "BTCUSDT", "price": price,
                                "status": "NEW", "observed_at": 2_000 + n}, {})
                  for oid, price in prices.items()]  # fmt: skip
        query = OrderQuery(request_id=rid, exchange="bitget", account=ACC)
        return Outcome(rid, "bitget", ACC, True, orders, query=query, started_at=10_000 * n)

    for n, prices in (
        (1, {"a": "1", "b": "2"}),
        (2, {"b": "3", "c": "4"}),
        (2, {"b": "3", "c": "4"}),
    ):
        out = snapshot(n, **prices)  # the last: the same snapshot again
        await writer.publish_state(out, (0, n), {id(r.value): b"event" for r in out.orders})
    changes = await published(publisher, "order-changes")
    assert [(k.rsplit(":", 1)[1], v["change"], v["detected_by"]) for k, v in changes] == [
        ("a", "OPENED", "r1"), ("b", "OPENED", "r1"),
        ("b", "CHANGED", "r2"), ("c", "OPENED", "r2"), ("a", "CLOSED", "r2"),
    ]  # fmt: skip
    changed = changes[2][1]
    assert changed["schema"] == ORDER_CHANGE and changed["changed_fields"] == ["price"]
    assert (changed["before"]["price"], changed["after"]["price"]) == ("2", "3")
    assert changed["seen_open_at"] == 10_000 and changed["snapshot_started_at"] == 20_000
    closed = changes[4][1]
    assert closed["before"]["price"] == "1" and closed["after"] is None
    # Each snapshot's changes come after its state records.
    topics = publisher.topics()
    assert topics.index("order-changes") > topics.index("open-orders")
    assert topics[-1] == "open-orders"  # the repeat: state records again, no changes


async def test_attempts_waiting_for_the_account_are_written_together() -> None:
    publisher, store = InMemoryPublisher(), InMemoryStatusStore()
    s = statuses(publisher, store)
    publisher.gate = asyncio.Event()
    first = asyncio.create_task(s.after_command(answered(1)))
    await publisher.sending.wait()  # the first holds the account's lock, its record in flight
    waiting = [asyncio.create_task(s.after_command(answered(n, ok=False))) for n in (2, 3)]
    await wait_until(lambda: s.queued(KEY) == 2, timeout=5, what="both attempts queued")
    publisher.gate.set()
    await asyncio.gather(first, *waiting)
    records = await published(publisher, SETTINGS.topic_account_status)
    assert [(v["status"], v["consecutive_failures"]) for _, v in records] == [
        ("FRESH", 0), ("FAILING", 2)]  # fmt: skip
    assert dict(publisher.sent[-1].headers)["request_id"] == b"r3"
