"""The Java and Node consumer examples (examples/), built and run against this run's broker.

Each example decodes OrderEvents and QueryResults from the .avsc files alone and judges each
snapshot by order_count, deduplicating on (request_id, order_id). The test checks their
machine-readable summaries against what the connector published: the same order ids, counts and
statuses, a repeated command counted once, a FAILED command judged without orders.

`make test` builds the examples first (`make examples-setup`); the fixture below runs the same
idempotent script, so a plain `pytest` run builds them too. A missing toolchain fails, never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from connector.codec import (
    ACCOUNT_STATUS,
    ORDER_CHANGE,
    ORDER_EVENT,
    QUERY_RESULT,
    encode_single_object,
)
from connector.freshness import Failed, Ok, apply_attempt, initial, refresh
from connector.kafka import client_kwargs, create_missing_topics
from connector.settings import Settings

from .harness import Commands, Outputs, Worker, rid

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AVRO_DIR = ROOT / "avro"


@pytest.fixture(scope="module")
def built_examples() -> None:
    proc = subprocess.run(
        ["bash", str(EXAMPLES / "setup.sh")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"examples/setup.sh failed:\n{proc.stdout}\n{proc.stderr}"


def librdkafka_path() -> str:
    """The librdkafka build shipped in the confluent-kafka wheel (a dev dependency).

    Debian's librdkafka 2.0.2 cannot parse the embedded broker's ApiVersions v3 response; this
    newer build can. Against Apache Kafka either one works (docs/consuming.md).
    """
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    (lib,) = sorted(libs.glob("librdkafka*.so*"))
    return str(lib)


def example_commands(settings: Settings, request_ids: list[str]) -> dict[str, list[str]]:
    common = [
        "--bootstrap", settings.kafka_bootstrap,
        "--avro-dir", str(AVRO_DIR),
        "--orders-topic", settings.topic_orders,
        "--results-topic", settings.topic_results,
        "--timeout-ms", "60000",
        # A short session timeout: the embedded broker completes a group join after half of it.
        "--session-timeout-ms", "6000",
    ]  # fmt: skip
    for r in request_ids:
        common += ["--request-id", r]
    classpath = ":".join(
        [str(EXAMPLES / "java" / "build"), *(EXAMPLES / "java" / "classpath").read_text().split()]
    )
    return {
        "java": [
            "java", "-cp", classpath, "OrderSnapshotConsumer",
            "--librdkafka", librdkafka_path(), *common,
        ],
        "node": ["node", str(EXAMPLES / "node" / "consumer.js"), *common],
    }  # fmt: skip


def security_env(settings: Settings) -> dict[str, str]:
    """The run's broker security, in the examples' variables (empty for the embedded broker)."""
    pairs = {
        "KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": os.environ.get("CONNECTOR_KAFKA_SASL_PASSWORD"),
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
    }
    return {k: str(v) for k, v in pairs.items() if v}


async def run_example(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


def parse_summary(stdout: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    (summary,) = [x for x in lines if x.get("summary")]
    return {x["request_id"]: x for x in lines if "request_id" in x}, summary


def keyed_lines(stdout: str, field: str) -> dict[str, dict[str, Any]]:
    """The examples' ``status_key`` / ``change_key`` lines, by key."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {x[field]: x for x in lines if field in x}


async def test_java_and_node_consumers_judge_snapshots_by_order_count(
    built_examples: None,
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    settings: Settings,
) -> None:
    repeated, paged, failed, empty = rid("ex-asx"), rid("ex-bg51"), rid("ex-bad"), rid("ex-empty")
    # The same command twice stands in for an at-least-once repeat: two QueryResults and every
    # order twice, with the same request_id and order ids.
    for _ in range(2):
        await commands.send(request_id=repeated, exchange="ascendex", account="ascendex-demo")
    await commands.send(request_id=paged, exchange="bitget", account="bitget-51")
    await commands.send(request_id=failed, exchange="bitget", account="bitget-badpass")
    await commands.send(request_id=empty, exchange="bitget", account="bitget-empty")

    def results(msgs: list[Any], r: str) -> int:
        return sum(m.schema == QUERY_RESULT and m.value["request_id"] == r for m in msgs)

    await outputs.wait_for(lambda msgs: results(msgs, repeated) == 2)
    expected = {r: await outputs.answer(r) for r in (paged, failed, empty)}
    repeat_msgs = [m for m in outputs.messages if m.headers.get("request_id") == repeated]
    repeat_orders = {m.value["order_id"] for m in repeat_msgs if m.schema == ORDER_EVENT}
    assert len(repeat_orders) == 5

    argvs = example_commands(settings, [repeated, paged, failed, empty])
    env = security_env(settings)
    runs = await asyncio.gather(*(run_example(argv, env) for argv in argvs.values()))

    for language, (code, out, err) in zip(argvs, runs, strict=True):
        context = f"{language} example:\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
        assert code == 0, context
        snapshots, summary = parse_summary(out)
        assert summary["all_judged"] is True, context
        assert summary["undecodable"] == 0, context

        s = snapshots[repeated]
        assert (s["status"], s["order_count"], s["complete"]) == ("OK", 5, True), context
        assert s["distinct_orders"] == 5 and set(s["order_ids"]) == repeat_orders, context
        assert s["order_events_seen"] >= 5 and s["results_seen"] >= 1, context

        s = snapshots[paged]
        want = {m.value["order_id"] for m in expected[paged].orders}
        assert (s["status"], s["order_count"], s["complete"]) == ("OK", 51, True), context
        assert set(s["order_ids"]) == want and len(want) == 51, context

        s = snapshots[failed]
        assert (s["status"], s["error_code"], s["order_count"]) == ("FAILED", "AUTH_FAILED", 0)
        assert s["complete"] is False and s["order_ids"] == [], context

        s = snapshots[empty]
        assert (s["status"], s["order_count"], s["complete"]) == ("OK", 0, True), context


async def test_consumer_examples_report_an_unjudged_snapshot(
    built_examples: None, worker: Worker, settings: Settings
) -> None:
    """The examples can fail: a request id that never got a result is reported, exit code 1."""
    argvs = example_commands(settings, [rid("never-sent")])
    for argv in argvs.values():
        argv[argv.index("--timeout-ms") + 1] = "8000"
    env = security_env(settings)
    runs = await asyncio.gather(*(run_example(argv, env) for argv in argvs.values()))
    for language, (code, out, err) in zip(argvs, runs, strict=True):
        assert code == 1, f"{language}: {out}\n{err}"
        snapshots, summary = parse_summary(out)
        assert summary["all_judged"] is False
        (s,) = snapshots.values()
        assert s["status"] is None and s["complete"] is False


async def test_consumer_examples_read_records_of_an_earlier_release(
    built_examples: None,
    worker: Worker,
    commands: Commands,
    outputs: Outputs,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Schema evolution as a consumer meets it: the consumer is on a newer schema (one more field,
    with a default) and the records were written with the previous release. The examples pick the
    writer schema by fingerprint from avro/released/ and resolve it to their own."""
    newer = tmp_path / "avro"
    (newer / "released" / "0.1.0").mkdir(parents=True)
    for name in ("OrderEvent", "QueryResult"):
        current = json.loads((AVRO_DIR / f"{name}.avsc").read_text())
        (newer / "released" / "0.1.0" / f"{name}.avsc").write_text(json.dumps(current))
        current["fields"].append(
            {"name": "added_later", "type": ["null", "string"], "default": None}
        )
        (newer / f"{name}.avsc").write_text(json.dumps(current))

    request_id = rid("ex-evolve")
    await commands.send(request_id=request_id, exchange="bitget", account="bitget-demo")
    answer = await outputs.answer(request_id)
    want = {m.value["order_id"] for m in answer.orders}
    assert answer.result["order_count"] == len(want) > 0

    argvs = example_commands(settings, [request_id])
    for argv in argvs.values():
        argv[argv.index("--avro-dir") + 1] = str(newer)
    env = security_env(settings)
    runs = await asyncio.gather(*(run_example(argv, env) for argv in argvs.values()))
    for language, (code, out, err) in zip(argvs, runs, strict=True):
        context = f"{language} example:\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
        assert code == 0, context
        snapshots, summary = parse_summary(out)
        # Without the released writer schema every record would be an unknown fingerprint.
        assert summary["undecodable"] == 0, context
        s = snapshots[request_id]
        assert s["complete"] is True and set(s["order_ids"]) == want, context


async def test_consumer_examples_decode_account_status_and_order_changes(
    built_examples: None, topics: list[str], settings: Settings
) -> None:
    """The two freshness topics (docs/contract.md, "Freshness as data"), written here with the
    connector's own encoder and records from connector/freshness.py and connector/changes.py
    (the worker does not publish them yet): both examples decode them from the .avsc files
    alone, keep the last status per account and every change per order."""
    status_topic, changes_topic = f"{rid('it-status')}", f"{rid('it-changes')}"
    await create_missing_topics(
        settings, [NewTopic(status_topic, 4, 1), NewTopic(changes_topic, 4, 1)]
    )
    stale_ms = 60_000
    desk = initial("ascendex", "desk-a", stale_after_ms=stale_ms, now_ms=1_000)
    fresh = apply_attempt(desk, "ascendex", "desk-a", Ok("r-1", 2_000, 3), now_ms=2_500,
                          stale_after_ms=stale_ms)  # fmt: skip
    assert fresh is not None
    stale = refresh(fresh, now_ms=2_001 + stale_ms)
    other = apply_attempt(None, "bitget", "f-1", Failed("r-2", 3_000, "AUTH_FAILED", "bad key"),
                          now_ms=3_100, stale_after_ms=stale_ms)  # fmt: skip
    assert stale is not None and other is not None
    statuses = [desk, fresh, stale, other]

    view = {"symbol": "BTCUSDT", "product_type": None, "side": "BUY", "position_side": None,
            "order_type": "LIMIT", "status": "NEW", "price": "100", "stop_price": None,
            "quantity": "2", "filled_quantity": "0", "remaining_quantity": "2",
            "average_fill_price": None, "reduce_only": False, "post_only": False,
            "liquidation": False, "exec_instructions": [], "observed_at": 1_050}  # fmt: skip
    filled = {**view, "status": "PARTIALLY_FILLED", "filled_quantity": "1", "observed_at": 2_050}
    common = {"exchange": "bitget", "account": "f-1", "snapshot_started_at": 2_000,
              "observed_at": 2_050}  # fmt: skip
    changes = [
        {**common, "order_id": "o-1", "change": "OPENED", "changed_fields": [], "before": None,
         "after": view, "detected_by": "r-1", "snapshot_started_at": 1_000, "observed_at": 1_050,
         "seen_open_at": None},
        {**common, "order_id": "o-1", "change": "CHANGED",
         "changed_fields": ["status", "filled_quantity"], "before": view, "after": filled,
         "detected_by": "r-2", "seen_open_at": 1_000},
        {**common, "order_id": "o-2", "change": "CLOSED", "changed_fields": [], "before": view,
         "after": None, "detected_by": "r-2", "seen_open_at": 1_000},
    ]  # fmt: skip
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await producer.start()
    try:
        for record in statuses:
            key = f"{record['exchange']}:{record['account']}".encode()
            value = encode_single_object(ACCOUNT_STATUS, record)
            await producer.send_and_wait(status_topic, value, key=key)
        for change in changes:
            key = f"{change['exchange']}:{change['account']}:{change['order_id']}".encode()
            value = encode_single_object(ORDER_CHANGE, change)
            await producer.send_and_wait(changes_topic, value, key=key)
    finally:
        await producer.stop()

    argvs = example_commands(settings, [])
    extra = ["--account-status-topic", status_topic, "--order-changes-topic", changes_topic,
             "--status-key", "ascendex:desk-a", "--status-key", "bitget:f-1",
             "--change-key", "bitget:f-1:o-1", "--change-key", "bitget:f-1:o-2"]  # fmt: skip
    env = security_env(settings)
    runs = await asyncio.gather(*(run_example([*argv, *extra], env) for argv in argvs.values()))
    for language, (code, out, err) in zip(argvs, runs, strict=True):
        context = f"{language} example:\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
        assert code == 0, context
        _snapshots, summary = parse_summary(out)
        assert summary["all_judged"] is True and summary["undecodable"] == 0, context
        got = keyed_lines(out, "status_key")
        desk_status = got["ascendex:desk-a"]  # the last of three records for the key
        assert (desk_status["status"], desk_status["as_of"], desk_status["rows_are"]) == (
            "STALE", 2_000, "unknown"), context  # fmt: skip
        assert desk_status["as_of_request_id"] == "r-1" and desk_status["open_orders"] == 3
        f1 = got["bitget:f-1"]
        assert (f1["status"], f1["consecutive_failures"], f1["last_error_code"]) == (
            "STALE", 1, "AUTH_FAILED"), context  # fmt: skip
        by_order = keyed_lines(out, "change_key")
        assert by_order["bitget:f-1:o-1"]["changes"] == [
            {"change": "OPENED", "changed_fields": [], "detected_by": "r-1",
             "before_status": None, "after_status": "NEW", "seen_open_at": None},
            {"change": "CHANGED", "changed_fields": ["status", "filled_quantity"],
             "detected_by": "r-2", "before_status": "NEW", "after_status": "PARTIALLY_FILLED",
             "seen_open_at": 1_000},
        ], context  # fmt: skip
        assert by_order["bitget:f-1:o-2"]["changes"] == [
            {"change": "CLOSED", "changed_fields": [], "detected_by": "r-2",
             "before_status": "NEW", "after_status": None, "seen_open_at": 1_000},
        ], context  # fmt: skip
