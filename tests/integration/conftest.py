"""Broker-backed fixtures: one broker, sandbox and worker for the whole run.

The broker is the embedded one (started on a free port) unless CONNECTOR_KAFKA_BOOTSTRAP names
an existing broker, in which case the same tests run against that one. Topic names and the
consumer group are unique to the run, so runs never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from connector import devstack
from connector.kafka import ensure_topics, wait_for_broker
from connector.settings import Settings
from connector.statetopic import ensure_state_topic

from .harness import (
    Commands,
    Outputs,
    Stack,
    Worker,
    free_port,
    isolated_env,
    settings_from_env,
    start_worker,
    write_orders_file,
)

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """The run's broker and sandbox processes (connector/devstack.py), stopped at the end."""
    with devstack.Stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def bootstrap(dev_stack: devstack.Stack) -> str:
    external = os.environ.get("CONNECTOR_KAFKA_BOOTSTRAP")
    if external:
        return external
    # Tansu alone: the topics are this run's own, created by the ``topics`` fixture.
    return dev_stack.start_broker(bare=True).bootstrap


@pytest.fixture(scope="session")
def kafka_env(bootstrap: str) -> dict[str, str]:
    """Kafka settings for this run: unique topics and group, dev-friendly session timeout."""
    env = {
        "CONNECTOR_KAFKA_BOOTSTRAP": bootstrap,
        "CONNECTOR_APP_ID": f"it-connector-{RUN}",
        "CONNECTOR_TOPIC_QUERY_ORDERS": f"it-{RUN}-query-orders",
        "CONNECTOR_TOPIC_ORDERS": f"it-{RUN}-orders",
        "CONNECTOR_TOPIC_RESULTS": f"it-{RUN}-order-query-results",
        "CONNECTOR_TOPIC_ERRORS": f"it-{RUN}-order-errors",
        "CONNECTOR_TOPIC_STATE": f"it-{RUN}-open-orders",
        # The embedded broker completes a group join only after session_timeout/2.
        "CONNECTOR_KAFKA_SESSION_TIMEOUT_S": "6",
        "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        # ...and answers a waiting fetch only when the wait expires.
        "CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS": "50",
    }
    for name in ("CONNECTOR_KAFKA_SECURITY_PROTOCOL", "CONNECTOR_KAFKA_SASL_MECHANISM",
                 "CONNECTOR_KAFKA_SASL_USERNAME", "CONNECTOR_KAFKA_SASL_PASSWORD",
                 "CONNECTOR_KAFKA_SSL_CAFILE"):  # fmt: skip
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


@pytest.fixture(scope="session")
def settings(kafka_env: dict[str, str]) -> Settings:
    return settings_from_env(kafka_env)


@pytest.fixture(scope="session")
async def topics(settings: Settings) -> list[str]:
    await wait_for_broker(settings, timeout=30)
    await ensure_topics(settings)
    await ensure_state_topic(settings)
    return list(settings.topics.values())


@pytest.fixture(scope="session")
def sandbox(dev_stack: devstack.Stack) -> dict[str, str]:
    """`connector sandbox`, wired exactly as a user would: by reading its first line; seeded
    with the run's own accounts (harness.write_orders_file)."""
    return dev_stack.start_sandbox(orders_file=write_orders_file(dev_stack.workdir / "orders.json"))


@pytest.fixture(scope="session")
def worker_env(
    kafka_env: dict[str, str], sandbox: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        **kafka_env,
        **sandbox,
        "CONNECTOR_WEB_PORT": str(free_port()),
        "CONNECTOR_WEB_HOST": "127.0.0.1",
        "CONNECTOR_DATA_DIR": str(tmp_path_factory.mktemp("worker-data")),
        "CONNECTOR_LOG_FORMAT": "json",
        "CONNECTOR_LOG_LEVEL": "DEBUG",
        "CONNECTOR_WORKER_CONCURRENCY": "8",
        "CONNECTOR_REQUEST_TIMEOUT_S": "5",
        "CONNECTOR_COMMAND_TIMEOUT_S": "30",
        "CONNECTOR_RETRY_BACKOFF_S": "0.1",
        # Two 89-day windows (the demo's old tracking orders are 95-153 days old) instead of
        # the default five: every Bitget snapshot costs at least one request per window at
        # 5 requests/s, and the suite sends a few hundred.
        "CONNECTOR_BITGET_HISTORY_DAYS": "178",
    }


@pytest.fixture(scope="session")
async def worker(
    topics: list[str], worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    w = start_worker(worker_env, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="session")
async def outputs(topics: list[str], settings: Settings) -> AsyncIterator[Outputs]:
    out = Outputs(settings)
    await out.start()
    yield out
    await out.stop()


@pytest.fixture(scope="session")
async def commands(topics: list[str], settings: Settings) -> AsyncIterator[Commands]:
    c = Commands(settings)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def control(sandbox: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the simulators' /__sandbox control API."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
    # Leave no fault armed for the next test.
    async with httpx.AsyncClient(timeout=10) as client:
        for name, url in sandbox.items():  # every simulator's base URL (one per venue)
            if name.endswith("_REST_URL"):
                await client.post(f"{url}/__sandbox/reset")


@pytest.fixture
async def isolated_stack(
    worker_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Factory: a separately configured worker on its own topics (e.g. with a schema registry)."""
    stacks: list[Stack] = []

    async def make(tag: str, **extra: str) -> Stack:
        env = isolated_env(worker_env, tag, extra, tmp_path / f"data-{tag}")
        settings = settings_from_env(env)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        await ensure_state_topic(settings)
        worker = start_worker(env, tmp_path / f"worker-{tag}.log")
        await worker.wait_ready()
        outputs = Outputs(settings)
        await outputs.start()
        commands = Commands(settings)
        await commands.start()
        stack = Stack(settings, env, worker, outputs, commands)
        stacks.append(stack)
        return stack

    yield make
    for s in stacks:
        s.worker.stop()
        await s.outputs.stop()
        await s.commands.stop()
