"""The topic plan (connector/topicplan.py), the docs that list it, and where a new consumer group
starts (connector/worker/group_start.py)."""

from __future__ import annotations

import re
from collections import namedtuple
from pathlib import Path
from typing import Any

from connector.settings import Settings
from connector.topicplan import TopicStatus, topic_plan, worker_topics
from connector.worker.group_start import GroupStart, search_by_time, start_offsets

ROOT = Path(__file__).resolve().parents[2]
TP = namedtuple("TP", "topic partition")


def test_the_plan_names_every_topic_with_its_setting() -> None:
    s = Settings(app_id="grp", topic_state="state-t", topic_partitions=6)
    plan = {t.name: t for t in topic_plan(s)}
    assert list(plan) == ["query-orders", "orders", "order-query-results", "order-errors",
                          "state-t", "grp-query-orders-by-account",
                          "grp-open-orders-state-changelog", "grp-schedules-changelog",
                          "grp-__assignor-__leader"]  # fmt: skip
    assert plan["state-t"].setting == "CONNECTOR_TOPIC_STATE"
    assert plan["state-t"].cleanup_policy == "compact" and plan["state-t"].partitions == 6
    assert plan["grp-schedules-changelog"].partitions == 1
    assert plan["grp-open-orders-state-changelog"].exact_partitions
    assert {t.created_by for t in topic_plan(s)[:4]} == {"you"}
    assert [t.name for t in worker_topics(s)] == list(plan)[4:]
    assert (
        plan["grp-__assignor-__leader"].label == "grp-__assignor-__leader (from CONNECTOR_APP_ID)"
    )
    assert plan["orders"].label == "CONNECTOR_TOPIC_ORDERS=orders"
    new = plan["state-t"].new_topic(3)
    assert (new.num_partitions, new.replication_factor) == (6, 3)


def test_a_topic_that_differs_from_the_plan_says_how() -> None:
    state = next(t for t in topic_plan(Settings()) if t.role == "state")
    assert TopicStatus(state, 4, "compact").differences() == []
    assert TopicStatus(state, None, None).differences() == []  # missing, not different
    assert TopicStatus(state, 1, "delete").differences() == [
        "partitions 1, planned 4", "cleanup.policy delete, planned compact"]  # fmt: skip


def test_operations_md_topic_table_lists_every_topic_of_the_plan() -> None:
    text = (ROOT / "docs/operations.md").read_text()
    section = text.split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]
    s = Settings(app_id="<app_id>")
    assert named == [t.name for t in topic_plan(s)]
    for row, topic in zip(rows, topic_plan(s), strict=True):
        assert f"`{topic.setting}`" in row or topic.setting == "CONNECTOR_APP_ID", row
        assert f"`{topic.cleanup_policy or 'broker default'}`" in row or (
            topic.cleanup_policy is None and "broker default" in row), row  # fmt: skip


async def _no_time(tps: Any, ms: int) -> dict[Any, Any]:
    return {}


def test_earliest_keeps_the_reset_policy_and_latest_starts_at_the_end() -> None:
    import asyncio

    a, other = TP("cmds", 0), TP("by-account", 0)

    async def record_time(tp: Any, offset: int) -> None:
        raise AssertionError("no record read")

    def run(policy: str) -> dict[Any, int]:
        start = GroupStart(policy, frozenset({"cmds"}), 0)  # type: ignore[arg-type]
        return asyncio.run(start_offsets(start, [a, other], ends={a: 9, other: 4},
                                         beginnings={a: 0, other: 0}, by_time=_no_time,
                                         record_time=record_time))  # fmt: skip

    assert run("earliest") == {}
    assert run("latest") == {a: 9}  # only the command topic is positioned


def test_start_time_trusts_a_lookup_only_when_the_records_agree() -> None:
    import asyncio

    a = TP("cmds", 0)
    stamps = [100, 200, 300, 400, 500]  # record timestamps by offset

    async def record_time(tp: Any, offset: int) -> tuple[int, int] | None:
        return (offset, stamps[offset]) if offset < len(stamps) else None

    def run(answer: tuple[int, int] | None, since: int) -> int:
        async def by_time(tps: Any, ms: int) -> dict[Any, Any]:
            return {a: answer}

        start = GroupStart("start-time", frozenset({"cmds"}), since)
        return asyncio.run(start_offsets(start, [a], ends={a: 5}, beginnings={a: 0},
                                         by_time=by_time, record_time=record_time))[a]  # fmt: skip

    assert run((3, 400), 350) == 3  # a broker that looks up by time
    assert run((0, 999), 350) == 3  # one that answers offset 0 for anything (the dev broker)
    assert run(None, 350) == 3
    assert run(None, 600) == 5  # nothing after the time: the end
    assert run(None, 50) == 0


def test_search_by_time_finds_the_first_record_at_or_after_the_time() -> None:
    import asyncio

    stamps = {2: 10, 3: 20, 5: 30, 6: 40}  # offsets 4 compacted away, 0-1 deleted

    async def record_time(tp: Any, offset: int) -> tuple[int, int] | None:
        later = [o for o in sorted(stamps) if o >= offset]
        return (later[0], stamps[later[0]]) if later else None

    for since, want in [(5, 2), (20, 3), (25, 5), (40, 6), (41, 7)]:
        assert asyncio.run(search_by_time(TP("t", 0), since, 2, 7, record_time)) == want


def test_start_time_is_the_process_start_minus_the_grace() -> None:
    start = GroupStart.from_settings(Settings(new_group_start="start-time"), started_at=1000.0)
    assert start.policy == "start-time" and start.topics == {"query-orders"}
    assert start.since_ms == 995_000
