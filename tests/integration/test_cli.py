"""`connector query --wait` and `connector tail`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from .harness import PY, Outputs, Worker, rid

pytestmark = pytest.mark.integration


async def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> tuple[int, list[dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_query_wait_prints_the_whole_snapshot_and_exits_0(
    worker: Worker, worker_env: dict[str, str]
) -> None:
    request_id = rid("cli-ok")
    code, lines = await run_cli(
        worker_env, "query", "--exchange", "ascendex", "--account", "ascendex-demo",
        "--request-id", request_id, "--wait",
    )  # fmt: skip
    assert code == 0
    kinds = [line["schema"].rsplit(".", 1)[1] for line in lines]
    assert kinds.count("QueryResult") == 1
    result = next(line["value"] for line in lines if line["schema"].endswith("QueryResult"))
    assert result["request_id"] == request_id and result["status"] == "OK"
    assert kinds.count("OrderEvent") == result["order_count"] > 0
    # Printed in contract order: the snapshot by seq, then its result.
    assert kinds[-1] == "QueryResult"
    seqs = [
        line["value"]["snapshot_seq"] for line in lines if line["schema"].endswith("OrderEvent")
    ]
    assert seqs == list(range(1, result["order_count"] + 1))
    assert all(line["value"]["request_id"] == request_id for line in lines)


async def test_query_wait_exits_1_on_failure(worker: Worker, worker_env: dict[str, str]) -> None:
    code, lines = await run_cli(
        worker_env, "query", "--exchange", "ascendex", "--account", "nobody", "--avro", "--wait"
    )
    assert code == 1
    assert [line["schema"].rsplit(".", 1)[1] for line in lines] == [
        "ErrorEvent",
        "QueryResult",
    ]


async def test_tail_decodes_an_output_topic(
    worker: Worker, worker_env: dict[str, str], outputs: Outputs
) -> None:
    await run_cli(
        worker_env, "query", "--exchange", "ascendex", "--account", "ascendex-empty", "--wait"
    )
    code, lines = await run_cli(
        worker_env, "tail", worker_env["CONNECTOR_TOPIC_RESULTS"], "--idle-timeout", "2"
    )
    assert code == 0 and lines
    assert all(line["schema"] == "orderconnector.QueryResult" for line in lines)
    assert all(isinstance(line["value"]["started_at"], int) for line in lines)
