"""The one topic plan: every topic the product uses, with its setting, role, partitions, cleanup
policy, retention and who creates it.

Before this module the same facts lived in four places (the worker's start-up creation, the
embedded broker's, compose's ``kafka-init`` list and docs/operations.md), and they drifted: compose
created four of the nine topics. Now :func:`topic_plan` is the source; ``connector topics``
prints it and creates what is missing (``--create``), the worker creates its own topics from it
at start (or, with ``CONNECTOR_CREATE_TOPICS=false``, only checks them), ``connector broker``
creates all of it, and a docs test checks that docs/operations.md "Topics" lists every row.

The four contract topics are the operator's (``created_by == "you"``): the worker never
creates them, because production wants its own partitions, replication and retention for them.
The worker's own topics (state topic, by-account commands, changelogs, leader topic) are
created by the worker at start when allowed, as Kafka Streams does for its internal topics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

CreatedBy = Literal["you", "worker"]


@dataclass(frozen=True)
class PlannedTopic:
    """One topic of the plan. ``partitions`` is the count it is created with; ``cleanup_policy``
    None leaves the broker's default; ``exact_partitions`` means the worker refuses another
    count at start (Faust co-partitioning)."""

    name: str
    setting: str
    role: str
    partitions: int
    cleanup_policy: str | None
    retention: str
    created_by: CreatedBy
    exact_partitions: bool = False

    @property
    def label(self) -> str:
        """``SETTING=name``, or ``name (from CONNECTOR_APP_ID)`` for a name derived from it."""
        if self.setting == ENV_PREFIX + "APP_ID":
            return f"{self.name} (from {self.setting})"
        return f"{self.setting}={self.name}"

    def new_topic(self, replication_factor: int) -> NewTopic:
        configs = {"cleanup.policy": self.cleanup_policy} if self.cleanup_policy else {}
        return NewTopic(self.name, self.partitions, replication_factor, topic_configs=configs)


def topic_plan(settings: Settings) -> list[PlannedTopic]:
    """Every topic of the product for ``settings``, contract topics first."""
    n, app = settings.topic_partitions, ENV_PREFIX + "APP_ID"
    return [
        PlannedTopic(settings.topic_query_orders, ENV_PREFIX + "TOPIC_QUERY_ORDERS", "commands",
                     n, "delete", ">= 7 d (longer than the longest outage to survive)", "you"),
        PlannedTopic(settings.topic_orders, ENV_PREFIX + "TOPIC_ORDERS", "orders",
                     n, "delete", ">= 7 d and >= the results topic", "you"),
        PlannedTopic(settings.topic_results, ENV_PREFIX + "TOPIC_RESULTS", "results",
                     n, "delete", ">= 7 d", "you"),
        PlannedTopic(settings.topic_errors, ENV_PREFIX + "TOPIC_ERRORS", "errors",
                     n, "delete", ">= the results topic", "you"),
        PlannedTopic(settings.topic_state, ENV_PREFIX + "TOPIC_STATE", "state",
                     n, "compact", "delete.retention.ms >= slowest reader's lag", "worker"),
        PlannedTopic(settings.commands_by_account_topic,
                     ENV_PREFIX + "TOPIC_COMMANDS_BY_ACCOUNT", "commands by account",
                     n, "delete", "short (commands in transit)", "worker", exact_partitions=True),
        PlannedTopic(settings.state_table_changelog, app, "state table changelog",
                     n, "compact", "broker default", "worker", exact_partitions=True),
        PlannedTopic(settings.schedules_changelog, app, "schedules changelog",
                     1, "compact", "broker default", "worker"),
        PlannedTopic(settings.leader_topic, app, "leader election",
                     1, None, "broker default", "worker"),
    ]  # fmt: skip


def worker_topics(settings: Settings) -> list[PlannedTopic]:
    """The topics the worker creates at start when they are missing."""
    return [t for t in topic_plan(settings) if t.created_by == "worker"]


@dataclass(frozen=True)
class TopicStatus:
    """A planned topic as found on the broker: absent (``partitions`` None), or with its
    partition count and cleanup policy (None when the broker did not say)."""

    topic: PlannedTopic
    partitions: int | None
    cleanup_policy: str | None

    @property
    def exists(self) -> bool:
        return self.partitions is not None

    def differences(self) -> list[str]:
        """How the existing topic differs from the plan (partition count, cleanup policy)."""
        if not self.exists:
            return []
        out = []
        t = self.topic
        if self.partitions != t.partitions and (t.exact_partitions or t.created_by == "worker"):
            out.append(f"partitions {self.partitions}, planned {t.partitions}")
        want = t.cleanup_policy or None
        if want and self.cleanup_policy is not None and self.cleanup_policy != want:
            out.append(f"cleanup.policy {self.cleanup_policy}, planned {want}")
        return out


async def describe(settings: Settings, plan: Sequence[PlannedTopic]) -> list[TopicStatus]:
    """Each planned topic as the broker has it (one admin connection)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from .kafka import client_kwargs

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


def missing_line(settings: Settings, missing: Sequence[PlannedTopic]) -> str:
    """One line naming each missing topic and the setting that names it."""
    names = ", ".join(t.label for t in missing)
    return f"topics missing on {settings.kafka_bootstrap}: {names}"


async def require_worker_topics(settings: Settings) -> None:
    """With ``CONNECTOR_CREATE_TOPICS=false``: one ConfigurationError line naming each of the
    worker's own topics missing on the broker and its setting."""
    from .errors import ConfigurationError

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
    from .kafka import create_missing_topics

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
