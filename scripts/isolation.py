"""Measure venue isolation (issue 20, "Bulkheads"): how long a healthy venue's commands wait
behind a dead venue's. A measurement, not a test: it prints figures, it asserts nothing.

The embedded broker, the sandbox and one worker per scenario (connector/devstack.py). In each
scenario AscendEX is dead and Bitget (the sandbox) is healthy; ``--dead`` (default 24) AscendEX
commands are produced first, then ``--healthy`` (default 8) Bitget commands, all at once.

* ``hung``: AscendEX's URLs point at a local TCP server that accepts connections and never
  answers (every AscendEX command waits for its whole command timeout);
* ``refused``: they point at a port nothing listens on (connection refused).

Printed per scenario, once the worker owns its partitions: when each venue's commands were
answered (seconds from the first command produced to its QueryResult's record timestamp: min /
median / max, and the codes), and the
worker's slot use sampled from ``/metrics`` every 0.1 s: the most commands in flight per venue
(``connector_commands_in_flight_by_venue``), waiting per venue, and in total.

``--code DIR`` runs the worker from another checkout (e.g. an older commit, for a before/after);
its metrics may lack the per-venue series, then only the total is shown.

    python scripts/isolation.py [--command-timeout 60] [--code /path/to/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from connector.client import decode_message, topic_partitions  # noqa: E402
from connector.codec import QUERY_RESULT, Serializer  # noqa: E402
from connector.devstack import Stack, Worker, free_port, wait_all_assigned  # noqa: E402
from connector.kafka import client_kwargs, consumer_kwargs, ensure_topics  # noqa: E402
from connector.settings import Settings  # noqa: E402
from connector.statetopic import ensure_state_topic  # noqa: E402

DEAD = ("ascendex", ("ascendex-demo", "ascendex-empty", "ascendex-intent"))
HEALTHY = ("bitget", ("bitget-demo", "bitget-empty", "bitget-1", "bitget-20"))
SAMPLE = re.compile(r'^(connector_commands_(?:in_flight|waiting)(?:_by_venue)?)(?:\{exchange="([^"]*)"\})? (\S+)$')  # fmt: skip


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A local TCP server that accepts connections, reads and never answers; its port."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()


class SlotSampler:
    """Scrapes the worker's /metrics every ``interval`` s; keeps each series' maximum."""

    def __init__(self, worker: Worker, interval: float = 0.1) -> None:
        self.worker = worker
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    text = (await http.get(self.worker.url("/metrics"))).text
                    for line in text.splitlines():
                        m = SAMPLE.match(line)
                        if m:
                            name = m.group(1) + (f"[{m.group(2)}]" if m.group(2) else "")
                            self.peak[name] = max(self.peak.get(name, 0.0), float(m.group(3)))
                await asyncio.sleep(self.interval)

    def __enter__(self) -> SlotSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def scenario_settings(stack: Stack, tag: str) -> dict[str, str]:
    suffix = f"iso-{tag}-{uuid.uuid4().hex[:6]}"
    return {
        "CONNECTOR_APP_ID": suffix,
        "CONNECTOR_TOPIC_QUERY_ORDERS": f"{suffix}-query-orders",
        "CONNECTOR_TOPIC_ORDERS": f"{suffix}-orders",
        "CONNECTOR_TOPIC_RESULTS": f"{suffix}-order-query-results",
        "CONNECTOR_TOPIC_ERRORS": f"{suffix}-order-errors",
        "CONNECTOR_TOPIC_STATE": f"{suffix}-open-orders",
    }


def settings_of(env: dict[str, str]) -> Settings:
    fields = Settings.model_fields
    values = {k.removeprefix("CONNECTOR_").lower(): v for k, v in env.items()}
    return Settings(**{k: v for k, v in values.items() if k in fields})


async def run_scenario(stack: Stack, tag: str, port: int, args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    topics = scenario_settings(stack, tag)
    overrides = {
        **topics,
        "CONNECTOR_ASCENDEX_REST_URL": f"http://127.0.0.1:{port}",
        "CONNECTOR_ASCENDEX_WS_URL": f"ws://127.0.0.1:{port}",
        "CONNECTOR_COMMAND_TIMEOUT_S": str(args.command_timeout),
        "CONNECTOR_LOG_FORMAT": "json",
    }
    if args.code:
        overrides["PYTHONPATH"] = args.code
    settings = settings_of({**stack.env, **overrides})
    await ensure_topics(settings)
    await ensure_state_topic(settings)
    worker = stack.start_worker(f"worker-{tag}", **overrides)
    try:
        await worker.wait_ready(120)
        # Ready is not assigned: measured from a worker that owns its partitions, so the
        # consumer group's join is not in the figures.
        await wait_all_assigned([worker], timeout=120)
        return await measure(settings, worker, args)
    finally:
        await asyncio.to_thread(stack.stop_process, worker)


async def measure(settings: Settings, worker: Worker, args: argparse.Namespace) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await consumer.start()
    await producer.start()
    serializer = Serializer(settings.schema_registry_url)
    try:
        tps = await topic_partitions(consumer, settings.topic_results)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        sent: dict[str, str] = {}  # request id -> venue
        batch = [(DEAD[0], DEAD[1], i, "dead") for i in range(args.dead)]
        batch += [(HEALTHY[0], HEALTHY[1], i, "healthy") for i in range(args.healthy)]
        with SlotSampler(worker) as sampler:
            t0 = time.time()
            futures = []
            for exchange, accounts, i, role in batch:
                account = accounts[i % len(accounts)]
                request_id = f"{role}-{i}-{uuid.uuid4().hex[:6]}"
                sent[request_id] = exchange
                value = json.dumps({"request_id": request_id, "exchange": exchange,
                                    "account": account}).encode()  # fmt: skip
                futures.append(await producer.send(settings.topic_query_orders, value,
                                                   key=f"{exchange}:{account}".encode()))  # fmt: skip
            await asyncio.gather(*futures)
            answers: dict[str, tuple[float, str]] = {}
            deadline = time.monotonic() + args.command_timeout * (args.dead + 8) + 120
            while len(answers) < len(sent) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for msg in records:
                        decoded = await decode_message(msg, serializer)
                        value = decoded.value if isinstance(decoded.value, dict) else {}
                        rid = value.get("request_id")
                        if decoded.schema == QUERY_RESULT and rid in sent:
                            code = value.get("error_code") or value.get("status")
                            answers[rid] = (msg.timestamp / 1000 - t0, str(code))
            await asyncio.sleep(0.3)  # one more sample after the last answer
        peak = sampler.peak
    finally:
        await consumer.stop()
        await producer.stop()
        await serializer.aclose()
    out: dict[str, Any] = {"unanswered": len(sent) - len(answers), "slots": peak}
    for exchange in (DEAD[0], HEALTHY[0]):
        mine = [answers[r] for r, ex in sent.items() if ex == exchange and r in answers]
        times = sorted(t for t, _ in mine)
        out[exchange] = {
            "n": len(mine),
            "min_s": round(times[0], 2) if times else None,
            "median_s": round(statistics.median(times), 2) if times else None,
            "max_s": round(times[-1], 2) if times else None,
            "times_s": [round(t, 2) for t in times],
            "codes": dict(Counter(code for _, code in mine)),
        }
    return out


def show(title: str, result: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for exchange, role in ((HEALTHY[0], "healthy"), (DEAD[0], "dead")):
        r = result[exchange]
        print(f"  {exchange} ({role}), {r['n']} answered: min {r['min_s']} s, median "
              f"{r['median_s']} s, max {r['max_s']} s; codes {r['codes']}")  # fmt: skip
        if role == "healthy":
            print(f"    answer times: {r['times_s']}")
    if result["unanswered"]:
        print(f"  UNANSWERED: {result['unanswered']}")
    slots = result["slots"]
    print("  worker slot use (max sampled from /metrics every 0.1 s):")
    for name in sorted(slots):
        print(f"    {name}: {slots[name]:g}")


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="connector-isolation-"))
    results: dict[str, Any] = {}
    async with Stack(workdir) as stack:
        stack.start_broker()
        stack.start_sandbox()
        async with silent_server() as port:
            results["hung"] = await run_scenario(stack, "hung", port, args)
        results["refused"] = await run_scenario(stack, "refused", free_port(), args)
    print(f"worker code: {args.code or ROOT}; command timeout {args.command_timeout:g} s; "
          f"{args.dead} AscendEX commands produced, then {args.healthy} Bitget commands")  # fmt: skip
    show("AscendEX hangs (accepts connections, never answers)", results["hung"])
    show("AscendEX refuses connections (closed port)", results["refused"])
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command-timeout", type=float, default=60.0,
                        help="CONNECTOR_COMMAND_TIMEOUT_S of the worker (default: 60, the default)")  # fmt: skip
    parser.add_argument("--dead", type=int, default=24, help="commands for the dead venue")
    parser.add_argument("--healthy", type=int, default=8, help="commands for the healthy venue")
    parser.add_argument("--code", help="run the worker from this checkout (PYTHONPATH)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.code:
        args.code = str(Path(args.code).resolve())
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
