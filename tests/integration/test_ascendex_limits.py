"""AscendEX at scale through the broker: session caps, idle closing, refused upgrades, a
reconnect storm, clock skew, key expiry and order intent.

One worker for the module, configured with small limits (5 sessions per account group, a 2 s
idle timeout, a connection budget of 20 per 3 s), against the sandbox simulator with its own
per-IP rules lowered to match (6 sessions per group, 24 connection attempts per 3 s, then a ban).
Each test starts from a reset simulator (no bans, no counts). Waiting is on observable state
(results on the broker, the simulator's counters), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.exchanges.ascendex.simulator import (
    GROUP_ACCOUNT_COUNT,
    GROUP_ACCOUNT_GROUP,
    group_alias,
)
from connector.kafka import ensure_topics, wait_for_broker
from connector.model import now_ms

from .harness import (
    Commands,
    Outputs,
    Stack,
    Worker,
    isolated_env,
    rid,
    settings_from_env,
    start_worker,
    stop_process,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration

AVRO_DIR = Path(__file__).resolve().parents[2] / "avro"
GROUP = [group_alias(n) for n in range(1, GROUP_ACCOUNT_COUNT + 1)]
SESSIONS_PER_GROUP = 5
# The simulated exchange: its caps sit above the connector's, as the real ones do.
SIM_LIMITS = {
    "max_sessions_per_group": SESSIONS_PER_GROUP + 1,
    "connect_limit": 24,
    "connect_window_s": 3.0,
    "ban_s": 60.0,
}
# Filled in by the 30-account tests, printed at the end of the module for the note.
REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module")
async def limited(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("limits")
    env = isolated_env(
        worker_env,
        "limits",
        {
            "CONNECTOR_ASCENDEX_MAX_SESSIONS_PER_GROUP": str(SESSIONS_PER_GROUP),
            "CONNECTOR_ASCENDEX_SESSION_IDLE_TIMEOUT_S": "2",
            "CONNECTOR_ASCENDEX_CONNECT_BUDGET": "20",
            "CONNECTOR_ASCENDEX_CONNECT_BUDGET_WINDOW_S": "3",
            "CONNECTOR_ASCENDEX_KEY_EXPIRY_WARN_DAYS": "7",
            "CONNECTOR_WORKER_CONCURRENCY": "30",
            "CONNECTOR_COMMAND_TIMEOUT_S": "30",
        },
        tmp / "data",
    )
    settings = settings_from_env(env)
    await wait_for_broker(settings)
    await ensure_topics(settings)
    worker = start_worker(env, tmp / "worker.log")
    outputs = Outputs(settings)
    commands = Commands(settings)
    try:
        await wait_ready(worker)
        await outputs.start()
        await commands.start()
        yield Stack(settings, env, worker, outputs, commands)
    finally:
        stop_process(worker.proc)
        worker.log_file.close()
        await outputs.stop()
        await commands.stop()
        if REPORT:
            print(f"\nascendex 30-account report: {REPORT}")


@pytest.fixture
async def sim(
    sandbox: dict[str, str], control: httpx.AsyncClient
) -> AsyncIterator[Callable[..., Any]]:
    """Reset the AscendEX simulator, apply SIM_LIMITS; returns ``call(method, path, json)``."""
    base = sandbox["CONNECTOR_ASCENDEX_REST_URL"]
    (await control.post(f"{base}/__sandbox/reset")).raise_for_status()
    (await control.post(f"{base}/__sandbox/faults", json=SIM_LIMITS)).raise_for_status()

    async def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await control.request(method, f"{base}{path}", json=body)
        response.raise_for_status()
        return response.json()

    yield call


async def stats(sim: Callable[..., Any]) -> dict[str, int]:
    result: dict[str, int] = await sim("GET", "/__sandbox/stats")
    return result


async def until(
    sim: Callable[..., Any], predicate: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    """Poll the simulator's counters until ``predicate`` holds (10 s at most)."""
    current: dict[str, int] = {}

    async def reached() -> bool:
        nonlocal current
        current = await stats(sim)
        return predicate(current)

    await wait_until(reached, timeout=10, what="the simulator's counters", interval=0.1)
    return current


async def ask(stack: Stack, account: str, tag: str, **extra: Any) -> Any:
    request_id = await stack.commands.send(
        request_id=rid(tag), exchange="ascendex", account=account, **extra
    )
    return await stack.outputs.answer(request_id, timeout=60)


async def metric_lines(worker: Worker, name: str) -> list[str]:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{worker.web_port}/metrics")).text
    return [line for line in text.splitlines() if line.startswith(name)]


# --- sessions ---------------------------------------------------------------------------------


async def test_thirty_accounts_of_one_group_within_the_session_cap(
    limited: Stack, sim: Callable[..., Any]
) -> None:
    answers = await asyncio.gather(*(ask(limited, a, "grp") for a in GROUP))
    assert [a.result["status"] for a in answers] == ["OK"] * GROUP_ACCOUNT_COUNT
    assert all(a.result["order_count"] == 1 for a in answers)
    after = await stats(sim)
    assert after["max_open_in_group"] <= SESSIONS_PER_GROUP
    assert after["upgrades_refused"] == 0 and after["bans"] == 0
    assert after["connections"] >= GROUP_ACCOUNT_COUNT  # one authenticated session per account
    gauge = await metric_lines(limited.worker, "connector_exchange_sessions_open")
    (line,) = [g for g in gauge if f'group="{GROUP_ACCOUNT_GROUP}"' in g]
    assert float(line.rsplit(" ", 1)[1]) <= SESSIONS_PER_GROUP
    REPORT["burst"] = {k: after[k] for k in ("connections", "max_open_in_group", "bans")}
    # ...and the idle ones are closed: no session left open once the idle timeout passed.
    # (Other workers of the run may hold sessions in other groups; count this group's only.)
    idle = await until(sim, lambda s: s.get(f"open_in_group_{GROUP_ACCOUNT_GROUP}", 0) == 0)
    assert idle["connections"] == after["connections"]  # closed, not replaced


async def test_reconnect_storm_of_thirty_accounts_stays_within_the_budget(
    limited: Stack, sim: Callable[..., Any]
) -> None:
    warm = await asyncio.gather(
        *(ask(limited, a, "storm-warm") for a in GROUP[:SESSIONS_PER_GROUP])
    )
    assert {a.result["status"] for a in warm} == {"OK"}
    await sim("POST", "/__sandbox/faults", {"disconnect_all": True})  # the network blip
    answers = await asyncio.gather(*(ask(limited, a, "storm") for a in GROUP))
    assert [a.result["status"] for a in answers] == ["OK"] * GROUP_ACCOUNT_COUNT
    after = await stats(sim)
    assert after["bans"] == 0 and after["upgrades_refused"] == 0
    assert after["max_open_in_group"] <= SESSIONS_PER_GROUP
    REPORT["storm"] = {
        k: after[k] for k in ("connections", "upgrade_attempts", "max_open_in_group", "bans")
    }


# --- refused upgrades -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
async def test_refused_upgrade_is_throttling_and_keeps_the_account_group(
    limited: Stack, sim: Callable[..., Any], status: int
) -> None:
    assert (await ask(limited, "ascendex-demo", "up-warm")).result["status"] == "OK"
    before = await stats(sim)
    await sim(
        "POST",
        "/__sandbox/faults",
        {"refuse_upgrades_next": 1000, "refuse_status": status, "disconnect_all": True},
    )
    failed = await ask(limited, "ascendex-demo", f"up-{status}", deadline_ms=now_ms() + 1500)
    assert failed.result["status"] == "FAILED"
    assert failed.result["error_code"] in ("RATE_LIMITED", "EXCHANGE_UNAVAILABLE")
    (error,) = failed.errors
    assert error.value["code"] != "AUTH_FAILED" and error.value["retryable"] is True
    assert error.value["exchange_code"] == str(status)
    await sim("POST", "/__sandbox/faults", {"refuse_upgrades_next": 0})
    again = await ask(limited, "ascendex-demo", f"up-{status}-ok")
    assert again.result["status"] == "OK"
    after = await stats(sim)
    assert after["upgrades_refused_injected"] >= 1
    assert after["rest_info_calls"] == before["rest_info_calls"]  # account group kept


# --- clock ----------------------------------------------------------------------------------


async def test_a_45s_clock_skew_is_corrected(limited: Stack, sim: Callable[..., Any]) -> None:
    await sim("POST", "/__sandbox/faults", {"clock_offset_ms": 45_000})
    # An account whose group is not cached yet: a signed REST call, then a signed WS login.
    answer = await ask(limited, "ascendex-empty", "skew")
    assert answer.result["status"] == "OK", answer.errors
    after = await stats(sim)
    # The first signature was 45 s off and rejected (100011); the clock was re-measured from
    # exchange-info and the retry signed with corrected time.
    assert after["timestamp_rejections"] == 1
    assert after["exchange_info_calls"] >= 1
    log = limited.worker.log_text()
    offsets = [int(x.split("clock offset measured: ")[1].split(" ms")[0])
               for x in log.splitlines() if "ascendex clock offset measured" in x]  # fmt: skip
    assert offsets and 44_000 <= offsets[-1] <= 46_000
    REPORT["clock_offset_ms"] = offsets[-1]


# --- keys -----------------------------------------------------------------------------------


async def test_key_expiry_metric_warning_and_expired_key(
    limited: Stack, sim: Callable[..., Any]
) -> None:
    ok = await ask(limited, "ascendex-expiring", "key-soon")
    assert ok.result["status"] == "OK"
    (line,) = [
        m
        for m in await metric_lines(limited.worker, "connector_api_key_expiry_timestamp_seconds")
        if 'account="ascendex-expiring"' in m
    ]
    expires_s = float(line.rsplit(" ", 1)[1])
    assert 2.9 * 86_400 < expires_s - time.time() < 3.1 * 86_400
    assert "API key of account ascendex-expiring expires in 3.0 days" in limited.worker.log_text()
    failed = await ask(limited, "ascendex-expired", "key-gone")
    assert failed.result["error_code"] == "AUTH_FAILED"
    (error,) = failed.errors
    assert "expired" in error.value["message"]


# --- order intent ---------------------------------------------------------------------------


async def test_order_intent_reaches_consumers_decoded_with_apache_avro(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    import avro.io
    import avro.schema

    request_id = await commands.send(
        request_id=rid("intent"), exchange="ascendex", account="ascendex-intent"
    )
    answer = await outputs.answer(request_id)
    assert answer.result["status"] == "OK" and answer.result["order_count"] == 6
    reader = avro.io.DatumReader(avro.schema.parse((AVRO_DIR / "OrderEvent.avsc").read_text()))
    records = {}
    for msg in outputs.raw:
        headers = dict(msg.headers)
        if headers["request_id"] == request_id.encode() and headers["schema"].endswith(
            b"OrderEvent"
        ):
            record = reader.read(avro.io.BinaryDecoder(io.BytesIO(msg.value[10:])))
            records[record["order_id"]] = record
    assert len(records) == 6
    flags = {
        oid: (r["reduce_only"], r["post_only"], r["liquidation"], r["exec_instructions"])
        for oid, r in records.items()
    }
    assert flags == {
        "intentReduceOnly0001": (True, False, False, ["ReduceOnly"]),
        "intentLiquidation0002": (False, False, True, ["Liquidation"]),
        "intentPosStopMkt0003": (True, False, False, ["PosStopMkt"]),
        "intentPostOnly0004": (False, True, False, ["Post"]),
        "intentOpenStop0005": (False, False, False, ["OpenStopMkt"]),
        "intentLowerCase0006": (True, False, False, ["reduceOnly"]),
    }
    assert records["intentLiquidation0002"]["status"] == "ACK"
