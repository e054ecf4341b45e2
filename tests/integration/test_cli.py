"""`connector query --wait` and `connector tail`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from .harness import PY, Outputs, Worker, free_port, rid

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


async def test_query_relative_deadline_and_tail_of_json_commands_by_role(
    worker: Worker, worker_env: dict[str, str]
) -> None:
    """``--deadline 30s`` becomes an absolute deadline_ms; ``tail commands`` decodes the JSON
    command (no longer "undecodable") with partition, offset, timestamp and headers, and
    ``--request-id`` keeps only that command's records."""
    import time

    request_id = rid("cli-deadline")
    before = int(time.time() * 1000)
    code, lines = await run_cli(
        worker_env, "query", "--exchange", "ascendex", "--account", "ascendex-empty",
        "--request-id", request_id, "--deadline", "30s", "--wait",
    )  # fmt: skip
    assert code == 0
    code, lines = await run_cli(
        worker_env, "tail", "commands", "--request-id", request_id, "--idle-timeout", "2",
    )  # fmt: skip
    assert code == 0 and len(lines) == 1, lines
    rec = lines[0]
    assert rec["schema"] == "json" and rec["value"]["request_id"] == request_id
    assert before + 29_000 <= rec["value"]["deadline_ms"] <= int(time.time() * 1000) + 30_000
    assert before <= rec["value"]["requested_at"] <= int(time.time() * 1000)  # UTC ms, sent
    assert isinstance(rec["partition"], int) and isinstance(rec["offset"], int)
    assert rec["timestamp"].endswith("Z") and rec["key"] == "ascendex:ascendex-empty"
    code, lines = await run_cli(
        worker_env, "tail", "results", "--request-id", request_id, "--idle-timeout", "2",
    )  # fmt: skip
    assert code == 0 and len(lines) == 1
    assert lines[0]["headers"]["request_id"] == request_id
    assert lines[0]["headers"]["schema"] == "orderconnector.QueryResult"


async def test_query_summary_format(worker: Worker, worker_env: dict[str, str]) -> None:
    request_id = rid("cli-summary")
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", "query", "--exchange", "ascendex", "--account", "ascendex-demo",
        "--request-id", request_id, "--wait", "--format", "summary",
        env={**os.environ, **worker_env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0
    lines = out.decode().splitlines()
    who = f"ascendex:ascendex-demo req={request_id}"
    assert lines[-1].startswith(f"QueryResult {who} OK order_count=")
    assert lines[0].startswith(f"OrderEvent  {who} 1/")
    assert all(who in line and "None" not in line for line in lines)


async def _run_on(stdout: int, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``connector`` with its stdout on the file descriptor given (closed here once the
    child has it); returns the exit code and stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "connector", *args,
            env={**os.environ, **env}, stdout=stdout, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(stdout)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["tail", "results", "--idle-timeout", "2"],
        ["query", "--exchange", "ascendex", "--account", "ascendex-demo", "--wait"],
    ],
    ids=["tail", "query-wait"],
)
async def test_a_reader_that_stops_reading_ends_the_command_quietly(
    worker: Worker, worker_env: dict[str, str], args: list[str]
) -> None:
    """``connector tail results | head -1``: the reader is gone before the command writes, so
    every write fails with EPIPE; that is the end of the command (exit 0, nothing on stderr),
    not a broker failure (exit 3)."""
    await run_cli(  # at least one record on the results topic for tail to print
        worker_env, "query", "--exchange", "ascendex", "--account", "ascendex-empty", "--wait"
    )
    read, write = os.pipe()
    os.close(read)  # the reader has already gone
    code, err = await _run_on(write, worker_env, *args)
    assert (code, err) == (0, "")


async def test_default_output_on_a_terminal_is_the_summary(
    worker: Worker, worker_env: dict[str, str]
) -> None:
    request_id = rid("cli-tty")
    code, _ = await run_cli(
        worker_env, "query", "--exchange", "ascendex", "--account", "ascendex-empty",
        "--request-id", request_id, "--wait",
    )  # fmt: skip
    assert code == 0
    master, slave = os.openpty()
    try:
        code, err = await _run_on(
            slave, worker_env, "tail", "results", "--request-id", request_id, "--idle-timeout", "2"
        )
        assert code == 0, err
        shown = b""
        while not shown.endswith(b"\n"):
            shown += os.read(master, 4096)
    finally:
        os.close(master)
    line = shown.decode().strip()
    assert line.startswith(f"QueryResult ascendex:ascendex-empty req={request_id} OK "), line


async def test_worker_logs_one_ready_line(worker: Worker) -> None:
    import json as _json

    ready = [
        _json.loads(line)
        for line in worker.log_text().splitlines()
        if line.startswith("{") and '"ready"' in line and "ready:" in line
    ]
    assert len(ready) == 1, worker.log_text()[-2000:]
    r = ready[0]["ready"]
    assert r["bootstrap"] == worker.env["CONNECTOR_KAFKA_BOOTSTRAP"]
    assert r["web_port"] == worker.web_port and r["group"] and r["version"]
    assert "ascendex-demo" in r["accounts"]["ascendex"] and "bitget" in r["venues"]
    assert ready[0]["time"].endswith("Z")
    assert "\x1b[" not in worker.log_text()  # no colour or spinner control codes in a log file


async def test_worker_refuses_topics_missing_on_the_broker(
    topics: list[str], worker_env: dict[str, str], tmp_path: Any
) -> None:
    env = {**worker_env, "CONNECTOR_TOPIC_RESULTS": rid("no-such-topic"),
           "CONNECTOR_WEB_PORT": str(free_port()), "CONNECTOR_LOG_LEVEL": "info",
           "CONNECTOR_STARTUP_TOPIC_WAIT_S": "0"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", "worker",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1, err.decode()
    assert "CONNECTOR_TOPIC_RESULTS=" + env["CONNECTOR_TOPIC_RESULTS"] in lines[0]
    assert "CONNECTOR_TOPIC_ORDERS" not in lines[0]
