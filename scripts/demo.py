"""`make demo`: the whole product on one machine, as an operator would run it.

Starts the embedded broker, the sandbox exchanges and a worker (each with its own ``connector``
subcommand), publishes query-orders commands with ``connector query --wait``, prints the decoded
events, and stops everything. Exits non-zero if any step does not behave as documented.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python scripts/demo.py` from a checkout

from connector.devstack import CONNECTOR, Stack, Worker  # noqa: E402


def show(line: str) -> None:
    """One decoded record, compactly: the fields a risk engineer looks at first."""
    rec = json.loads(line)
    v = rec["value"]
    kind = rec["schema"].rsplit(".", 1)[-1]
    if kind == "OrderEvent":
        print(
            f"  OrderEvent  {v['snapshot_seq']}/{v['snapshot_size']} {v['symbol']:<9} "
            f"({v['unified_symbol']}) {v['side']} {v['order_type'] or '-'} {v['status']} "
            f"price={v['price']} qty={v['quantity']} filled={v['filled_quantity']} "
            f"order_id={v['order_id']}"
        )
    elif kind == "QueryResult":
        print(
            f"  QueryResult {v['status']} order_count={v['order_count']} "
            f"error_code={v['error_code'] or '-'} exchange_calls={v['exchange_calls']} "
            f"took={v['completed_at'] - v['started_at']}ms"
        )
    else:
        print(
            f"  ErrorEvent  {v['code']} exchange_code={v['exchange_code'] or '-'}: {v['message']}"
        )


def query(env: dict[str, str], args: list[str], expect: int) -> list[str]:
    print(f"\n$ connector query {' '.join(args)} --wait")
    out = subprocess.run(
        [*CONNECTOR, "query", *args, "--wait", "--timeout", "90"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    orders = [line for line in lines if '"orderconnector.OrderEvent"' in line]
    for line in lines:
        if line in orders[6:]:
            continue
        show(line)
        if orders[6:] and line == orders[5]:
            print(f"  ... and {len(orders) - 6} more OrderEvents")
    if out.returncode != expect:
        print(out.stderr, file=sys.stderr)
        raise SystemExit(f"expected exit {expect}, got {out.returncode}")
    return lines


def state_step(env: dict[str, str]) -> None:
    """An order of bitget-demo closes on the (sandbox) exchange; the next snapshot retires it
    on the compacted state topic with a tombstone, and `connector state` no longer lists it."""
    import httpx

    base = env["CONNECTOR_BITGET_REST_URL"]
    rows = httpx.get(f"{base}/__sandbox/orders", params={"account": "bitget-demo"}).json()["rows"]
    gone = rows[0]["trackingNo"]
    print(f"\nOrder {gone} of bitget-demo is closed on the exchange (sandbox control API).")
    httpx.post(f"{base}/__sandbox/orders", json={"account": "bitget-demo", "remove": [gone]})
    query(env, ["--exchange", "bitget", "--account", "bitget-demo"], expect=0)
    args = ["state", "--exchange", "bitget", "--account", "bitget-demo", "--format", "summary",
            "--idle-timeout", "3"]  # fmt: skip
    print(f"\n$ connector {' '.join(args)}")
    # State records follow the QueryResult: read again until the tombstone is there (bounded).
    for _ in range(20):
        out = subprocess.run([*CONNECTOR, *args], env=env, capture_output=True, text=True,
                             check=False)  # fmt: skip
        if out.returncode == 0 and gone not in out.stdout and "1 tombstones" in out.stdout:
            break
    else:
        print(out.stdout, out.stderr, file=sys.stderr)
        raise SystemExit(f"the state topic never retired order {gone}")
    print("  " + out.stdout.rstrip().replace("\n", "\n  "))
    topic = env.get("CONNECTOR_TOPIC_STATE", "open-orders")
    print(f"\n$ connector tail {topic} --idle-timeout 2   (the tombstone: a null value)")
    tail = subprocess.run([*CONNECTOR, "tail", topic, "--idle-timeout", "2"], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    for line in tail.stdout.splitlines():
        if gone in line and '"value": null' in line:
            print("  " + line)


def disabled_venue_step(stack: Stack, worker: Worker, env: dict[str, str]) -> None:
    """AscendEX has stopped operating (docs/ascendex.md): the operator switches it off. The
    worker restarts without it and answers its commands at once, VENUE_DISABLED, instead of
    letting each wait out a timeout against an exchange that is gone."""
    print("\nAscendEX has shut down: the worker restarts with CONNECTOR_ASCENDEX_ENABLED=false.")
    stack.stop_process(worker)
    stack.start_worker("worker-ascendex-off", CONNECTOR_ASCENDEX_ENABLED="false")
    query(env, ["--exchange", "ascendex", "--account", "ascendex-demo"], expect=1)
    if "CONNECTOR_BITGET_REST_URL" in env:
        query(env, ["--exchange", "bitget", "--account", "bitget-demo"], expect=0)


def main() -> int:
    with Stack(Path(tempfile.mkdtemp(prefix="connector-demo-"))) as stack:
        # Dev-only: one record per produce batch, so the embedded broker's end offsets are right
        # and Faust recovers the state table fully after a restart (docs/state-topic.md).
        stack.env.update(
            {"CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE": "1", "CONNECTOR_LOG_FORMAT": "text"}
        )
        print("Starting the embedded broker ...")
        broker = stack.start_broker()
        print("  " + broker.wait_line("broker ready", 0))

        print("Starting the sandbox exchanges ...")
        sandbox = stack.start_sandbox()
        print("  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sandbox.items()))
        env = {**os.environ, **stack.env}

        worker = stack.start_worker()
        print(f"Starting the worker (log: {worker.log_path}) ...")

        query(env, ["--exchange", "ascendex", "--account", "ascendex-demo"], expect=0)
        query(
            env,
            ["--exchange", "ascendex", "--account", "ascendex-demo", "--symbol", "ETH-PERP"],
            expect=0,
        )
        query(env, ["--exchange", "ascendex", "--account", "ascendex-empty"], expect=0)
        if "CONNECTOR_BITGET_REST_URL" in env:
            query(env, ["--exchange", "bitget", "--account", "bitget-demo"], expect=0)
            query(
                env,
                ["--exchange", "bitget", "--account", "bitget-120", "--symbol", "BTCUSDT"],
                expect=0,
            )
        query(env, ["--exchange", "ascendex", "--account", "ascendex-badkey"], expect=1)
        query(env, ["--exchange", "ascendex", "--account", "no-such-account"], expect=1)
        if "CONNECTOR_BITGET_REST_URL" in env:
            state_step(env)  # last: the state topic after an order was closed
        if not worker.alive():
            raise SystemExit(f"the worker died; see {worker.log_path}")
        disabled_venue_step(stack, worker, env)
        print("\nDemo complete: every command ended in exactly one QueryResult.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
