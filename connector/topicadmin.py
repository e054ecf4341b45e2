"""The topic plan on the broker: ``connector topics [--create]`` and the worker's check with
``CONNECTOR_CREATE_TOPICS=false``.

Apart from :mod:`connector.topicplan` (the plan itself, no I/O) because it needs the Kafka
admin client of :mod:`connector.kafka`, which itself asks the plan which contract topics exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TextIO

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .errors import ConfigurationError
from .kafka import client_kwargs, create_missing_topics
from .settings import ENV_PREFIX, Settings
from .topicplan import PlannedTopic, TopicStatus, missing_line, topic_plan, worker_topics

log = logging.getLogger(__name__)


async def describe(settings: Settings, plan: Sequence[PlannedTopic]) -> list[TopicStatus]:
    """Each planned topic as the broker has it (one admin connection)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [t.name for t in plan if t.name in existing]
        counts: dict[str, int] = {}
        policies: dict[str, str] = {}
        if present:
            for d in await admin.describe_topics(present):
                if d.get("partitions"):
                    counts[d["topic"]] = len(d["partitions"])
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
            try:
                for response in await admin.describe_configs(resources):
                    for resource in response.resources:
                        name, entries = resource[3], resource[4]
                        for entry in entries:
                            if entry[0] == "cleanup.policy" and entry[1] is not None:
                                policies[name] = str(entry[1])
            except Exception as exc:  # a broker without DescribeConfigs: the policy is unknown
                log.debug("cleanup policies unknown (%s)", type(exc).__name__)
    finally:
        await admin.close()
    return [TopicStatus(t, counts.get(t.name), policies.get(t.name)) for t in plan]


async def require_worker_topics(settings: Settings) -> None:
    """With ``CONNECTOR_CREATE_TOPICS=false``: one ConfigurationError line naming each of the
    worker's own topics missing on the broker and its setting."""
    statuses = await describe(settings, worker_topics(settings))
    missing = [s.topic for s in statuses if not s.exists]
    if missing:
        raise ConfigurationError(
            f"{missing_line(settings, missing)} ({ENV_PREFIX}CREATE_TOPICS=false: create them, "
            "e.g. with `connector topics --create`)"
        )


def _row(t: PlannedTopic) -> dict[str, object]:
    return {
        "topic": t.name,
        "setting": t.setting,
        "role": t.role,
        "partitions": t.partitions,
        "cleanup_policy": t.cleanup_policy or "broker default",
        "retention": t.retention,
        "created_by": "you (the worker never creates it)" if t.created_by == "you"
        else "the worker at start (unless CONNECTOR_CREATE_TOPICS=false)",
    }  # fmt: skip


async def topics_command(settings: Settings, *, create: bool, fmt: str, out: TextIO) -> int:
    """``connector topics``: print the plan; with ``create``, create the missing topics on the
    broker (with ``CONNECTOR_TOPIC_REPLICATION_FACTOR`` replicas) and say, per topic, whether it
    was created, already existed, or exists differently from the plan. Exit 1 when an existing
    topic differs in cleanup policy or in a partition count the worker requires, else 0."""
    plan = topic_plan(settings)
    rows = [_row(t) for t in plan]
    code = 0
    if create:
        rf = settings.topic_replication_factor
        created = set(await create_missing_topics(settings, [t.new_topic(rf) for t in plan]))
        for row, status in zip(rows, await describe(settings, plan), strict=True):
            diffs = status.differences()
            row["status"] = "created" if status.topic.name in created else (
                "differs" if diffs else "exists")  # fmt: skip
            row["differences"] = diffs
            if any(d.startswith("cleanup.policy") for d in diffs) or (
                status.topic.exact_partitions and status.partitions != status.topic.partitions
            ):
                code = 1
    if fmt == "jsonl":
        for row in rows:
            print(json.dumps(row), file=out)
    else:
        for row in rows:
            found = row.get("differences") or []
            assert isinstance(found, list)
            state = f"  [{row['status']}{': ' if found else ''}{'; '.join(found)}]" \
                if "status" in row else ""  # fmt: skip
            print(f"{row['topic']}  {row['setting']}  {row['role']}; {row['partitions']} "
                  f"partitions, {row['cleanup_policy']}; retention {row['retention']}; "
                  f"created by {row['created_by']}{state}", file=out)  # fmt: skip
    out.flush()
    return code
