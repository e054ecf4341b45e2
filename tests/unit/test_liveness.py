"""/healthz semantics without a broker: a dead agent actor or stuck pending work fails
liveness; an idle worker (nothing pending) stays alive however long it waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connector.accounts import Accounts
from connector.settings import Settings
from connector.worker import Connector


class Ref:
    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self.actor_task = task


class FakeAgent:
    def __init__(self, refs: list[Ref]) -> None:
        self.started = True
        self._actors = set(refs)


def connector(tmp_path: Any, **settings: Any) -> Connector:
    return Connector(
        Settings(data_dir=str(tmp_path), worker_concurrency=2, **settings), Accounts([]), {}
    )


async def test_dead_actor_fails_liveness(tmp_path: Any) -> None:
    c = connector(tmp_path)
    running = asyncio.create_task(asyncio.sleep(60))
    crashed = asyncio.create_task(asyncio.sleep(0))
    await crashed
    c.agent = FakeAgent([Ref(running), Ref(running)])  # type: ignore[assignment]
    assert c.alive() == (True, "ok")
    c.agent = FakeAgent([Ref(running), Ref(crashed)])  # type: ignore[assignment]
    ok, reason = c.alive()
    assert not ok and "dead" in reason
    running.cancel()


async def test_stuck_pending_work_fails_liveness_idle_does_not(tmp_path: Any) -> None:
    c = connector(tmp_path, liveness_stall_s=5)
    c._progress = time.monotonic() - 60  # no progress for a minute...
    assert c.alive()[0]  # ...but nothing pending: an idle worker is alive
    c._pending = 1
    ok, reason = c.alive()
    assert not ok and "pending" in reason
    c._beat()
    assert c.alive()[0]


async def test_agent_failure_fails_liveness(tmp_path: Any) -> None:
    c = connector(tmp_path)
    c._fatal = "agent failed: RuntimeError"
    assert c.alive() == (False, "agent failed: RuntimeError")


async def test_metric_labels_are_the_configured_venues(tmp_path: Any) -> None:
    from connector.model import Exchange

    c = Connector(
        Settings(data_dir=str(tmp_path)),
        Accounts([]),
        {Exchange.ASCENDEX: object()},  # type: ignore[dict-item]
    )
    assert c.venues == frozenset({"ascendex"})
