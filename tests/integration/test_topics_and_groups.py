"""`connector topics` against the broker, a worker that may not create topics, and where a new
consumer group starts (CONNECTOR_NEW_GROUP_START, connector/worker/group_start.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from connector.codec import QUERY_RESULT
from connector.kafka import create_missing_topics
from connector.topicplan import topic_plan

from .harness import PY, Stack, free_port, rid, settings_from_env, start_worker

pytestmark = pytest.mark.integration


async def run(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "connector", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def fresh_names(base: dict[str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **base,
        "CONNECTOR_APP_ID": f"it-topics-{tag}",
        **{f"CONNECTOR_TOPIC_{n}": f"it-topics-{tag}-{n.lower()}"
           for n in ("QUERY_ORDERS", "ORDERS", "RESULTS", "ERRORS", "STATE", "ACCOUNT_STATUS",
                     "ORDER_CHANGES")},
    }  # fmt: skip


async def test_topics_prints_the_plan_and_creates_what_is_missing(
    kafka_env: dict[str, str],
) -> None:
    env = fresh_names(kafka_env)
    settings = settings_from_env(env)
    plan = topic_plan(settings)

    code, out, _ = await run(env, "topics", "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["topic"], r["setting"]) for r in rows] == [(t.name, t.setting) for t in plan]
    assert "status" not in rows[0]  # the plan alone: no broker needed

    # The state topic exists already, but not compacted and with one partition.
    await create_missing_topics(settings, [NewTopic(settings.topic_state, 1, 1,
                                                    topic_configs={"cleanup.policy": "delete"})])  # fmt: skip
    code, out, err = await run(env, "topics", "--create", "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    status = {r["topic"]: r for r in rows}
    assert code == 1, err  # an existing topic with another cleanup policy than planned
    state = status[settings.topic_state]
    assert state["status"] == "differs"
    assert "cleanup.policy delete, planned compact" in state["differences"]
    assert "partitions 1, planned 4" in state["differences"]
    assert all(r["status"] == "created" for name, r in status.items()
               if name != settings.topic_state), rows  # fmt: skip

    code, out, _ = await run(env, "topics", "--create", "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["status"] for r in rows if r["topic"] != settings.topic_state} == {"exists"}


async def test_worker_that_may_not_create_topics_names_the_missing_state_topic(
    topics: list[str], worker_env: dict[str, str], kafka_env: dict[str, str]
) -> None:
    state = rid("no-state-topic")
    env = {**worker_env, "CONNECTOR_CREATE_TOPICS": "false", "CONNECTOR_TOPIC_STATE": state,
           "CONNECTOR_WEB_PORT": str(free_port()), "CONNECTOR_LOG_LEVEL": "info"}  # fmt: skip
    # Every other topic of the plan exists: created as an operator would.
    code, _, err = await run({**env, "CONNECTOR_TOPIC_STATE": topics[0]}, "topics", "--create")
    assert code in (0, 1), err
    code, _, err = await run(env, "worker", timeout=90)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"CONNECTOR_TOPIC_STATE={state}" in lines[0]
    assert "CONNECTOR_CREATE_TOPICS=false" in lines[0]
    assert "CONNECTOR_TOPIC_RESULTS" not in lines[0]


async def test_a_new_group_does_not_answer_what_another_group_answered(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    stack = await isolated_stack("group-a", CONNECTOR_NEW_GROUP_START="start-time")
    # Group A has its partitions (and its start position committed) once it answers.
    warm = await stack.commands.send(request_id=rid("warm-a"), exchange="ascendex",
                                     account="ascendex-demo")  # fmt: skip
    await stack.outputs.answer(warm)
    key = b"ascendex:ascendex-demo"
    old = rid("answered-by-a")
    command: dict[str, Any] = {"request_id": old, "exchange": "ascendex",
                               "account": "ascendex-demo"}  # fmt: skip
    # Produced a minute ago (well before group B's start, whatever the machine's speed), and
    # within its age limit, so a group reading the history would answer it OK again.
    await stack.commands.producer.send_and_wait(
        stack.settings.topic_query_orders, json.dumps(command).encode(), key=key,
        timestamp_ms=int(time.time() * 1000) - 60_000,
    )  # fmt: skip
    assert (await stack.outputs.answer(old)).result["status"] == "OK"
    stack.worker.stop()

    env_b = {**stack.env, "CONNECTOR_APP_ID": f"{stack.env['CONNECTOR_APP_ID']}-b",
             "CONNECTOR_WEB_PORT": str(free_port()), "CONNECTOR_DATA_DIR": str(tmp_path / "b"),
             "CONNECTOR_NEW_GROUP_START": "start-time"}  # fmt: skip
    b = start_worker(env_b, tmp_path / "worker-b.log")
    stack.worker = b  # stopped by the fixture
    await b.wait_ready()
    new = await stack.commands.send(request_id=rid("after-b"), exchange="ascendex",
                                    account="ascendex-demo")  # fmt: skip
    assert (await stack.outputs.answer(new)).result["status"] == "OK"  # answered by B alone
    # Same key, same partition: B read past the old command's offset to reach the new one.
    results = [m for m in stack.outputs.messages
               if m.schema == QUERY_RESULT and m.headers.get("request_id") == old]  # fmt: skip
    assert len(results) == 1, [m.value for m in results]
    assert "new consumer group starts at" in b.log_text()
