"""Commands the worker did not answer stay uncommitted (issue 20), through the broker.

* The agent's fatal path (an exception escaping ``Connector.handle``, which fails liveness):
  Faust's stream iterator acknowledges its current event when the actor's loop ends, so the
  command counted as answered and the next commit passed it. Run in-process, with Faust's real
  agent, stream and consumer, and a state store that fails for one account (the
  :class:`~connector.worker.state_store.StateStore` seam).
* SIGTERM with a command stuck on a slow exchange: Faust waited for every message in flight
  without a limit before the connector's drain ran, so ``CONNECTOR_SHUTDOWN_DRAIN_S`` never
  applied. The worker must exit within the drain limit, leaving the stuck command uncommitted
  for the next worker, which answers it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from connector.accounts_file import load_accounts
from connector.kafka import ensure_topics, partition_for, wait_for_broker
from connector.state import AccountState
from connector.statetopic import ensure_internal_topics
from connector.worker import Connector
from connector.worker.state_store import InMemoryStateStore

from .faults import results_by_request
from .harness import (
    Commands,
    Outputs,
    Stack,
    free_port,
    isolated_env,
    rid,
    settings_from_env,
    start_worker,
    wait_until,
)
from .test_faults import _committed
from .test_operations import metric, scrape

pytestmark = pytest.mark.integration


class FailingStore(InMemoryStateStore):
    """A state store whose every load of one account raises: a bug escaping ``handle``."""

    def __init__(self, failing_key: str) -> None:
        super().__init__()
        self.failing_key = failing_key

    def load(self, key: str) -> AccountState | None:
        if key == self.failing_key:
            raise RuntimeError("state store bug")
        return super().load(key)


async def test_a_command_whose_agent_failed_is_not_committed(
    worker_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = isolated_env(
        worker_env, "fatal", {"CONNECTOR_WEB_PORT": str(free_port())}, tmp_path / "data"
    )
    for name, value in env.items():  # the venues read their settings from the environment
        monkeypatch.setenv(name, value)
    settings = settings_from_env(env)
    await wait_for_broker(settings)
    await ensure_topics(settings)
    await ensure_internal_topics(settings)
    n, topic = settings.topic_partitions, settings.topic_query_orders
    failing, other = "ascendex-demo", "ascendex-empty"
    p_fail = partition_for(f"ascendex:{failing}".encode(), n)
    assert partition_for(f"ascendex:{other}".encode(), n) != p_fail
    assert settings.accounts_file
    connector = Connector(
        settings,
        load_accounts(settings.accounts_file),
        direct_partitions=n,
        state_store=FailingStore(f"ascendex:{failing}"),
    )
    outputs, commands = Outputs(settings), Commands(settings)
    await outputs.start()
    await commands.start()
    await connector.app.start()
    try:
        warm = await commands.send(request_id=rid("fatal-warm"), exchange="ascendex",
                                   account=other)  # fmt: skip
        await outputs.answer(warm)
        a = await commands.send(request_id=rid("fatal-a"), exchange="ascendex", account=failing)
        a_offset = commands.ends(topic)[p_fail] - 1

        await wait_until(lambda: not connector.health.alive()[0], timeout=60,
                         what="the agent failed", interval=0.05)  # fmt: skip
        assert connector.health.alive()[1] == "agent failed: RuntimeError"
        # Another command, answered and committed on its own partition after the failure.
        d = await commands.send(request_id=rid("fatal-d"), exchange="ascendex", account=other)
        await outputs.answer(d)
        q = partition_for(f"ascendex:{other}".encode(), n)

        async def d_committed() -> bool:
            await connector.app.consumer.commit()
            return await _committed(settings, topic, q) >= commands.ends(topic)[q]

        await wait_until(d_committed, timeout=60, what="D committed", interval=0.1)
        assert await _committed(settings, topic, p_fail) <= a_offset, a
    finally:
        await connector.app.stop()
        await outputs.stop()
        await commands.stop()


async def test_sigterm_with_a_stuck_command_exits_within_the_drain_limit(
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    drain_s = 2.0
    stack = await isolated_stack(
        "drain",
        CONNECTOR_SHUTDOWN_DRAIN_S=str(drain_s),
        CONNECTOR_REQUEST_TIMEOUT_S="120",
        CONNECTOR_COMMAND_TIMEOUT_S="120",
    )
    warm = await stack.commands.send(
        request_id=rid("drain-warm"), exchange="ascendex", account="ascendex-demo"
    )
    await stack.outputs.answer(warm)
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    (await control.post(f"{base}/__sandbox/faults", json={"delay_ms": 60_000})).raise_for_status()
    stuck = await stack.commands.send(
        request_id=rid("drain-stuck"), exchange="ascendex", account="ascendex-demo"
    )

    async def in_flight() -> bool:
        return metric(await scrape(stack.worker), "connector_commands_in_flight") >= 1

    await wait_until(in_flight, timeout=30, what="the command in flight")
    stopped_at = time.monotonic()
    stack.worker.proc.send_signal(signal.SIGTERM)
    try:
        rc = await asyncio.to_thread(stack.worker.proc.wait, drain_s + 20)
    except subprocess.TimeoutExpired:
        stack.worker.proc.kill()
        pytest.fail(f"SIGTERM: still running {time.monotonic() - stopped_at:.0f}s later")
    assert rc == 0
    assert time.monotonic() - stopped_at < drain_s + 20
    assert "abandoning them uncommitted" in stack.worker.log_text()
    assert stuck not in results_by_request(stack.outputs)
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    stack.worker = start_worker(stack.env, stack.worker.log_path.with_suffix(".2.log"))
    answer = await stack.outputs.answer(stuck, timeout=120)
    assert answer.result["status"] == "OK"
    assert results_by_request(stack.outputs)[stuck] == 1
