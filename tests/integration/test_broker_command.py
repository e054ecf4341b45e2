"""`connector broker`: starts, creates the topics explicitly (four + the state topic), stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from .harness import PY, free_port

pytestmark = pytest.mark.integration


async def test_broker_command_lifecycle() -> None:
    port = free_port()
    env = {
        **os.environ,
        "CONNECTOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "CONNECTOR_TOPIC_ORDERS": "orders-x",
    }
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", "broker", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        output = []
        while not any("broker ready" in line for line in output):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"broker exited: {output}"
            output.append(line)
        assert not any("ERROR" in line for line in output), output
        # Piped output: no colour codes from the broker (it is started with NO_COLOR).
        assert not any("\x1b" in line for line in output), output
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        await admin.start()
        try:
            topics = set(await admin.list_topics())
            described = await admin.describe_topics(["query-orders"])
        finally:
            await admin.close()
        assert {"query-orders", "orders-x", "order-query-results", "order-errors"} <= topics
        assert "open-orders" in topics  # the compacted state topic (test_state_topic.py)
        assert len(described[0]["partitions"]) == 4
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _start_broker(port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    """``connector broker`` on ``port``, once it said it is ready (its output so far)."""
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", "broker",
        env={**os.environ, "CONNECTOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    while not any("broker ready" in line for line in output):
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            await proc.wait()
            break
        output.append(line)
    return proc, output


async def test_broker_restarts_on_its_port_at_once() -> None:
    """A broker stopped while a client was connected leaves that connection lingering on its
    port (TIME-WAIT); starting it again right away works, it is not "already in use"."""
    port = free_port()
    first, output = await _start_broker(port)
    try:
        assert first.returncode is None, output
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # a client stays connected
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
        writer.close()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    second, output = await _start_broker(port)
    try:
        assert second.returncode is None, output
        assert not any("already in use" in line for line in output), output
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
