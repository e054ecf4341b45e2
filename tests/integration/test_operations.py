"""What an operator relies on: health, metrics, schema registry mode, crash recovery."""

from __future__ import annotations

import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from connector import codec
from tests.support.registry import start_registry

from .harness import Commands, Outputs, Stack, Worker, rid, start_worker, wait_until
from .test_state_worker import StateRecords

pytestmark = pytest.mark.integration


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one Prometheus sample (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


async def scrape(worker: Worker) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(f"http://127.0.0.1:{worker.web_port}/metrics")
        resp.raise_for_status()
        return resp.text


async def test_health_endpoints(worker: Worker, commands: Commands, outputs: Outputs) -> None:
    # Once a command has been answered the worker is certainly assigned and ready.
    await outputs.answer(
        await commands.send(request_id=rid("health"), exchange="ascendex", account="ascendex-empty")
    )
    async with httpx.AsyncClient(timeout=5) as http:
        live = await http.get(f"http://127.0.0.1:{worker.web_port}/healthz")
        ready = await http.get(f"http://127.0.0.1:{worker.web_port}/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_metrics_count_what_happened(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    before = await scrape(worker)
    ok = [
        await commands.send(request_id=rid("m-ok"), exchange="ascendex", account="ascendex-demo")
        for _ in range(2)
    ]
    bad = await commands.send(request_id=rid("m-bad"), exchange="ascendex", account="nobody")
    answers = [await outputs.answer(r) for r in [*ok, bad]]
    n_orders = sum(len(a.orders) for a in answers)
    after = await scrape(worker)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("connector_commands_total", exchange="ascendex", status="OK") == 2
    assert delta("connector_commands_total", exchange="ascendex", status="FAILED") == 1
    assert delta("connector_order_events_published_total", exchange="ascendex") == n_orders > 0
    assert delta("connector_errors_total", code="UNKNOWN_ACCOUNT") == 1
    assert delta("connector_command_duration_seconds_count", exchange="ascendex") == 3
    assert (
        delta(
            "connector_exchange_call_duration_seconds_count",
            exchange="ascendex",
            endpoint="futures-open-orders",
        )
        >= 2
    )
    assert metric(after, "connector_commands_in_flight") == 0


async def test_schema_registry_mode(isolated_stack: Callable[..., Awaitable[Stack]]) -> None:
    runner, url, state = await start_registry()
    try:
        stack = await isolated_stack("registry", CONNECTOR_SCHEMA_REGISTRY_URL=url)
        request_id = await stack.commands.send(
            request_id=rid("reg"), exchange="ascendex", account="ascendex-demo"
        )
        answer = await stack.outputs.answer(request_id)
        assert answer.result["status"] == "OK" and answer.orders
        raw = [m for m in stack.outputs.raw if dict(m.headers)["request_id"] == request_id.encode()]
        assert raw and all(m.value[:1] == b"\x00" for m in raw)
        # The state topic's records follow the QueryResult: wait for them, then its subject.
        records = StateRecords(stack.settings)
        await records.start()
        try:
            await records.wait(request_id, len(answer.orders))
        finally:
            await records.stop()
        assert set(state.subjects) == {
            f"{stack.settings.topic_orders}-value",
            f"{stack.settings.topic_results}-value",
            f"{stack.settings.topic_state}-value",  # the state topic's upserts (OrderEvent)
        }
        # An Avro command in Confluent framing is accepted too.
        serializer = codec.Serializer(url)
        cmd = {"request_id": rid("reg-cmd"), "exchange": "ascendex", "account": "ascendex-empty",
               "symbol": None, "product_type": None, "trader_id": None, "requested_at": None,
               "deadline_ms": None}  # fmt: skip
        await stack.commands.send_raw(
            await serializer.encode(stack.settings.topic_query_orders, codec.QUERY_ORDERS, cmd)
        )
        await serializer.aclose()
        assert (await stack.outputs.answer(cmd["request_id"])).result["status"] == "OK"
    finally:
        await runner.cleanup()


async def test_worker_killed_mid_command_loses_nothing(
    isolated_stack: Callable[..., Awaitable[Stack]],
    sandbox: dict[str, str],
    control: httpx.AsyncClient,
) -> None:
    """SIGKILL while a command is in flight: its offset was not committed, so a new worker
    answers it (at-least-once)."""
    stack = await isolated_stack("crash")
    warm = await stack.commands.send(
        request_id=rid("crash-warm"), exchange="ascendex", account="ascendex-empty"
    )
    await stack.outputs.answer(warm)
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    (await control.post(f"{base}/__sandbox/faults", json={"delay_ms": 4000})).raise_for_status()
    request_id = await stack.commands.send(
        request_id=rid("crash"), exchange="ascendex", account="ascendex-demo"
    )

    async def in_flight() -> bool:
        # Polls another process's gauge: there is no event to wait on across processes.
        return metric(await scrape(stack.worker), "connector_commands_in_flight") >= 1

    await wait_until(in_flight, timeout=30, what="the command in flight")
    stack.worker.proc.send_signal(signal.SIGKILL)
    stack.worker.proc.wait()
    assert not any(m.headers.get("request_id") == request_id for m in stack.outputs.messages)
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    stack.worker = start_worker(stack.env, stack.worker.log_path.with_suffix(".2.log"))
    answer = await stack.outputs.answer(request_id, timeout=120)
    assert answer.result["status"] == "OK"
    assert answer.result["order_count"] == len(answer.orders) > 0


async def test_logs_are_json_lines_with_request_context(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    request_id = await commands.send(request_id=rid("logs"), exchange="ascendex", account="nobody")
    await outputs.answer(request_id)
    import json

    records = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("request_id") == request_id]
    assert mine, "no log line carries the command's request_id"
    assert all(r["exchange"] == "ascendex" and r["account"] == "nobody" for r in mine)
    assert {"time", "level", "logger", "message"} <= set(mine[0])


async def test_worker_survives_a_broker_restart(
    isolated_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    """Its own embedded broker (whatever CONNECTOR_KAFKA_BOOTSTRAP says), since the test must
    stop and start it: readiness drops while it is down, and the worker serves again after."""
    from connector import devstack
    from connector.kafka import ensure_topics, wait_for_broker
    from connector.statetopic import ensure_internal_topics

    port = devstack.free_port()
    log = tmp_path / "broker.log"
    broker = devstack.start_broker(port, log, bare=True)
    try:
        stack = await isolated_stack("restart", CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
        first = await stack.commands.send(
            request_id=rid("before"), exchange="ascendex", account="ascendex-empty"
        )
        assert (await stack.outputs.answer(first)).result["status"] == "OK"

        broker.stop()
        await _wait_readyz(stack.worker, 503)
        assert stack.worker.proc.poll() is None

        broker = devstack.start_broker(port, log, bare=True)
        await wait_for_broker(stack.settings)
        await ensure_topics(stack.settings)  # in-memory storage: the restart lost them
        await ensure_internal_topics(stack.settings)  # with the worker's internal topics
        await _wait_readyz(stack.worker, 200)
        second = await stack.commands.send(
            request_id=rid("after"), exchange="ascendex", account="ascendex-demo"
        )
        answer = await stack.outputs.answer(second, timeout=120)
        assert (
            answer.result["status"] == "OK"
            and len(answer.orders) == answer.result["order_count"] > 0
        )
    finally:
        broker.stop()


async def _wait_readyz(worker: Worker, status: int, timeout: float = 60) -> None:
    async with httpx.AsyncClient(timeout=5) as http:

        async def answers() -> bool:
            return (await http.get(worker.url("/readyz"))).status_code == status

        await wait_until(answers, timeout=timeout, what=f"/readyz {status}", interval=0.2)


async def test_status_and_metrics_show_state_and_no_secret(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    """A real worker with known secrets configured (accounts file, Kafka SASL password, registry
    basic auth): /status shows version, every setting, aliases and venue state; no secret
    appears in /status, /metrics or the worker's log."""
    from connector.accounts_file import load_accounts
    from connector.metrics import faust_prefix
    from connector.version import __version__

    sasl_password = "sasl-pw-" + rid("s")
    registry_secret = "registry-pw-" + rid("r")
    stack = await isolated_stack(
        "status",
        CONNECTOR_KAFKA_SASL_USERNAME="operator",
        CONNECTOR_KAFKA_SASL_PASSWORD=sasl_password,  # unused with PLAINTEXT, still a secret
        CONNECTOR_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"operator:{registry_secret}",
    )
    accounts = load_accounts(stack.env["CONNECTOR_ACCOUNTS_FILE"])
    secrets = {sasl_password, registry_secret}
    for account in accounts:
        for secret in (account.api_key, account.api_secret, account.passphrase):
            if secret is not None:
                secrets.add(secret.reveal())
    ok = await stack.commands.send(
        request_id=rid("st-ok"), exchange="ascendex", account="ascendex-demo"
    )
    assert (await stack.outputs.answer(ok)).result["status"] == "OK"
    expiring = await stack.commands.send(
        request_id=rid("st-exp"), exchange="ascendex", account="ascendex-expiring"
    )
    await stack.outputs.answer(expiring)
    bad = await stack.commands.send(request_id=rid("st-bad"), exchange="bitget", account="nobody")
    await stack.outputs.answer(bad)

    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(f"http://127.0.0.1:{stack.worker.web_port}/status")
        resp.raise_for_status()
        status_text = resp.text
        status = resp.json()
        metrics_text = (await http.get(f"http://127.0.0.1:{stack.worker.web_port}/metrics")).text

    assert status["version"] == __version__
    config = status["configuration"]
    assert config["kafka_sasl_password"] == "***"
    assert config["schema_registry_basic_auth_user_info"] == "***"
    assert config["kafka_sasl_username"] == "operator"
    assert config["app_id"] == stack.settings.app_id
    ascendex = status["venues"]["ascendex"]
    expected_aliases = sorted(a.alias for a in accounts if a.exchange == "ascendex")
    assert ascendex["accounts"] == expected_aliases and "ascendex-demo" in expected_aliases
    assert ascendex["last_success_s"] is not None and ascendex["consecutive_failures"] == 0
    assert ascendex["clock_offset_s"] is not None  # measured before signing
    # The sandbox key of "ascendex-expiring" has three days left (keys that never expire: absent).
    assert set(ascendex["api_key_expiry_s"]) == {"ascendex-expiring"}
    assert "configuration" in ascendex and "bitget" in status["venues"]
    # UNKNOWN_ACCOUNT is the caller's mistake, not a venue failure.
    assert status["venues"]["bitget"]["consecutive_failures"] == 0

    # /metrics: ours and Faust's sensor metrics from one registry.
    prefix = faust_prefix(stack.settings.app_id)
    assert metric(metrics_text, "connector_build_info", version=__version__) == 1
    assert f"{prefix}_topic_partition_end_offset" in metrics_text
    assert f"{prefix}_consumer_commit_latency_bucket" in metrics_text
    assert "connector_exchange_last_success_timestamp_seconds" in metrics_text

    log_text = stack.worker.log_text()
    for secret in secrets:
        assert secret not in status_text
        assert secret not in metrics_text
        assert secret not in log_text
