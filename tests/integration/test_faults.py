"""Issue 7's fault scenarios, injected for real: hostile input through the broker, the schema
registry stopped, the broker absent at start and stopped mid-run, the worker killed with SIGKILL
mid-burst, a second (idle) worker, and a stuck exchange call.

Every scenario counts commands sent, answered, lost, repeated, worker restarts and time to
recover, and records them in ``.results/faults.json`` (see faults.record) for the README.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector import codec
from connector.kafka import ensure_topics, partition_for, wait_for_broker

from .faults import (
    Broker,
    assert_clean_log,
    new_broker,
    record,
    results_by_request,
    status,
    wait_count,
    wait_log,
    wait_results,
    wait_status,
)
from .harness import (
    Commands,
    Outputs,
    Stack,
    free_port,
    isolated_env,
    rid,
    settings_from_env,
    start_worker,
    stop_process,
    wait_ready,
    wait_until,
)
from .test_delivery import _secrets
from .test_operations import metric, scrape

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker of this test's own, on a port fixed for the test, not yet started."""
    b = new_broker(tmp_path)
    try:
        yield b
    finally:
        b.stop()


def _json(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


async def send_burst(stack: Stack, ids: list[str]) -> None:
    """Publish one empty-account command per id as fast as the producer takes them, keyed over
    16 keys so they spread across partitions; returns once the broker acknowledged them all."""
    topic = stack.settings.topic_query_orders
    futures = [
        await stack.commands.producer.send(
            topic, _json(request_id=r, exchange="ascendex", account="ascendex-empty"),
            key=f"ascendex:acct-{i % 16}".encode(),
        )
        for i, r in enumerate(ids)
    ]  # fmt: skip
    await asyncio.gather(*futures)


def _malformed(i: int, rnd: random.Random, secrets: list[str]) -> tuple[bytes | None, str | None]:
    """The i-th hostile command and the request_id its answer will carry (None: generated)."""
    r = f"bad-{i}"
    kind = i % 16
    if kind == 0:
        return rnd.randbytes(rnd.randint(1, 300)), None
    if kind == 1:
        valid = {"request_id": r, "exchange": "ascendex", "account": "ascendex-demo",
                 "symbol": None, "product_type": None, "trader_id": None,
                 "requested_at": None, "deadline_ms": None}  # fmt: skip
        encoded = codec.encode_single_object(codec.QUERY_ORDERS, valid)
        return encoded[: rnd.randint(10, len(encoded) - 1)], None
    if kind == 2:
        return _json(request_id=r, exchange=5, account=["x"], symbol={"a": 1}), r
    if kind == 3:
        if i % 320 == 3:  # four of them carry a 1 MB field
            return _json(
                request_id=r, exchange="ascendex", account="a", symbol="S" * 1_000_000
            ), None
        return _json(request_id=r, exchange="ascendex", account="a", symbol="S" * 5000), r
    if kind == 4:  # lone surrogate: json escapes it as \ud800, decoding yields an unpaired one
        return (b'{"request_id": "' + r.encode() + b'\\ud800", "exchange": "ascendex", '
                b'"account": "ascendex-demo"}', r + "\\ud800")  # fmt: skip
    if kind == 5:
        return (
            b'{"request_id": "' + r.encode() + b'", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            None,
        )
    if kind == 6:
        return (b'{"request_id": "' + r.encode() + b'", "exchange": "ascendex", '
                b'"account": "ascendex-demo", "deadline_ms": NaN}', None)  # fmt: skip
    if kind == 7:
        return _json(items=[r, 1, 2]).replace(b'{"items": ', b"").rstrip(b"}"), None
    if kind == 8:
        return rnd.choice([b"", None, b"{}", b"null", b'""']), None
    if kind == 9:
        return _json(request_id=r, exchange="kraken", account="ascendex-demo"), r
    if kind == 10:
        return _json(request_id=r, exchange="ascendex", account="nobody-here"), r
    if kind == 11:
        return _json(request_id=r, exchange="ascendex", account="ascendex-demo", deadline_ms=1), r
    if kind == 12:  # a caller pastes a credential into the command
        s = secrets[i % len(secrets)]
        field = ("request_id", "account", "symbol")[i % 3]
        fields = {"request_id": r, "exchange": "bitget", "account": "nobody-x", field: s}
        if field == "request_id":
            fields["request_id"] = r + s
            return _json(**fields), r + "***"
        return _json(**fields), r
    if kind == 13:
        return b'{"request_id": "' + r.encode() + b'", "requested_at": ' + b"9" * 5000 + b"}", None
    if kind == 14:
        return _json(
            request_id=r, exchange="ascendex", account="ascendex-demo", requested_at=1.5
        ), r
    return (
        b'{"request_id": "' + r.encode() + b'", "exchange": "ascendex", "account": "\\udfff"}',
        r,
    )


async def test_thousand_malformed_commands_never_stop_the_worker(
    isolated_stack: Callable[..., Awaitable[Stack]], sandbox: dict[str, str]
) -> None:
    stack = await isolated_stack("malformed")
    pid = stack.worker.proc.pid
    secrets = _secrets(sandbox["CONNECTOR_ACCOUNTS_FILE"])
    rnd = random.Random(7)
    expected: dict[str, str] = {}  # request_id -> status
    generated = 0
    sent = 0
    started = time.monotonic()
    for i in range(1000):
        if i % 10 == 0:  # 100 valid commands interleaved
            account = ("ascendex-demo", "ascendex-empty", "bitget-demo")[(i // 10) % 3]
            exchange = account.split("-")[0]
            good = f"good-{i}"
            await stack.commands.send_raw(
                _json(request_id=good, exchange=exchange, account=account)
            )
            expected[good] = "OK"
            sent += 1
        value, request_id = _malformed(i, rnd, secrets)
        # A null value (tombstone) needs a key to be sendable at all.
        await stack.commands.send_raw(value, key=None if value is not None else b"k")  # type: ignore[arg-type]
        sent += 1
        if request_id is None:
            generated += 1
        else:
            expected[request_id] = "FAILED"
    await wait_count(stack.outputs, sent, timeout=240)
    elapsed = time.monotonic() - started
    counts = results_by_request(stack.outputs)
    results = {
        m.headers["request_id"]: m.value
        for m in stack.outputs.messages
        if m.schema == codec.QUERY_RESULT
    }
    wrong = {r: (s, results.get(r, {}).get("status")) for r, s in expected.items()
             if counts[r] != 1 or results[r]["status"] != s}  # fmt: skip
    assert not wrong, list(wrong.items())[:10]
    n_generated = sum(c for r, c in counts.items() if r.startswith("generated-"))
    assert n_generated == generated
    assert sum(counts.values()) == sent
    assert not any(
        m.value.get("code") == "INTERNAL"
        for m in stack.outputs.messages
        if m.schema == codec.ERROR_EVENT
    )
    # The worker is the same process, alive and healthy, and logged no traceback.
    assert stack.worker.proc.poll() is None and stack.worker.proc.pid == pid
    assert await status(stack.worker, "/healthz") == 200
    assert_clean_log(stack.worker)
    # Secrets a caller put into commands appear in no output and no log line.
    blobs = [stack.worker.log_text().encode()]
    for msg in stack.outputs.raw:
        blobs += [msg.value or b"", msg.key or b""] + [v for _, v in msg.headers or []]
    for secret in secrets:
        assert not any(secret.encode() in b for b in blobs)
    # Metric labels only take bounded values.
    labels = set(re.findall(r'exchange="([^"]*)"', await scrape(stack.worker)))
    assert labels <= {"ascendex", "bitget", "unknown"}, labels
    lost = len([r for r in expected if not counts[r]]) + max(0, generated - n_generated)
    repeated = sum(counts[r] - 1 for r in expected if counts[r] > 1)
    record("malformed_1000_plus_100_valid", sent=sent, answered=sum(counts.values()),
           lost=lost, repeated=repeated,
           worker_restarts=0, seconds_to_answer_all=round(elapsed, 1))  # fmt: skip


async def test_schema_registry_down_and_back(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    from tests.support.registry import start_registry

    port = free_port()
    runner, url, state = await start_registry(port=port)
    try:
        stack = await isolated_stack("regdown", CONNECTOR_SCHEMA_REGISTRY_URL=url)
        pid = stack.worker.proc.pid
        warm = await stack.commands.send(
            request_id=rid("reg-warm"), exchange="ascendex", account="ascendex-demo"
        )
        await stack.outputs.answer(warm)
        # Confluent-framed commands, framed while the registry is up; the worker has never
        # looked their schema id up, so decoding them needs the registry.
        serializer = codec.Serializer(url)
        framed = []
        for i in range(4):
            cmd = {"request_id": rid(f"reg-framed-{i}"), "exchange": "ascendex", "account": "ascendex-empty",
                   "symbol": None, "product_type": None, "trader_id": None, "requested_at": None,
                   "deadline_ms": None}  # fmt: skip
            value = await serializer.encode(
                stack.settings.topic_query_orders, codec.QUERY_ORDERS, cmd
            )
            framed.append((cmd["request_id"], value))
        await serializer.aclose()

        await runner.cleanup()  # the registry is down: connections are refused
        down_at = time.monotonic()
        ids: dict[str, str] = {}
        for request_id, value in framed:
            await stack.commands.send_raw(value)
            ids[request_id] = "OK"
        for i in range(4):  # a FAILED answer needs the not-yet-registered ErrorEvent subject
            ids[
                await stack.commands.send(
                    request_id=rid(f"reg-unknown-{i}"), exchange="ascendex", account="nobody"
                )
            ] = "FAILED"
        for i in range(4):
            ids[
                await stack.commands.send(
                    request_id=rid(f"reg-ok-{i}"), exchange="ascendex", account="ascendex-demo"
                )
            ] = "OK"
        await wait_log(stack.worker, "schema registry unavailable")
        assert await status(stack.worker, "/healthz") == 200
        await asyncio.sleep(5)  # the outage lasts a few seconds more: the fault, not a sync
        runner, _, _ = await start_registry(port=port, state=state)
        up_at = time.monotonic()
        await wait_results(stack.outputs, list(ids), timeout=120)
        recovered = time.monotonic() - up_at
        counts = results_by_request(stack.outputs)
        for request_id, want in ids.items():
            answer = await stack.outputs.answer(request_id)
            assert counts[request_id] == 1, request_id
            assert answer.result["status"] == want, (request_id, answer.result)
            if want == "FAILED":
                assert answer.result["error_code"] == "UNKNOWN_ACCOUNT"
        assert stack.worker.proc.poll() is None and stack.worker.proc.pid == pid
        assert_clean_log(stack.worker)
        log = stack.worker.log_text()
        assert log.count("schema registry unavailable") == 1
        record("schema_registry_down_and_back", sent=len(ids), answered=len(ids), lost=0,
               repeated=sum(counts[r] - 1 for r in ids), worker_restarts=0,
               outage_seconds=round(up_at - down_at, 1),
               seconds_to_recover=round(recovered, 1))  # fmt: skip
    finally:
        await runner.cleanup()


async def test_broker_absent_at_start_is_waited_for(
    broker: Broker, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = isolated_env(
        worker_env, "late", {"CONNECTOR_KAFKA_BOOTSTRAP": broker.bootstrap}, tmp_path / "data"
    )
    worker = start_worker(env, tmp_path / "worker.log")
    outputs: Outputs | None = None
    commands: Commands | None = None
    try:
        pid = worker.proc.pid
        await wait_status(worker, "/healthz", 200)
        assert await status(worker, "/readyz") == 503
        await asyncio.sleep(5)  # the broker stays absent for 5 s: the fault, not a sync
        assert worker.proc.poll() is None
        broker.start()
        up_at = time.monotonic()
        settings = settings_from_env(env)
        await wait_for_broker(settings)
        await ensure_topics(settings)
        await wait_ready(worker)
        ready_after = time.monotonic() - up_at
        outputs, commands = Outputs(settings), Commands(settings)
        await outputs.start()
        await commands.start()
        ids = [
            await commands.send(
                request_id=rid(f"late-{i}"), exchange="ascendex", account="ascendex-demo"
            )
            for i in range(10)
        ]
        await wait_results(outputs, ids, timeout=90)
        counts = results_by_request(outputs)
        assert all(counts[r] == 1 for r in ids)
        for r in ids:
            assert (await outputs.answer(r)).result["status"] == "OK"
        assert worker.proc.poll() is None and worker.proc.pid == pid
        assert_clean_log(worker)
        assert worker.log_text().count("broker not reachable") == 1
        record("broker_absent_at_start", sent=len(ids), answered=len(ids), lost=0,
               repeated=sum(counts[r] - 1 for r in ids), worker_restarts=0, broker_absent_seconds=5,
               seconds_to_ready_after_broker_start=round(ready_after, 1))  # fmt: skip
    finally:
        stop_process(worker.proc)
        worker.log_file.close()
        if outputs:
            await outputs.stop()
        if commands:
            await commands.stop()


async def test_broker_frozen_and_resumed_mid_commands(
    broker: Broker,
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """Commands in flight when the broker stops answering are answered once it is back; the
    worker neither exits nor floods its log.

    The broker is frozen (SIGSTOP) and resumed (SIGCONT), not killed: the embedded broker keeps
    everything in memory, so a killed one comes back without the records and the group offsets
    it acknowledged, which a real Kafka never does, and the worker's state-table recovery then
    waits for changelog records that no longer exist. (The worker restarting against a killed
    and restarted broker is tested in test_operations.test_worker_survives_a_broker_restart.)"""
    broker.start()
    stack = await isolated_stack("brokerdown", CONNECTOR_KAFKA_BOOTSTRAP=broker.bootstrap)
    pid = stack.worker.proc.pid
    warm = await stack.commands.send(
        request_id=rid("bd-warm"), exchange="ascendex", account="ascendex-demo"
    )
    await stack.outputs.answer(warm)
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    (await control.post(f"{base}/__sandbox/faults", json={"delay_ms": 4000})).raise_for_status()
    requests_before = (await control.get(f"{base}/__sandbox/stats")).json()["requests"]
    in_flight = [
        await stack.commands.send(
            request_id=rid(f"bd-inflight-{i}"), exchange="ascendex", account="ascendex-demo"
        )
        for i in range(6)
    ]

    async def all_in_flight() -> bool:
        return metric(await scrape(stack.worker), "connector_commands_in_flight") >= len(in_flight)

    await wait_until(all_in_flight, timeout=30, what="every command in flight")
    calls = "connector_exchange_call_duration_seconds_count"
    labels = {"exchange": "ascendex", "endpoint": "futures-open-orders"}
    calls_before = metric(await scrape(stack.worker), calls, **labels)
    broker.freeze()
    down_at = time.monotonic()
    try:
        await wait_status(stack.worker, "/readyz", 503)
        # Identical commands may share a fetch (connector/resilience/coalesce.py), so the six
        # commands cost between one and six requests: as many as the exchange received.
        sent = (await control.get(f"{base}/__sandbox/stats")).json()["requests"] - requests_before
        assert 1 <= sent <= len(in_flight)

        async def fetches_done() -> bool:  # the exchange answered; now only publishing waits
            return metric(await scrape(stack.worker), calls, **labels) >= calls_before + sent

        await wait_until(fetches_done, timeout=30, what="the exchange calls done", interval=0.1)
        (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
        assert stack.worker.proc.poll() is None
        await asyncio.sleep(3)  # the outage lasts 3 s more: the fault, not a sync
    finally:
        broker.thaw()
    up_at = time.monotonic()
    after = [
        await stack.commands.send(
            request_id=rid(f"bd-after-{i}"), exchange="ascendex", account="ascendex-demo"
        )
        for i in range(9)
    ]
    ids = [*in_flight, *after]
    await wait_results(stack.outputs, ids, timeout=120)
    recovered = time.monotonic() - up_at
    counts = results_by_request(stack.outputs)
    assert stack.worker.proc.poll() is None and stack.worker.proc.pid == pid
    assert_clean_log(stack.worker)
    log = stack.worker.log_text()
    # One line per state change, not a flood: every "unavailable" line after the first is preceded
    # by an "available again", and there are only a few of them.
    down, up = log.count("broker unavailable"), log.count("broker available again")
    assert down <= up + 1 and down <= 3, (down, up)
    record("broker_frozen_and_back", sent=len(ids) + 1, answered=len(ids) + 1, lost=0,
           repeated=sum(counts[r] - 1 for r in ids), worker_restarts=0,
           outage_seconds=round(up_at - down_at, 1), seconds_to_recover=round(recovered, 1),
           worker_error_lines=sum('"level": "ERROR"' in line for line in log.splitlines()))  # fmt: skip


async def test_sigkill_mid_burst_repeats_only_in_flight_commands(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await isolated_stack("burst")
    warm = await stack.commands.send(
        request_id=rid("burst-warm"), exchange="ascendex", account="ascendex-empty"
    )
    await stack.outputs.answer(warm)
    ids = [rid(f"burst-{i}") for i in range(500)]
    await send_burst(stack, ids)
    await wait_count(stack.outputs, 1 + 150, timeout=120)
    stack.worker.proc.send_signal(signal.SIGKILL)
    stack.worker.proc.wait()
    killed_at = time.monotonic()
    answered_before_kill = len([r for r in ids if results_by_request(stack.outputs)[r]])
    stack.worker = start_worker(stack.env, stack.worker.log_path.with_suffix(".2.log"))
    await wait_results(stack.outputs, ids, timeout=180)
    recovered = time.monotonic() - killed_at
    counts = results_by_request(stack.outputs)
    repeated = sum(counts[r] - 1 for r in ids)
    assert all(counts[r] >= 1 for r in ids)
    assert_clean_log(stack.worker)
    record("sigkill_mid_burst_500", sent=len(ids), answered=len(ids), lost=0, repeated=repeated,
           answered_before_kill=answered_before_kill, worker_restarts=1,
           note="the kill is the fault: one restart by the test (the pod restart)",
           seconds_from_kill_to_all_answered=round(recovered, 1))  # fmt: skip
    # Commits follow acks within kafka_commit_every (16) acks or 0.5 s: a kill repeats about
    # the in-flight window, not seconds of history (85 of 500 with Faust's 2.8 s default).
    assert repeated <= 48, repeated


async def test_second_worker_is_ready_without_a_partition(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    """Replicas = partitions (1) plus a surge pod: the surge pod is an idle group member and
    must be ready, or a rolling update with maxSurge: 1 stalls. Then the old pod is stopped
    (SIGTERM) and the new one takes over."""
    stack = await isolated_stack("surge", CONNECTOR_TOPIC_PARTITIONS="1")
    first = await stack.commands.send(
        request_id=rid("surge-1"), exchange="ascendex", account="ascendex-empty"
    )
    await stack.outputs.answer(first)
    env2 = {
        **stack.env,
        "CONNECTOR_WEB_PORT": str(free_port()),
        "CONNECTOR_DATA_DIR": str(tmp_path / "data-2"),
    }
    second = start_worker(env2, tmp_path / "worker-2.log")
    try:
        started = time.monotonic()
        await wait_ready(second, timeout=60)
        ready_after = time.monotonic() - started
        async with httpx.AsyncClient(timeout=5) as http:
            reasons = [
                (await http.get(f"http://127.0.0.1:{w.web_port}/readyz")).json()["reason"]
                for w in (stack.worker, second)
            ]
        assert any("no partitions assigned" in r for r in reasons), reasons
        stop_process(stack.worker.proc)  # the rolling update removes the old pod
        assert stack.worker.proc.returncode == 0
        stopped_at = time.monotonic()
        after = await stack.commands.send(
            request_id=rid("surge-2"), exchange="ascendex", account="ascendex-demo"
        )
        answer = await stack.outputs.answer(after, timeout=90)
        assert answer.result["status"] == "OK"
        assert_clean_log(second)
        record("second_worker_readiness", sent=2, answered=2, lost=0, repeated=0, worker_restarts=0,
               seconds_to_ready=round(ready_after, 1),
               seconds_to_answer_after_old_pod_stopped=round(time.monotonic() - stopped_at, 1))  # fmt: skip
    finally:
        stop_process(second.proc)
        second.log_file.close()


async def test_liveness_fails_while_work_is_stuck(
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    stack = await isolated_stack("stuck", CONNECTOR_LIVENESS_STALL_S="1.5")
    assert await status(stack.worker, "/healthz") == 200
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    (await control.post(f"{base}/__sandbox/faults", json={"delay_ms": 6000})).raise_for_status()
    request_id = await stack.commands.send(
        request_id=rid("stuck"), exchange="ascendex", account="ascendex-demo"
    )
    await wait_status(stack.worker, "/healthz", 503, timeout=30)
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(f"http://127.0.0.1:{stack.worker.web_port}/healthz")).json()
    assert "pending" in body["reason"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    await stack.outputs.answer(request_id, timeout=60)
    await wait_status(stack.worker, "/healthz", 200, timeout=30)


async def test_stale_commands_are_expired_not_rerun(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    """What a worker under a new consumer group meets when it reads the topic's history
    (CONNECTOR_NEW_GROUP_START=earliest; the default starts after the worker's start). Commands
    whose record timestamp is older than CONNECTOR_COMMAND_MAX_AGE_S are answered EXPIRED
    without calling the exchange; fresh ones in between are served."""
    stack = await isolated_stack(
        "stale", CONNECTOR_COMMAND_MAX_AGE_S="60", CONNECTOR_NEW_GROUP_START="earliest"
    )
    topic = stack.settings.topic_query_orders
    hour_ago = int(time.time() * 1000) - 3_600_000
    old = [rid(f"stale-{i}") for i in range(5)]
    fresh = [rid(f"fresh-{i}") for i in range(3)]
    for i, r in enumerate(old):
        value = _json(request_id=r, exchange="ascendex", account="ascendex-demo")
        await stack.commands.producer.send_and_wait(topic, value, timestamp_ms=hour_ago + i)
    for r in fresh:
        await stack.commands.send(request_id=r, exchange="ascendex", account="ascendex-demo")
    await wait_results(stack.outputs, [*old, *fresh], timeout=60)
    for r in old:
        answer = await stack.outputs.answer(r)
        assert answer.result["status"] == "FAILED" and answer.result["error_code"] == "EXPIRED"
        assert answer.result["exchange_calls"] == 0 and not answer.orders
    for r in fresh:
        assert (await stack.outputs.answer(r)).result["status"] == "OK"
    record("stale_commands_new_group", sent=8, answered=8, lost=0, repeated=0, worker_restarts=0,
           expired_without_exchange_call=len(old))  # fmt: skip


async def test_sigterm_mid_burst_exits_cleanly_and_loses_nothing(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await isolated_stack("sigterm")
    ids = [rid(f"term-{i}") for i in range(200)]
    await send_burst(stack, ids)
    await wait_count(stack.outputs, 50, timeout=120)
    stopped_at = time.monotonic()
    stack.worker.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(stack.worker.proc.wait, 60)
    stop_seconds = time.monotonic() - stopped_at
    assert rc == 0
    assert_clean_log(stack.worker)
    stack.worker = start_worker(stack.env, stack.worker.log_path.with_suffix(".2.log"))
    await wait_results(stack.outputs, ids, timeout=180)
    counts = results_by_request(stack.outputs)
    assert all(counts[r] >= 1 for r in ids)
    # Drained and committed before exit: nothing repeats (measured 0 in every run since the
    # connector computes its own commits; Faust's rule dropped the acks of a commit it then
    # skipped, and a stop repeated up to a few dozen). Bound: the commands one worker runs at once.
    assert sum(counts[r] - 1 for r in ids) <= stack.settings.worker_concurrency
    record("sigterm_mid_burst_200", sent=len(ids), answered=len(ids), lost=0,
           repeated=sum(counts[r] - 1 for r in ids), exit_code=rc,
           seconds_to_exit=round(stop_seconds, 1), worker_restarts=1,
           note="the stop is the fault: one restart by the test (the rolling update's new pod)")  # fmt: skip


async def _committed(settings: Any, topic: str, partition: int) -> int:
    """The group's committed offset (OffsetFetch, without joining the group); -1 for none."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from connector.kafka import client_kwargs

    reader = AIOKafkaConsumer(
        **client_kwargs(settings), group_id=settings.app_id, enable_auto_commit=False
    )
    await reader.start()
    try:
        offset = await reader.committed(TopicPartition(topic, partition))
        return -1 if offset is None else int(offset)
    finally:
        await reader.stop()


async def test_killed_with_a_slow_command_in_flight_loses_nothing(
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """Commands finish out of order: A waits on a slow exchange while B, after it on the same
    partition, is answered, and the worker commits. Faust alone would commit past A (its guard
    is off by one); killed then, A would never be answered. connector/worker/faust_internals.py holds
    the commit at A, so the next worker answers it."""

    stack = await isolated_stack("slowkill")
    topic, n = stack.settings.topic_query_orders, stack.settings.topic_partitions
    base = sandbox["CONNECTOR_BITGET_REST_URL"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()

    async def requests() -> int:
        stats = (await control.get(f"{base}/__sandbox/stats")).json()
        return int(stats["by_account"].get("bitget-demo", {}).get("requests", 0))

    # A's rows are read, then its answer is held for 60 s (the exchange is slow).
    spec = {"account": "bitget-demo", "hold_next_ms": 60_000}
    (await control.post(f"{base}/__sandbox/orders", json=spec)).raise_for_status()
    a = await stack.commands.send(
        request_id=rid("slow-a"), exchange="bitget", account="bitget-demo"
    )

    async def a_fetching() -> bool:  # polls the sandbox: A's fetch is under way
        return await requests() > 0

    await wait_until(a_fetching, timeout=60, what="A's fetch under way")
    partition = partition_for(b"bitget:bitget-demo", n)
    a_offset = stack.commands.ends(topic)[partition] - 1
    b = await stack.commands.send(
        request_id=rid("fast-b"), exchange="bitget", account="bitget-demo", trader_id="t-b"
    )
    assert stack.commands.ends(topic)[partition] == a_offset + 2  # B right after A
    await stack.outputs.answer(b, timeout=60)
    # A commit cycle that saw B acknowledged: D, on another partition, answered and committed.
    other = next(
        acc for acc in ("ascendex-demo", "ascendex-empty", "ascendex-intent")
        if partition_for(f"ascendex:{acc}".encode(), n) != partition
    )  # fmt: skip
    d = await stack.commands.send(request_id=rid("other-d"), exchange="ascendex", account=other)
    await stack.outputs.answer(d, timeout=60)
    q = partition_for(f"ascendex:{other}".encode(), n)
    d_end = stack.commands.ends(topic)[q]

    async def d_committed() -> bool:  # polls the group's offsets
        return await _committed(stack.settings, topic, q) >= d_end

    await wait_until(d_committed, timeout=60, what="D's offset committed", interval=0.1)
    committed = await _committed(stack.settings, topic, partition)
    assert committed <= a_offset, (committed, a_offset)  # not past the unanswered A

    stack.worker.proc.kill()
    await asyncio.to_thread(stack.worker.proc.wait, 30)
    assert a not in results_by_request(stack.outputs)
    stack.worker = start_worker(stack.env, stack.worker.log_path.with_suffix(".2.log"))
    answer = await stack.outputs.answer(a, timeout=120)
    assert answer.result["status"] == "OK"
    record("sigkill_with_slow_command_in_flight", sent=3, answered=3, lost=0,
           repeated=sum(results_by_request(stack.outputs)[r] - 1 for r in (a, b, d)),
           worker_restarts=1, committed_offset=committed, slow_command_offset=a_offset,
           note="Faust alone commits past the slow command; the connector holds the commit")  # fmt: skip
