"""Freshness as data through the broker: the worker's ``account-status`` and ``order-changes``
records (docs/contract.md), with the Bitget simulator's book changed between snapshots
(``POST /__sandbox/orders``) and its answers failed on demand (``POST /__sandbox/faults``).

An account's status record is published after the state records and the order changes of the
snapshot it describes, so once a status naming a snapshot is on the topic, that snapshot's
changes are too (the barrier below). Values decode with Apache Avro from the ``.avsc`` alone.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import httpx
import pytest

from connector.client import Decoded
from connector.settings import Settings
from connector.statusview import read_account_status, status_line

from .harness import (
    Answer,
    Collector,
    Commands,
    Outputs,
    Stack,
    Worker,
    free_port,
    rid,
    start_worker,
    wait_ready,
)

pytestmark = pytest.mark.integration

AVRO = Path(__file__).resolve().parents[2] / "avro"
ACC = "bitget-demo"
KEY = f"bitget:{ACC}"


def apache(name: str, raw: bytes) -> dict[str, Any]:
    """A value decoded by Apache Avro from ``avro/<name>.avsc`` alone (after the framing)."""
    reader = avro.io.DatumReader(avro.schema.parse((AVRO / f"{name}.avsc").read_text()))
    value: dict[str, Any] = reader.read(avro.io.BinaryDecoder(io.BytesIO(raw[10:])))
    return value


@dataclass
class Freshness(Collector):
    """Every record of the run's account-status and order-changes topics, decoded."""

    statuses: list[Decoded] = field(default_factory=list)
    changes: list[Decoded] = field(default_factory=list)
    raw: dict[int, bytes] = field(default_factory=dict)

    def topics(self) -> list[str]:
        return [self.settings.topic_account_status, self.settings.topic_order_changes]

    def keep(self, msg: Any, decoded: Decoded) -> None:
        self.raw[id(decoded)] = msg.value
        if msg.topic == self.settings.topic_account_status:
            self.statuses.append(decoded)
        else:
            self.changes.append(decoded)

    async def status(
        self, key: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> Decoded:
        """The first status record of ``key`` that satisfies ``predicate`` (waits for it)."""

        def found() -> Decoded | None:
            return next((d for d in self.statuses if d.key == key and predicate(d.value)), None)

        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: found() is not None), timeout)
        record = found()
        assert record is not None
        return record

    def changes_of(self, request_id: str) -> dict[str, dict[str, Any]]:
        """Order id -> change record detected by one snapshot (each order at most once)."""
        out: dict[str, dict[str, Any]] = {}
        for d in self.changes:
            if d.value["detected_by"] == request_id:
                assert d.value["order_id"] not in out, "one change per order and snapshot"
                assert d.key == f"{KEY}:{d.value['order_id']}"
                out[d.value["order_id"]] = d.value
        return out


@pytest.fixture
async def fresh(worker: Worker, settings: Settings) -> AsyncIterator[Freshness]:
    f = Freshness(settings)
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def base(sandbox: dict[str, str], control: httpx.AsyncClient) -> str:
    url = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{url}/__sandbox/reset")).raise_for_status()
    return url


async def snapshot(commands: Commands, outputs: Outputs, tag: str) -> tuple[str, Answer]:
    request_id = await commands.send(request_id=rid(tag), exchange="bitget", account=ACC)
    return request_id, await outputs.answer(request_id)


async def fresh_after(
    commands: Commands, outputs: Outputs, fresh: Freshness, tag: str
) -> tuple[str, Answer, Decoded]:
    """An OK snapshot and the FRESH status naming it (so its changes are all out)."""
    request_id, answer = await snapshot(commands, outputs, tag)
    assert answer.result["status"] == "OK"
    status = await fresh.status(KEY, lambda v: v["as_of_request_id"] == request_id)
    return request_id, answer, status


async def test_an_answered_account_is_fresh_as_of_its_fetch_start(
    commands: Commands, outputs: Outputs, fresh: Freshness, base: str
) -> None:
    request_id, answer, status = await fresh_after(commands, outputs, fresh, "fr-ok")
    assert status.headers["request_id"] == request_id
    assert status.value["status"] == "FRESH"
    assert status.value["as_of"] == answer.result["started_at"]
    assert status.value["open_orders"] == answer.result["order_count"] == len(answer.orders) > 0
    assert status.value["consecutive_failures"] == 0 and status.value["last_error_code"] is None
    decoded = apache("AccountStatus", fresh.raw[id(status)])
    assert (decoded["status"], decoded["as_of_request_id"]) == ("FRESH", request_id)
    # `connector state --format summary` prints this line above the orders.
    record = await read_account_status(fresh.settings, "bitget", ACC)
    assert record is not None and status_line(record).startswith("status: FRESH; as of ")


async def test_a_changed_book_gives_opened_changed_closed_once(
    commands: Commands, outputs: Outputs, fresh: Freshness, base: str, control: httpx.AsyncClient
) -> None:
    await fresh_after(commands, outputs, fresh, "fr-base")
    rows = (await control.get(f"{base}/__sandbox/orders", params={"account": ACC})).json()["rows"]
    changed = next(r for r in rows if "openAvgPrice" in r)
    gone, same = [r for r in rows if r is not changed]
    new = {**same, "trackingNo": "1170000000000008888", "openOrderId": "1180000000000008888"}
    change = {"account": ACC, "remove": [gone["trackingNo"]],
              "upsert": [{**changed, "openAvgPrice": "23456.5"}, new]}  # fmt: skip
    (await control.post(f"{base}/__sandbox/orders", json=change)).raise_for_status()

    detected, answer, _ = await fresh_after(commands, outputs, fresh, "fr-change")
    barrier, _, _ = await fresh_after(commands, outputs, fresh, "fr-barrier")
    changes = fresh.changes_of(detected)
    assert {oid: c["change"] for oid, c in changes.items()} == {
        changed["trackingNo"]: "CHANGED",
        new["trackingNo"]: "OPENED",
        gone["trackingNo"]: "CLOSED",
    }
    c = changes[changed["trackingNo"]]
    assert c["changed_fields"] == ["price"]
    assert c["before"]["price"] == changed["openAvgPrice"] and c["after"]["price"] == "23456.5"
    assert c["snapshot_started_at"] == answer.result["started_at"]
    assert c["seen_open_at"] is not None and c["seen_open_at"] < c["snapshot_started_at"]
    opened, closed = changes[new["trackingNo"]], changes[gone["trackingNo"]]
    assert opened["before"] is None and opened["after"]["symbol"] == new["symbol"]
    assert closed["after"] is None and closed["before"]["symbol"] == gone["symbol"]
    # Once: the next snapshot of the same book changes nothing.
    assert fresh.changes_of(barrier) == {}
    raw = next(fresh.raw[id(d)] for d in fresh.changes if d.value["detected_by"] == detected)
    assert apache("OrderChange", raw)["detected_by"] == detected


async def test_a_failing_account_keeps_its_as_of(
    commands: Commands, outputs: Outputs, fresh: Freshness, base: str, control: httpx.AsyncClient
) -> None:
    ok, answer, _ = await fresh_after(commands, outputs, fresh, "fr-before-fail")
    faults = await control.post(f"{base}/__sandbox/faults", json={"fail_next": 100})
    faults.raise_for_status()
    failed, failed_answer = await snapshot(commands, outputs, "fr-fail")
    assert failed_answer.result["status"] == "FAILED"
    status = await fresh.status(KEY, lambda v: v["last_attempt_at"] is not None
                                and v["consecutive_failures"] > 0
                                and v["as_of_request_id"] == ok)  # fmt: skip
    assert status.headers["request_id"] == failed
    assert status.value["status"] == "FAILING"
    assert status.value["as_of"] == answer.result["started_at"]
    assert status.value["last_error_code"] == failed_answer.result["error_code"]

    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    _, _, again = await fresh_after(commands, outputs, fresh, "fr-after-fail")
    assert again.value["status"] == "FRESH" and again.value["consecutive_failures"] == 0


async def test_configured_accounts_are_unknown_or_disabled_after_start(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    """A worker of its own (fresh topics and table), with AscendEX switched off: its accounts
    are DISABLED, a never-queried Bitget account UNKNOWN, without any command."""
    stack = await isolated_stack("fresh-start", CONNECTOR_ASCENDEX_ENABLED="false")
    f = Freshness(stack.settings)
    await f.start()
    try:
        unknown = await f.status("bitget:bitget-empty", lambda v: True)
        disabled = await f.status("ascendex:ascendex-demo", lambda v: True)
        assert unknown.value["status"] == "UNKNOWN" and unknown.value["as_of"] is None
        assert disabled.value["status"] == "DISABLED"
        assert unknown.value["stale_after_ms"] == stack.settings.account_stale_after_ms
        assert "request_id" not in unknown.headers  # caused by no command
    finally:
        await f.stop()


async def test_a_restarted_worker_continues_from_the_stored_status(
    isolated_stack: Callable[..., Awaitable[Stack]],
    base: str,
    control: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """SIGKILL after a FRESH status, start a new worker with an empty data directory: it
    recovers the status from the state table's changelog (key ``<exchange>:<account>|status``),
    so a failure then is FAILING with the old as_of, not STALE for want of a snapshot, and no
    UNKNOWN is published again. The embedded broker needs
    CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE=1 for table recovery (README "Development setup")."""
    stack = await isolated_stack("fresh-restart", CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE="1")
    f = Freshness(stack.settings)
    await f.start()
    try:
        ok, answer, fresh_status = await fresh_after(stack.commands, stack.outputs, f, "fr-kill")
        stack.worker.proc.kill()
        await asyncio.to_thread(stack.worker.proc.wait, 30)
        env = {**stack.env, "CONNECTOR_WEB_PORT": str(free_port()),
               "CONNECTOR_DATA_DIR": str(tmp_path / "data-restart-2")}  # fmt: skip
        stack.worker = start_worker(env, tmp_path / "worker-restart-2.log")
        await wait_ready(stack.worker)

        faults = await control.post(f"{base}/__sandbox/faults", json={"fail_next": 100})
        faults.raise_for_status()
        failed, failed_answer = await snapshot(stack.commands, stack.outputs, "fr-after-kill")
        assert failed_answer.result["status"] == "FAILED"
        status = await f.status(KEY, lambda v: v["consecutive_failures"] > 0)
        assert status.headers["request_id"] == failed
        assert (status.value["status"], status.value["as_of"]) == (
            "FAILING", answer.result["started_at"])  # fmt: skip
        assert status.value["as_of_request_id"] == ok
        after = f.statuses[f.statuses.index(fresh_status) + 1 :]
        assert [d.value["status"] for d in after if d.key == KEY] == ["FAILING"]
    finally:
        await f.stop()
