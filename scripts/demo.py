"""`make demo`: the whole product on one machine, as an operator would run it.

Starts the embedded broker, the sandbox exchanges and a worker (each with its own ``connector``
subcommand), publishes query-orders commands with ``connector query --wait``, prints the decoded
events, and stops everything. Exits non-zero if any step does not behave as documented.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONNECTOR = [sys.executable, "-m", "connector"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line.strip()
        if not line and proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
    raise SystemExit(f"timed out waiting for {needle!r} from {proc.args}")


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def show(line: str) -> None:
    """One decoded record, compactly: the fields a risk engineer looks at first."""
    rec = json.loads(line)
    v = rec["value"]
    kind = rec["schema"].rsplit(".", 1)[-1]
    if kind == "OrderEvent":
        print(
            f"  OrderEvent  {v['snapshot_seq']}/{v['snapshot_size']} {v['symbol']:<9} "
            f"({v['unified_symbol']}) {v['side']} {v['order_type']} {v['status']} "
            f"price={v['price']} qty={v['quantity']} filled={v['filled_quantity']} "
            f"order_id={v['order_id']}"
        )
    elif kind == "QueryResult":
        print(
            f"  QueryResult {v['status']} order_count={v['order_count']} "
            f"error_code={v['error_code']} exchange_calls={v['exchange_calls']} "
            f"took={v['completed_at'] - v['started_at']}ms"
        )
    else:
        print(f"  ErrorEvent  {v['code']} exchange_code={v['exchange_code']}: {v['message']}")


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


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="connector-demo-"))
    port = free_port()
    base_env = {
        **os.environ,
        "CONNECTOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        # Dev-only: the embedded broker completes group joins after session_timeout/2.
        "CONNECTOR_KAFKA_SESSION_TIMEOUT_S": "6",
        "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        # Dev-only: the embedded broker answers a waiting fetch only when the wait expires.
        "CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS": "50",
        # Dev-only: one record per produce batch, so the embedded broker's end offsets are right
        # and Faust recovers the state table fully after a restart (docs/state-topic.md).
        "CONNECTOR_KAFKA_PRODUCER_MAX_BATCH_SIZE": "1",
        "CONNECTOR_LOG_FORMAT": "text",
    }
    procs: list[subprocess.Popen[str]] = []
    try:
        print(f"Starting the embedded broker on 127.0.0.1:{port} ...")
        broker = subprocess.Popen([*CONNECTOR, "broker"], env=base_env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(broker)
        print("  " + wait_line(broker, "broker ready", 60))

        print("Starting the sandbox exchanges ...")
        sandbox = subprocess.Popen(
            [*CONNECTOR, "sandbox", "--workdir", str(work / "sandbox")],
            env=base_env, text=True, stdout=subprocess.PIPE, stderr=(work / "sandbox.log").open("w"),
        )  # fmt: skip
        procs.append(sandbox)
        env_line = wait_line(sandbox, "CONNECTOR_", 30)
        print("  " + env_line)
        env = dict(base_env)
        env.update(dict(t.split("=", 1) for t in shlex.split(env_line)))

        worker_log = work / "worker.log"
        print(f"Starting the worker (log: {worker_log}) ...")
        worker = subprocess.Popen(
            [*CONNECTOR, "worker"],
            env={**env, "CONNECTOR_WEB_PORT": str(free_port()), "CONNECTOR_DATA_DIR": str(work / "data")},
            stdout=worker_log.open("w"), stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(worker)

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
        if worker.poll() is not None:
            raise SystemExit("the worker died; see " + str(worker_log))
        print("\nDemo complete: every command ended in exactly one QueryResult.")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
