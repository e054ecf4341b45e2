"""Routing by account, through the broker with real worker processes: unkeyed commands for one Bitget account, across two workers, keep the account
within Bitget's rate limit, because every command of an account is handled by the worker owning
its by-account partition.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from .harness import (
    Stack,
    free_port,
    rid,
    start_worker,
    stop_process,
    wait_all_assigned,
    wait_ready,
)
from .test_state_worker import ACC

pytestmark = pytest.mark.integration


async def test_unkeyed_commands_across_two_workers_keep_bitget_within_its_limit(
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    stack = await isolated_stack("two")
    env2 = {
        **stack.env,
        "CONNECTOR_WEB_PORT": str(free_port()),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data-two-2"),
    }
    second = start_worker(env2, tmp_path / "worker-two-2.log")
    try:
        await wait_ready(second)

        await wait_all_assigned([stack.worker, second])
        base = sandbox["CONNECTOR_BITGET_REST_URL"]
        (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
        ids = [rid(f"two-{i}") for i in range(24)]
        # Unkeyed, so the producer spreads them over the partitions (both workers'). A trader
        # filter each, so no two share a fetch (issue 11's coalescing): each costs requests.
        for i, request_id in enumerate(ids):
            command = {"request_id": request_id, "exchange": "bitget", "account": ACC,
                       "trader_id": f"trader-{i}"}  # fmt: skip
            await stack.commands.send_raw(json.dumps(command).encode(), key=None)
        answers = [await stack.outputs.answer(r, timeout=120) for r in ids]
        assert all(a.result["status"] == "OK" for a in answers)
        stats = (await control.get(f"{base}/__sandbox/stats")).json()
        assert stats["rate_limit_violations"] == 0
        assert stats["by_account"][ACC]["admitted"] >= len(ids)  # one fetch each at least
        # All of them were handled by one worker: the owner of the account's partition.
        handled = [
            sum(
                "command answered" in line and any(r in line for r in ids)
                for line in w.log_text().splitlines()
            )
            for w in (stack.worker, second)
        ]
        assert sorted(handled) == [0, len(ids)], handled
    finally:
        stop_process(second.proc)
        second.log_file.close()
