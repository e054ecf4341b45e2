"""The one topic plan: every topic the product uses, with its setting, role, partitions, cleanup
policy, retention and who creates it.

Before this module the same facts lived in four places (the worker's start-up creation, the
embedded broker's, compose's ``kafka-init`` list and docs/operations.md), and they drifted: compose
created four of the nine topics. Now :func:`topic_plan` is the source; ``connector topics``
prints it and creates what is missing (``--create``; :mod:`connector.topicadmin`), the worker
creates its own topics from it at start (or, with ``CONNECTOR_CREATE_TOPICS=false``, only
checks them), ``connector broker`` creates all of it, and a docs test checks that
docs/operations.md "Topics" lists every row. This module does no I/O.

The four contract topics are the operator's (``created_by == "you"``): the worker never
creates them, because production wants its own partitions, replication and retention for them.
The worker's own topics (state topic, by-account commands, changelogs, leader topic) are
created by the worker at start when allowed, as Kafka Streams does for its internal topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import NewTopic

from .settings import ENV_PREFIX, Settings

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


def missing_line(settings: Settings, missing: Sequence[PlannedTopic]) -> str:
    """One line naming each missing topic and the setting that names it."""
    names = ", ".join(t.label for t in missing)
    return f"topics missing on {settings.kafka_bootstrap}: {names}"
