"""`make bench`: speed and memory figures, each a ratio against a baseline measured in the same run.

These machines are shared and noisy, so absolute numbers mean little; ratios against a baseline
taken seconds apart on the same machine do. Prints a table and writes .results/bench.json.

1. normalize: parse + normalize + Avro-encode a 120-order AscendEX reply, per order, against the
   floor of any connector: json.loads the reply and json.dumps each row back out.
2. e2e: command -> complete snapshot through the embedded broker, sandbox and a worker
   (p50/p95 over sequential commands), against the broker's own produce -> consume round trip.
3. throughput: 200 concurrent commands (worker concurrency 8), commands/s.
4. memory: the worker's peak RSS after the load, against its RSS when idle and ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from demo import CONNECTOR, free_port, stop, wait_line  # noqa: E402

from connector import codec  # noqa: E402
from connector.exchanges._json import decode  # noqa: E402
from connector.exchanges.ascendex import parsing as asc  # noqa: E402
from connector.exchanges.ascendex.schemas import OpenOrdersReply  # noqa: E402
from connector.model import OrderQuery  # noqa: E402
from connector.pipeline import order_event  # noqa: E402


def bench_normalize() -> dict[str, Any]:
    reference = json.loads(
        (ROOT / "tests/fixtures/ascendex/open_orders_reference.json").read_text()
    )
    row = reference["data"][0]
    rows = [{**row, "orderId": f"{row['orderId']}{i}"} for i in range(120)]
    text = json.dumps({**reference, "data": rows})
    query = OrderQuery("bench", "ascendex", "desk")

    def baseline() -> None:
        for r in json.loads(text)["data"]:
            json.dumps(r)

    def connector() -> None:
        reply = decode(OpenOrdersReply, text, "bench")
        orders = asc.parse_open_orders(reply, unified_symbols={"BTC-PERP": "BTC/USDT:USDT"})
        for i, o in enumerate(orders, 1):
            codec.encode_single_object(
                codec.ORDER_EVENT, order_event(o, query, seq=i, size=len(orders), observed_at=0)
            )

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=20, repeat=7)) / 20 / len(rows)

    base, ours = best(baseline), best(connector)
    return {"baseline_us_per_order": base * 1e6, "connector_us_per_order": ours * 1e6,
            "ratio": ours / base, "orders_per_s": 1 / ours}  # fmt: skip


async def bench_e2e(env: dict[str, str], worker_pid: int, web_port: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from connector.kafka import client_kwargs, consumer_kwargs, ensure_topics
    from connector.settings import Settings
    from tests.integration.harness import Commands, Outputs, settings_from_env

    settings: Settings = settings_from_env(env)
    await ensure_topics(settings)
    outputs, commands = Outputs(settings), Commands(settings)
    await outputs.start()
    await commands.start()
    try:
        # Warm up: the first command waits for the worker to join its group.
        await outputs.answer(
            await commands.send(request_id="warm", exchange="ascendex", account="ascendex-demo"),
            timeout=120,
        )
        rss_idle = _rss_kb(worker_pid)

        # Baseline: the broker's own round trip for one record.
        ping = f"bench-ping-{uuid.uuid4().hex[:6]}"
        producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
        consumer = AIOKafkaConsumer(ping, **consumer_kwargs(settings), auto_offset_reset="earliest")
        await producer.start()
        await consumer.start()
        await producer.send_and_wait(ping, b"warm")
        await consumer.getone()
        base = []
        for _ in range(30):
            t = time.perf_counter()
            await producer.send_and_wait(ping, b"x")
            await consumer.getone()
            base.append(time.perf_counter() - t)
        await producer.stop()
        await consumer.stop()

        async def latencies(exchange: str, account: str, n: int) -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                r = await commands.send(
                    request_id=uuid.uuid4().hex, exchange=exchange, account=account
                )
                await outputs.answer(r, timeout=120)
                out.append(time.perf_counter() - t)
            return out

        asc = await latencies("ascendex", "ascendex-demo", 30)
        bg = await latencies("bitget", "bitget-120", 15)

        ids = [uuid.uuid4().hex for _ in range(200)]
        t = time.perf_counter()
        await asyncio.gather(
            *(
                commands.send(request_id=r, exchange="ascendex", account="ascendex-demo")
                for r in ids
            )
        )
        for r in ids:
            await outputs.answer(r, timeout=300)
        elapsed = time.perf_counter() - t
        rss_peak = _rss_kb(worker_pid, "VmHWM")
    finally:
        await outputs.stop()
        await commands.stop()

    def p(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if len(xs) > 1 else xs[0] * 1000

    b50 = p(base, 50)
    return {
        "broker_round_trip_ms_p50": b50,
        "ascendex_demo_5_orders_ms": {"p50": p(asc, 50), "p95": p(asc, 95), "ratio_p50": p(asc, 50) / b50},
        "bitget_120_orders_3_pages_ms": {"p50": p(bg, 50), "p95": p(bg, 95), "ratio_p50": p(bg, 50) / b50},
        "throughput_200_concurrent_commands": {"seconds": elapsed, "commands_per_s": len(ids) / elapsed,
                                               "order_events_per_s": 5 * len(ids) / elapsed},
        "worker_rss_mb": {"idle": rss_idle / 1024, "peak": rss_peak / 1024, "ratio": rss_peak / rss_idle},
    }  # fmt: skip


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def main() -> int:
    import shlex
    import subprocess
    import tempfile

    results: dict[str, Any] = {"normalize_120_order_reply": bench_normalize()}
    print(json.dumps(results, indent=2), flush=True)

    work = Path(tempfile.mkdtemp(prefix="connector-bench-"))
    port = free_port()
    env = {**os.environ, "CONNECTOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
           "CONNECTOR_KAFKA_SESSION_TIMEOUT_S": "6", "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_S": "1",
           "CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS": "50",
           "CONNECTOR_LOG_LEVEL": "WARNING"}  # fmt: skip
    procs: list[subprocess.Popen[str]] = []
    try:
        broker = subprocess.Popen(
            [*CONNECTOR, "broker"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(broker)
        wait_line(broker, "broker ready", 60)
        sandbox = subprocess.Popen([*CONNECTOR, "sandbox", "--workdir", str(work)], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(sandbox)
        env.update(dict(t.split("=", 1) for t in shlex.split(wait_line(sandbox, "CONNECTOR_", 30))))
        web_port = free_port()
        env.update({"CONNECTOR_WEB_PORT": str(web_port), "CONNECTOR_DATA_DIR": str(work / "data")})
        worker = subprocess.Popen([*CONNECTOR, "worker"], env=env, text=True,
                                  stdout=(work / "worker.log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(worker)
        results["e2e"] = asyncio.run(
            bench_e2e(
                {k: v for k, v in env.items() if k.startswith("CONNECTOR_")}, worker.pid, web_port
            )
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
    out = ROOT / ".results" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["e2e"], indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
