"""`make bench`: every figure a ratio against a baseline measured in the same run.

These machines are shared and noisy, so absolute numbers mean little; ratios against a baseline
taken seconds apart on the same machine do. Every case runs ``--repeats`` times (default 3),
connector and baseline interleaved, and the table shows medians. Writes BENCHMARKS.md (table,
machine, exact command) and .results/bench.json.

1. normalize: decode + parse + normalize + sanitize + Avro-encode a 1,000-order AscendEX reply
   (the pipeline's own code), per order, against fastavro encoding the same output records alone
   and against ccxt's ``ascendex.parse_order`` on the same rows (when ccxt is installed;
   ``make bench`` installs it into the venv, never into the lock files).
2. end to end, measured from outside with librdkafka clients (confluent-kafka): the embedded
   broker, the sandbox and one connector worker, against the naive Faust worker of
   scripts/bench_naive.py (new WebSocket per command, json + fastavro, one awaited send per
   event, the snapshot's acks awaited before its result) on its own topics: 1,000-, 100- and
   5-order snapshots, order events/s and commands/s.
3. latency: commands at 50/s, p50/p99 from command produced to QueryResult consumed, with 0 ms
   and 50 ms of simulated exchange latency (the sandbox's ``delay_ms``).
4. exchange side: WebSockets the sandbox accepted during the connector's runs, per account.
5. memory: the worker's RSS idle, peak after the heavy cases, and peak with 10,000 commands
   queued (``--queued``).
6. Bitget, on the same worker: the exchange requests of 30 identical concurrent commands
   (coalescing), and a backlog of commands for one account that cannot share a fetch
   (``--backlog``): share of the configured request rate used, and violations (HTTP 429).
7. scale out: one connector worker against two (own consumer groups, own 8-partition command
   topics, interleaved), 1,000-order (events/s) and 5-order (commands/s) snapshots, with the CPU
   each process used, since on a small machine the cores bound the ratio.
The CPU of the sandbox, the broker and the workers is reported for every case, to show what
bounds the measurement (the sandbox must not).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from connector import codec  # noqa: E402
from connector.account import Accounts  # noqa: E402
from connector.devstack import Stack, free_port  # noqa: E402
from connector.exchanges._json import decode  # noqa: E402
from connector.exchanges.ascendex import parsing as asc  # noqa: E402
from connector.exchanges.ascendex import simulator as asc_sim  # noqa: E402
from connector.exchanges.ascendex.schemas import OpenOrdersReply  # noqa: E402
from connector.kafka import partition_for  # noqa: E402
from connector.model import FetchResult, OrderQuery  # noqa: E402
from connector.pipeline import Pipeline  # noqa: E402
from connector.settings import Settings  # noqa: E402

# The benchmark's own AscendEX accounts, seeded into the sandbox by its orders file (see
# orders_file): four with 1,000-order books, four with 100-order books.
BIG = [f"ascendex-bench-1000-{c}" for c in range(1, 5)]
MID = [f"ascendex-bench-100-{c}" for c in range(1, 5)]
SMALL = ["ascendex-demo"]  # 5 orders
# Scale-out: eight accounts of each size on an 8-partition command topic, one account per
# partition (its own: murmur2 of ``ascendex:<account>``, where the worker handles an account's
# commands), so any even split of the partitions gives two workers the same load. The four
# 1,000-order bench accounts, plus sandbox group accounts given books by the sandbox's
# --orders-file (orders_file): four copies of the 1,000-order book, eight 5-order books.
SCALE_PARTITIONS = 8


def _home(account: str) -> int:
    return partition_for(f"ascendex:{account}".encode(), SCALE_PARTITIONS)


def _one_per_partition(taken: list[str], exclude: set[str]) -> list[str]:
    """Sandbox group accounts that, with ``taken``, put one account on every partition."""
    free = set(range(SCALE_PARTITIONS)) - {_home(a) for a in taken}
    picked: list[str] = []
    for n in range(1, asc_sim.GROUP_ACCOUNT_COUNT + 1):
        alias = asc_sim.group_alias(n)
        if alias not in exclude and _home(alias) in free:
            free.discard(_home(alias))
            picked.append(alias)
    assert not free, f"no sandbox group account for partitions {sorted(free)}"
    return picked


SCALE_BIG = [*BIG, *_one_per_partition(BIG, set())]
SCALE_SMALL = _one_per_partition([], set(SCALE_BIG))
BENCH_LIMITS = {"connect_limit": 10**9, "req_level1": 10**9, "req_level2": 10**9,
                "admin_level1": 10**9, "admin_level2": 10**9,
                "max_sessions_per_group": 10**6}  # fmt: skip


def book(alias: str, n: int) -> list[dict[str, Any]]:
    """A seeded bench account's book: ``n`` limit orders, alternately BTC-PERP buys and ETH-PERP
    sells, each row with the account's own accountId (the one the sandbox derives)."""
    account_id = asc_sim.seeded_account(alias).futures_account_id
    tag = alias.removeprefix("ascendex-bench-").replace("-", "x")
    return [asc_sim.order_row(account_id, orderId=f"bench{tag}o{i:06d}", time=1615696544843 + i,
                              lastExecTime=1615696544851 + i, seqNum=i,
                              symbol=("BTC-PERP", "ETH-PERP")[i % 2], side=("Buy", "Sell")[i % 2],
                              price=f"{60000 + i}.5" if i % 2 == 0 else f"{3000 + i}.25",
                              orderQty="0.0100") for i in range(n)]  # fmt: skip


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# --- 1. normalize ---------------------------------------------------------------------------


def bench_normalize(repeats: int) -> dict[str, Any]:
    import fastavro

    rows = book(BIG[0], 1000)
    text = json.dumps({"m": "futures-open-orders", "code": 0, "id": "x", "ac": "FUTURES",
                       "data": rows})  # fmt: skip
    pipeline = Pipeline(Settings(), Accounts([]), {}, codec.Serializer())
    query = OrderQuery("bench", "ascendex", "desk")
    unified = {"BTC-PERP": "BTC/USDT:USDT", "ETH-PERP": "ETH/USDT:USDT"}

    def connector() -> None:
        reply = decode(OpenOrdersReply, text, "bench")
        orders = asc.parse_open_orders(reply, unified_symbols=unified)
        outcome = pipeline._ok(query, FetchResult(orders, calls=1), 0)
        for rec in outcome.orders:
            codec.encode_single_object(rec.schema, rec.value)

    reply = decode(OpenOrdersReply, text, "bench")
    records = [r.value for r in pipeline._ok(
        query, FetchResult(asc.parse_open_orders(reply, unified_symbols=unified), calls=1), 0
    ).orders]  # fmt: skip
    parsed = codec.schema(codec.ORDER_EVENT).parsed

    def fastavro_alone() -> None:
        for rec in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, rec)

    ccxt_fn = None
    ccxt_version = None
    try:
        import ccxt  # type: ignore[import-not-found]

        ccxt_version = ccxt.__version__
        exchange = ccxt.ascendex()

        def ccxt_parse() -> None:
            for row in json.loads(text)["data"]:
                exchange.parse_order(row)

        ccxt_fn = ccxt_parse
    except ImportError:
        pass

    def per_order(fn: Any) -> float:
        return min(timeit.repeat(fn, number=1, repeat=3)) / len(rows)

    runs: dict[str, list[float]] = {"connector": [], "fastavro": [], "ccxt": []}
    for _ in range(repeats):
        runs["connector"].append(per_order(connector))
        runs["fastavro"].append(per_order(fastavro_alone))
        if ccxt_fn is not None:
            runs["ccxt"].append(per_order(ccxt_fn))
    out: dict[str, Any] = {
        "orders": len(rows),
        "connector_us_per_order": median(runs["connector"]) * 1e6,
        "fastavro_alone_us_per_order": median(runs["fastavro"]) * 1e6,
        "speed_vs_fastavro": median(
            [f / c for f, c in zip(runs["fastavro"], runs["connector"], strict=True)]
        ),
    }
    if runs["ccxt"]:
        out["ccxt_version"] = ccxt_version
        out["ccxt_parse_order_us_per_order"] = median(runs["ccxt"]) * 1e6
        out["speed_vs_ccxt"] = median(
            [x / c for x, c in zip(runs["ccxt"], runs["connector"], strict=True)]
        )
    return out


# --- 2-5. end to end ----------------------------------------------------------------------


class Watcher:
    """A librdkafka consumer thread over the output topics: per request_id, the events seen and
    when its QueryResult arrived. Reads headers only (no decoding), so it costs little CPU."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        from confluent_kafka import Consumer

        self.result_topics = {topics["connector_results"], topics["naive_results"], topics["ping"]}
        self.events: dict[str, int] = {}
        self.done: dict[str, float] = {}
        self.results: dict[str, int] = {}  # QueryResults per request_id (the contract: one)
        self.answers: dict[str, tuple[str, int]] = {}  # the connector's: (status, order_count)
        self._decoded = topics["connector_results"]
        self._lock = threading.Lock()
        self._stop = False
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 20})  # fmt: skip
        self._consumer.subscribe([t for k, t in topics.items() if not k.endswith("_commands")])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            for msg in self._consumer.consume(num_messages=2000, timeout=0.05):
                if msg.error():
                    continue
                rid = next((v.decode() for k, v in msg.headers() or () if k == "request_id"), "")
                now = time.perf_counter()
                with self._lock:
                    if msg.topic() in self.result_topics:
                        self.done[rid] = now
                        self.results[rid] = self.results.get(rid, 0) + 1
                        if msg.topic() == self._decoded:
                            try:
                                _, rec = codec.decode_single_object(msg.value())
                                self.answers[rid] = (rec["status"], rec["order_count"])
                            except (codec.DecodeError, KeyError):
                                self.answers[rid] = ("undecodable", -1)
                    else:
                        self.events[rid] = self.events.get(rid, 0) + 1

    stack: Stack | None = None  # fail fast if one of its processes dies

    def wait(self, ids: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(r in self.done for r in ids):
                    return
            dead = self.stack.dead() if self.stack else []
            if dead:
                raise RuntimeError(f"exited during the benchmark: {dead}")
            time.sleep(0.02)
        missing = sum(r not in self.done for r in ids)
        raise TimeoutError(f"{missing} of {len(ids)} commands unanswered after {timeout}s")

    def complete(self, ids: list[str], timeout: float = 30) -> bool:
        """After ``wait``: whether each command got status OK, exactly one QueryResult and as many
        OrderEvents as its result counts (events and results are on different topics, so the
        last events may be consumed just after the result)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                ok = all(self.answers.get(r, ("", -1))[0] == "OK" and self.results.get(r) == 1
                         and self.events.get(r, 0) == self.answers[r][1] for r in ids)  # fmt: skip
            if ok or time.monotonic() > deadline:
                return ok
            time.sleep(0.05)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self._consumer.close()


class Bench:
    def __init__(self, env: dict[str, str], topics: dict[str, str], pids: dict[str, int]) -> None:
        from confluent_kafka import Producer

        self.env = env
        self.topics = topics
        self.pids = pids
        # murmur2_random: the Java client's partitioner, so a command keyed
        # ``<exchange>:<account>`` lands on its account's partition and the worker handles it
        # there, without forwarding it (docs/state-topic.md "Routing"); librdkafka's default
        # (CRC32) would cost every command an extra hop.
        self.producer = Producer({"bootstrap.servers": env["CONNECTOR_KAFKA_BOOTSTRAP"],
                                  "linger.ms": 5, "acks": "all",
                                  "partitioner": "murmur2_random"})  # fmt: skip
        self.watcher = Watcher(env["CONNECTOR_KAFKA_BOOTSTRAP"], topics)

    def send(self, who: str, account: str, rid: str, partition: int | None = None,
             exchange: str = "ascendex", **extra: str) -> float:  # fmt: skip
        """One command on ``who``'s command topic (connector, naive, scale1, scale2), keyed
        ``exchange:account`` as producers do; ``partition`` pins it (the scale-out case)."""
        topic = self.topics[f"{who}_commands"]
        value = json.dumps({"request_id": rid, "exchange": exchange, "account": account, **extra})
        key = f"{exchange}:{account}".encode()
        if partition is None:
            self.producer.produce(topic, value.encode(), key=key)
        else:
            self.producer.produce(topic, value.encode(), key=key, partition=partition)
        self.producer.poll(0)
        return time.perf_counter()

    def load(self, who: str, accounts: list[str], n: int,
             pinned: bool = False) -> dict[str, Any]:  # fmt: skip
        """``n`` commands at once, round-robin over ``accounts``; events/s and commands/s, and
        the CPU each process of the stack used meanwhile (share of one core), and the whole
        machine's (cores busy, other jobs included). ``pinned``: on the account's own partition of
        an 8-partition topic (the scale-out case)."""
        ids = [f"{who}-{uuid.uuid4().hex}" for _ in range(n)]
        cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        busy0 = machine_busy()
        t0 = time.perf_counter()
        for i, rid in enumerate(ids):
            j = i % len(accounts)
            self.send(who, accounts[j], rid, partition=_home(accounts[j]) if pinned else None)
        self.producer.flush()
        self.watcher.wait(ids)
        elapsed = max(self.watcher.done[r] for r in ids) - t0
        events = sum(self.watcher.events.get(r, 0) for r in ids)
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / elapsed for name, pid in self.pids.items()
               if name in cpu0}  # fmt: skip
        return {"seconds": elapsed, "events_per_s": events / elapsed, "commands_per_s": n / elapsed,
                "events": events, "sandbox_cpu_share": cpu["sandbox"], "cpu_share": cpu,
                "machine_cores_busy": machine_busy(busy0)}  # fmt: skip

    def latency(self, who: str, rate: float, seconds: float) -> dict[str, float]:
        """Commands at ``rate``/s, round-robin over the 5- and 100-order accounts; p50/p99 from
        produced to result consumed. ``who="ping"``: the baseline, one record produced to a
        topic and consumed (one broker hop; a command makes two: command in, result out)."""
        n = int(rate * seconds)
        sent: dict[str, float] = {}
        accounts = [*SMALL, *MID]
        t0 = time.perf_counter()
        for i in range(n):
            while time.perf_counter() < t0 + i / rate:
                time.sleep(0.0005)
            rid = f"{who}-lat-{uuid.uuid4().hex}"
            account = accounts[i % len(accounts)]
            if who == "ping":
                self.producer.produce(
                    self.topics["ping"], b"x", headers=[("request_id", rid.encode())]
                )
            else:
                self.producer.produce(self.topics["connector_commands"], json.dumps(
                    {"request_id": rid, "exchange": "ascendex", "account": account}).encode(),
                    key=f"ascendex:{account}".encode())  # fmt: skip
            sent[rid] = time.perf_counter()
            self.producer.flush()
        self.watcher.wait(list(sent))
        lat = sorted((self.watcher.done[r] - t) * 1000 for r, t in sent.items())
        q = statistics.quantiles(lat, n=100)
        return {"p50_ms": q[49], "p99_ms": q[98], "commands": n}

    async def sandbox(
        self, method: str, path: str, body: Any = None, venue: str = "ASCENDEX"
    ) -> Any:
        import httpx

        base = self.env[f"CONNECTOR_{venue}_REST_URL"]
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.request(method, f"{base}{path}", json=body)
            r.raise_for_status()
            return r.json()

    def close(self) -> None:
        self.watcher.close()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (``connector broker`` runs Tansu as a
    child process); of this process alone (its librdkafka clients), not of the stack it runs."""
    if pid == os.getpid():
        return sum(os.times()[:2])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy(since: tuple[float, float] | None = None) -> Any:
    """/proc/stat: (busy, total) jiffies now; with ``since``, the cores busy in between (every
    process on the machine, the other jobs sharing it included)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total, busy = sum(f[:8]), sum(f[:8]) - f[3] - f[4]  # minus idle and iowait
    if since is None:
        return (busy, total)
    return (busy - since[0]) / max(1, total - since[1]) * (os.cpu_count() or 1)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found for pid {pid}")


def e2e(bench: Bench, repeats: int, sizes: dict[str, int], queued: int) -> dict[str, Any]:
    wpid = bench.pids["worker"]
    # The naive baseline opens a WebSocket per command: the real exchange (and the sandbox, by
    # default) bans an IP after 45 upgrades in 5 minutes and ignores more than 10,000 requests a
    # minute. Lifted here so the baseline can be measured at all; the connector needs neither.
    asyncio.run(bench.sandbox("POST", "/__sandbox/faults", BENCH_LIMITS))
    # Warm up both workers (group join, sessions, instrument caches).
    for who in ("connector", "naive"):
        bench.load(who, [*BIG, *MID, *SMALL], 9)
    rss_idle = rss_mb(wpid)
    out: dict[str, Any] = {}
    sessions = {"connections": 0, "requests": 0, "commands": 0}
    cases = {"1000_orders": (BIG, sizes["1000_orders"]), "100_orders": (MID, sizes["100_orders"]),
             "5_orders": (SMALL, sizes["5_orders"])}  # fmt: skip
    for name, (accounts, n) in cases.items():
        runs: dict[str, list[dict[str, float]]] = {"connector": [], "naive": []}
        for _ in range(repeats):
            for who in ("connector", "naive"):
                before = asyncio.run(bench.sandbox("GET", "/__sandbox/stats"))
                runs[who].append(bench.load(who, accounts, n))
                if who == "connector":
                    after = asyncio.run(bench.sandbox("GET", "/__sandbox/stats"))
                    for k in ("connections", "requests"):
                        sessions[k] += after.get(k, 0) - before.get(k, 0)
                    sessions["commands"] += n
                print(f"  {name} {who}: {runs[who][-1]['events_per_s']:.0f} events/s, "
                      f"{runs[who][-1]['commands_per_s']:.0f} commands/s", flush=True)  # fmt: skip
        med: dict[str, dict[str, Any]] = {
            who: {k: median([r[k] for r in rs]) for k in rs[0] if k != "cpu_share"}
            | {
                "cpu_share": {
                    k: median([r["cpu_share"][k] for r in rs]) for k in rs[0]["cpu_share"]
                }
            }
            for who, rs in runs.items()
        }
        ratios = [
            c["events_per_s"] / b["events_per_s"]
            for c, b in zip(runs["connector"], runs["naive"], strict=True)
        ]
        out[name] = {"commands": n, **{who: m for who, m in med.items()},
                     "ratio_vs_naive": median(ratios)}  # fmt: skip
    rss_peak = rss_mb(wpid, "VmHWM")
    out["sessions"] = sessions

    lat: dict[str, Any] = {"broker_hop": bench.latency("ping", 50, 4)}
    print(f"  broker hop at 50/s: {lat['broker_hop']}", flush=True)
    for delay in (0, 50):
        asyncio.run(bench.sandbox("POST", "/__sandbox/faults", {"delay_ms": delay}))
        lat[f"{delay}ms"] = bench.latency("connector", 50, 6)
        print(f"  latency at 50/s, exchange +{delay} ms: {lat[f'{delay}ms']}", flush=True)
    asyncio.run(bench.sandbox("POST", "/__sandbox/faults", {"delay_ms": 0}))
    out["latency_50_per_s"] = lat

    if queued:
        ids = [f"q-{uuid.uuid4().hex}" for _ in range(queued)]
        peak_during = 0.0
        t0 = time.perf_counter()
        for rid in ids:
            bench.send("connector", SMALL[0], rid)
        bench.producer.flush()
        while not all(r in bench.watcher.done for r in ids[-50:]):
            peak_during = max(peak_during, rss_mb(wpid))
            time.sleep(0.2)
        bench.watcher.wait(ids)
        out["queued"] = {"commands": queued, "seconds": time.perf_counter() - t0,
                         "rss_mb_max_sampled": peak_during}  # fmt: skip
    out["worker_rss_mb"] = {"idle": rss_idle, "peak_after_heavy_cases": rss_peak,
                            "peak_overall": rss_mb(wpid, "VmHWM")}  # fmt: skip
    return out


# --- 6. scale out ---------------------------------------------------------------------------


def orders_file(path: Path) -> Path:
    """The sandbox's seed, for ``connector sandbox --orders-file`` (JSON is YAML): the bench
    accounts (created by the sandbox, with keys derived from their names) and the books of the
    scale-out case's extra accounts (sandbox group accounts): copies of the first 1,000-order
    bench book and 5-order books, each row with the account's own accountId."""
    accounts = asc_sim.default_accounts()
    big = book(BIG[0], 1000)
    books: dict[str, list[dict[str, Any]]] = {a: book(a, 1000) for a in BIG}
    books |= {a: book(a, 100) for a in MID}
    for n, alias in enumerate(SCALE_BIG[len(BIG) :], 1):
        acc = accounts[alias].futures_account_id
        books[alias] = [
            {**row, "accountId": acc, "orderId": f"s{n}{row['orderId']}"} for row in big
        ]
    for n, alias in enumerate(SCALE_SMALL, 1):
        acc = accounts[alias].futures_account_id
        books[alias] = [asc_sim.order_row(acc, orderId=f"scale{n:02d}o{i:06d}", time=1615696544843 + i,
                                       lastExecTime=1615696544851 + i, seqNum=i,
                                       symbol=("BTC-PERP", "ETH-PERP")[i % 2],
                                       side=("Buy", "Sell")[i % 2],
                                       price=f"{60000 + i}.5" if i % 2 == 0 else f"{3000 + i}.25",
                                       orderQty="0.0100") for i in range(5)]  # fmt: skip
    path.write_text(json.dumps({"ascendex": books}))
    return path


def scale_out(bench: Bench, start_worker: Any, stop_worker: Any, repeats: int,
              sizes: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """One connector worker (consumer group ``bench-scale-1``) against two (``bench-scale-2``),
    each group on its own 8-partition command topic, interleaved, same loads."""
    names = {"scale1": ["scale1"], "scale2": ["scale2a", "scale2b"]}
    for who, workers in names.items():
        for name in workers:
            start_worker(name, f"bench-{who}", bench.topics[f"{who}_commands"])
    try:
        # Warm up: sessions, caches, and the second group's rebalance: both of its workers must
        # have a share of the partitions (seen as CPU used by each) before anything is measured.
        split = 0.0
        for _attempt in range(10):
            bench.load("scale1", SCALE_BIG + SCALE_SMALL, 2 * SCALE_PARTITIONS)
            warm = bench.load("scale2", SCALE_BIG, 2 * SCALE_PARTITIONS, pinned=True)
            a, b = warm["cpu_share"]["scale2a"], warm["cpu_share"]["scale2b"]
            split = min(a, b) / max(a + b, 1e-9)
            if split >= 0.3:
                break
            time.sleep(3)
        bench.load("scale2", SCALE_SMALL, 2 * SCALE_PARTITIONS, pinned=True)
        out: dict[str, Any] = {"partitions": SCALE_PARTITIONS, "warm_cpu_split": split}
        cases = {"1000_orders": (SCALE_BIG, sizes["1000_orders"], "events_per_s"),
                 "5_orders": (SCALE_SMALL, sizes["5_orders"], "commands_per_s")}  # fmt: skip
        for case, (accounts, n, metric) in cases.items():
            runs: dict[str, list[dict[str, Any]]] = {"scale1": [], "scale2": []}
            for _ in range(repeats):
                for who in runs:
                    runs[who].append(bench.load(who, accounts, n, pinned=True))
                    r = runs[who][-1]
                    cpu = ", ".join(f"{k} {v:.0%}" for k, v in r["cpu_share"].items() if v >= 0.01)
                    print(f"  scale-out {case} {who}: {r[metric]:.0f} {metric.replace('_per_s', '/s')}; "
                          f"CPU {cpu}; machine {r['machine_cores_busy']:.2f} cores busy", flush=True)  # fmt: skip
            med = {}
            for who, rs in runs.items():
                keep = ["scale1", "broker", "sandbox", "bench clients"] if who == "scale1" else \
                    ["scale2a", "scale2b", "broker", "sandbox", "bench clients"]  # fmt: skip
                med[who] = {"events_per_s": median([r["events_per_s"] for r in rs]),
                            "commands_per_s": median([r["commands_per_s"] for r in rs]),
                            "machine_cores_busy": median([r["machine_cores_busy"] for r in rs]),
                            "cpu_share": {k: median([r["cpu_share"][k] for r in rs]) for k in keep}}  # fmt: skip
            ratios = [
                t[metric] / o[metric] for o, t in zip(runs["scale1"], runs["scale2"], strict=True)
            ]
            out[case] = {"commands": n, "metric": metric, **med, "ratio": median(ratios)}
        return out
    finally:
        for workers in names.values():
            for name in workers:
                stop_worker(name)


# --- 7. Bitget: coalescing and backlog --------------------------------------------------------


def bitget(bench: Bench, backlog: int) -> dict[str, Any]:
    """On the connector's worker, against the Bitget sandbox (5 requests per rolling second per
    account, 429 and a violation counted beyond): the exchange requests of 30 identical
    concurrent commands (one fetch alone first, for its cost), then ``backlog`` commands for one
    account that cannot share a fetch (each names another trader): share of the configured rate
    used, violations."""
    from connector.exchanges.bitget.config import BitgetSettings

    rate = BitgetSettings().rate_limit_per_s
    account = "bitget-demo"

    def run(extras: list[dict[str, str]]) -> tuple[list[str], dict[str, Any]]:
        asyncio.run(bench.sandbox("POST", "/__sandbox/reset", venue="BITGET"))
        ids = [f"bitget-{uuid.uuid4().hex}" for _ in extras]
        for rid, extra in zip(ids, extras, strict=True):
            bench.send("connector", account, rid, exchange="bitget", **extra)
        bench.producer.flush()
        bench.watcher.wait(ids)
        stats = asyncio.run(bench.sandbox("GET", "/__sandbox/stats", venue="BITGET"))
        return ids, stats

    one_ids, one = run([{}])
    per_fetch = one["by_account"][account]["admitted"]
    bench.watcher.complete(one_ids)
    events_each = bench.watcher.answers[one_ids[0]][1]
    ids, same = run([{}] * 30)
    admitted = same["by_account"][account]["admitted"]
    coalescing = {
        "commands": 30, "requests": admitted, "requests_per_fetch": per_fetch,
        "fetches": admitted / per_fetch, "requests_without_coalescing": 30 * per_fetch,
        "violations": same["rate_limit_violations"], "events_per_command": events_each,
        "every_command_own_events_and_one_result": bench.watcher.complete(ids)
        and all(bench.watcher.answers[r][1] == events_each for r in ids),
    }  # fmt: skip
    print(f"  bitget coalescing: {coalescing}", flush=True)
    many_ids, many = run([{"trader_id": f"90000{i:02d}"} for i in range(backlog)])
    acc = many["by_account"][account]
    out = {"commands": backlog, "configured_rate_per_s": rate, "requests": acc["admitted"],
           "span_s": acc["span_s"], "violations": many["rate_limit_violations"],
           "all_answered_ok": bench.watcher.complete(many_ids),
           # n requests at the full rate fill n / rate one-second windows: first to last + one.
           "rate_used": acc["admitted"] / (rate * (acc["span_s"] + 1.0))}  # fmt: skip
    print(f"  bitget backlog: {out}", flush=True)
    return {"coalescing": coalescing, "backlog": out}


def profile_worker(bench: Bench, accounts: list[str], n: int, name: str) -> dict[str, Any]:
    """py-spy (installed into the venv for profiling only) on the worker during one load."""
    path = ROOT / ".results" / f"worker-profile-{name}.txt"
    path.parent.mkdir(exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                            str(bench.pids["worker"]), "-f", "raw", "-o", str(path), "-r", "200"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    run = bench.load("connector", accounts, n)
    spy.send_signal(2)
    spy.wait(30)
    return {"file": str(path), "run": run}


def create_topics(bootstrap: str, names: list[str], partitions: int = 4,
                  wide: frozenset[str] = frozenset()) -> None:  # fmt: skip
    """Topics with ``partitions`` partitions; the ``wide`` ones with SCALE_PARTITIONS."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(n, SCALE_PARTITIONS if n in wide else partitions, 1)
           for n in names if n not in existing]  # fmt: skip
    for fut in admin.create_topics(new).values() if new else ():
        fut.result()


# --- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())  # fmt: skip
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": model, "python": sys.version.split()[0],
            "memory_gib": round(mem / 2**20, 1),
            "os": platform.platform(), "load_avg_at_start": os.getloadavg(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip


def forwarded(web_port: int) -> float:
    """``connector_commands_forwarded_total`` of the connector's worker (its /metrics)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("connector_commands_forwarded_total "):
            return float(line.split()[1])
    return 0.0


def report(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    n = results["normalize"]
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}` ({results['repeats']} repeats, medians; connector and baseline",
        "interleaved in the same run). Written by scripts/bench.py; figures in .results/bench.json.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m.get('memory_gib', '?')} GiB, Python "
        f"{m['python']}, {m['os']}; load average",
        f"at start {tuple(round(x, 2) for x in m['load_avg_at_start'])} (shared with other jobs:",
        "absolute numbers are noisy, ratios are the figures).",
        "",
        "| target | measured | baseline (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]

    def row(what: str, measured: str, base: str, ratio: float | None, goal: str, ok: bool) -> None:
        r = "" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {what} | {measured} | {base} | {r} | {goal} | {'yes' if ok else 'NO'} |")

    row("normalize + encode, per order (1,000-order reply)", f"{n['connector_us_per_order']:.1f} µs",
        f"fastavro alone {n['fastavro_alone_us_per_order']:.1f} µs", n["speed_vs_fastavro"],
        ">= 0.6x fastavro's speed", n["speed_vs_fastavro"] >= 0.6)  # fmt: skip
    if "speed_vs_ccxt" in n:
        row("normalize + encode vs ccxt parse_order", f"{n['connector_us_per_order']:.1f} µs",
            f"ccxt {n['ccxt_version']} {n['ccxt_parse_order_us_per_order']:.1f} µs",
            n["speed_vs_ccxt"], ">= 2.5x", n["speed_vs_ccxt"] >= 2.5)  # fmt: skip
    e = results.get("e2e", {})
    if e:
        big = e["1000_orders"]
        row("end to end, 1,000-order snapshots, 1 worker", f"{big['connector']['events_per_s']:.0f} events/s",
            f"naive {big['naive']['events_per_s']:.0f} events/s", big["ratio_vs_naive"],
            ">= 25,000 events/s and >= 3x naive",
            big["ratio_vs_naive"] >= 3 and big["connector"]["events_per_s"] >= 25000)  # fmt: skip
        mid = e["100_orders"]
        row("end to end, 100-order snapshots", f"{mid['connector']['events_per_s']:.0f} events/s",
            f"naive {mid['naive']['events_per_s']:.0f} events/s", mid["ratio_vs_naive"], "(reported)", True)  # fmt: skip
        small = e["5_orders"]
        row("small snapshots (5 orders)", f"{small['connector']['commands_per_s']:.0f} commands/s",
            f"naive {small['naive']['commands_per_s']:.0f} commands/s", small["ratio_vs_naive"],
            ">= 2,000 commands/s", small["connector"]["commands_per_s"] >= 2000)  # fmt: skip
        lat = e["latency_50_per_s"]
        hop = lat["broker_hop"]
        base = f"broker hop p50 {hop['p50_ms']:.1f} ms, p99 {hop['p99_ms']:.1f} ms"
        for d in (0, 50):
            x = lat[f"{d}ms"]
            added = x["p99_ms"] - d - 2 * hop["p50_ms"]
            row(f"command latency at 50/s, exchange +{d} ms",
                f"p50 {x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms; added p99 ~ {added:.1f} ms",
                base, None, "added p99 <= 10 ms", added <= 10)  # fmt: skip
        s = e["sessions"]
        row("WebSockets opened by the connector's runs (9 warm accounts)", f"{s['connections']}",
            f"{s['requests']} requests for {s['commands']} commands", None,
            "one per account (0 new once warm)", s["connections"] == 0)  # fmt: skip
        b = e.get("bitget")
        if b:
            c = b["coalescing"]
            row("coalescing: 30 identical concurrent Bitget commands (one account)",
                f"{c['requests']} exchange requests ({c['fetches']:g} fetches of "
                f"{c['requests_per_fetch']}); {c['violations']} violations",
                f"{c['requests_without_coalescing']} requests without coalescing (30 fetches)",
                c["requests_without_coalescing"] / max(1, c["requests"]),
                "waiting identical commands share a fetch (< 30 fetches); each its own "
                f"events ({c['events_per_command']}) and one result; 0 violations",
                c["fetches"] < 30 and c["every_command_own_events_and_one_result"]
                and c["violations"] == 0)  # fmt: skip
            k = b["backlog"]
            row(f"Bitget backlog, one account ({k['commands']} commands that cannot share a fetch)",
                f"{k['rate_used']:.1%} of the configured {k['configured_rate_per_s']} requests/s "
                f"({k['requests']} requests in {k['span_s']:.1f} s); {k['violations']} violations",
                "", None, ">= 90% of the configured rate, 0 violations",
                k["rate_used"] >= 0.9 and k["violations"] == 0 and k["all_answered_ok"])  # fmt: skip
        so = e.get("scale_out")
        if so:
            for case, what, unit in (("1000_orders", "1,000-order", "events/s"),
                                     ("5_orders", "5-order", "commands/s")):  # fmt: skip
                x = so[case]
                metric = x["metric"]
                row(f"scale out, {what} snapshots: 2 workers vs 1 ({so['partitions']} partitions)",
                    f"2 workers {x['scale2'][metric]:.0f} {unit} (machine "
                    f"{x['scale2']['machine_cores_busy']:.2f} of {m['cpus']} cores busy)",
                    f"1 worker {x['scale1'][metric]:.0f} {unit} (machine "
                    f"{x['scale1']['machine_cores_busy']:.2f} cores busy)", x["ratio"], ">= 1.7x",
                    x["ratio"] >= 1.7)  # fmt: skip
        r = e["worker_rss_mb"]
        q = e.get("queued")
        row("worker RSS", f"idle {r['idle']:.0f} MB, peak {r['peak_after_heavy_cases']:.0f} MB"
            + (f", {q['commands']} queued: max {q['rss_mb_max_sampled']:.0f} MB" if q else ""),
            "", r["peak_overall"] / r["idle"], "bounded", True)  # fmt: skip
        if so:
            lines += ["", "The 5-order row sends all its commands for one account (`ascendex-demo`), so "
                      "commands waiting for the exchange share fetches (the requests count of the "
                      "WebSockets row); the naive worker fetches once per command. As many commands over "
                      "eight accounts (the scale-out case, one worker, 8 partitions): "
                      f"{so['5_orders']['scale1']['commands_per_s']:.0f} commands/s."]  # fmt: skip
        if "forwarded" in e:
            lines += ["", f"Commands the connector's worker forwarded to its by-account topic in "
                      f"these cases: {e['forwarded']:.0f} (the bench keys commands "
                      "`ascendex:<account>` with librdkafka's `murmur2_random` partitioner, so "
                      "each lands on its account's partition and is handled there)."]  # fmt: skip
        cases = ("1000_orders", "100_orders", "5_orders")
        cpu = {c: {w: e[c][w]["sandbox_cpu_share"] for w in ("connector", "naive")} for c in cases}
        top = max(v for c in cpu.values() for v in c.values())
        low = min(e[c]["connector"]["cpu_share"]["worker"] for c in cases)
        verdict = (f"at most {top:.0%} of one core, against at least {low:.0%} for the connector's "
                   "worker: the sandbox is not the bottleneck" if top < low / 2 else
                   f"up to {top:.0%} of one core: it may bound some cases")  # fmt: skip
        lines += ["", "## CPU", "",
                  "Sandbox CPU (share of one core during the load, median run): "
                  + "; ".join(f"{c.replace('_', ' ')}: {v['connector']:.0%} with the connector, "
                              f"{v['naive']:.0%} with the naive worker" for c, v in cpu.items())
                  + f"; {verdict}.", ""]  # fmt: skip
        for c in cases:
            w = e[c]["connector"].get("cpu_share")
            if w:
                lines.append(f"- {c.replace('_', ' ')}, connector run: worker {w['worker']:.0%}, "
                             f"broker {w['broker']:.0%}, sandbox {w['sandbox']:.0%}, bench clients "
                             f"{w['bench clients']:.0%} of one core; "
                             f"machine {e[c]['connector']['machine_cores_busy']:.2f} of "
                             f"{m['cpus']} cores busy (other jobs included)")  # fmt: skip
        if so:
            lines += ["", f"Scale out (median run, share of one core; the machine has {m['cpus']} "
                      "cores for the broker, the sandbox and the workers, and other jobs):"]  # fmt: skip
            for case in ("1000_orders", "5_orders"):
                for who in ("scale1", "scale2"):
                    x = so[case][who]
                    cpu_txt = ", ".join(f"{k} {v:.0%}" for k, v in x["cpu_share"].items())
                    cores = sum(v for k, v in x["cpu_share"].items() if k.startswith("scale"))
                    per = cores / x[so[case]["metric"]] * 1e6
                    unit = "event" if so[case]["metric"] == "events_per_s" else "command"
                    lines.append(f"- {case.replace('_', ' ')}, {who[-1]} worker(s): {cpu_txt}; "
                                 f"workers {cores:.2f} cores, {per:.0f} µs of worker CPU per {unit}; "
                                 f"machine {x['machine_cores_busy']:.2f} cores busy")  # fmt: skip
    lines += ["", "## Definitions", "",
              "- **events/s, commands/s**: order events (and commands answered) counted by a",
              "  librdkafka consumer outside the stack, from the first command produced to the last",
              "  QueryResult consumed; `n` commands produced at once, round-robin over the accounts.",
              "- **Naive baseline** (scripts/bench_naive.py, a Faust worker on its own topics,",
              "  concurrency 8): per command a new AscendEX WebSocket (connect, auth, one request,",
              "  close), `json.loads`, a dict per order encoded with fastavro, one awaited",
              "  `topic.send` per event (buffered by the producer), the snapshot's acks awaited",
              "  together, then the QueryResult sent and its ack awaited (acks=all). No validation,",
              "  exact decimals, sanitizing, retries or session reuse.",
              "- **Added latency** = p99 of the command's latency (command produced to QueryResult",
              "  consumed, commands at 50/s) - the simulated exchange latency - two broker hops",
              "  (p50 of one record produced and consumed; a command crosses the broker twice).",
              "- **Scale out**: consumer group `bench-scale-1` (one worker) and `bench-scale-2` (two",
              "  workers), each on its own 8-partition command topic, same loads, interleaved; eight",
              "  accounts per size, one on each partition (its own), so any even split of the",
              "  partitions gives the two workers the same load. Extra accounts get their books from",
              "  the sandbox's `--orders-file` (copies of the 1,000-order bench book, 5-order books).",
              "- **CPU**: share of one core each process used during a load (the broker with its",
              "  Tansu child; *bench clients*: this script's librdkafka producer and the consumer",
              "  counting every event); *machine cores busy*: all processes, other jobs included.",
              "- **Coalescing**: 30 identical commands (Bitget, `bitget-demo`) produced at once; exchange",
              "  requests counted by the sandbox; one command alone first gives a fetch's cost.",
              "- **Bitget backlog**: commands for one account, each naming another trader (so none can",
              "  share a fetch), produced at once; rate used = requests / (configured rate x (first to",
              "  last request + 1 s)); violations = requests the sandbox answered 429.",
              "", "The sandbox's per-IP limits (45 WebSocket upgrades per 5 minutes, 10,000 requests",
              "a minute, 20 sessions per account group) are lifted for the run: the naive baseline",
              "opens a WebSocket per command and would be banned by the real exchange within seconds,",
              "and the scale-out case runs three more workers with their own sessions.", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small loads, for development")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--normalize-only", action="store_true")
    parser.add_argument("--backlog", type=int, default=20,
                        help="Bitget commands for one account that cannot share a fetch")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker during one extra 1,000-order load "
                        "(.results/worker-profile-*.txt, collapsed stacks)")  # fmt: skip
    args = parser.parse_args()
    command = (
        "make bench"
        if len(sys.argv) == 1
        else shlex.join(["python", "scripts/bench.py", *sys.argv[1:]])
    )
    sizes = {"1000_orders": 12, "100_orders": 60, "5_orders": 300} if args.quick else \
        {"1000_orders": 40, "100_orders": 200, "5_orders": 600}  # fmt: skip
    results: dict[str, Any] = {"machine": machine(), "repeats": args.repeats}
    results["normalize"] = bench_normalize(args.repeats)
    print(json.dumps(results["normalize"], indent=2), flush=True)
    if not args.normalize_only:
        results["e2e"] = run_stack(
            args.repeats,
            sizes,
            0 if args.quick else args.queued,
            args.profile,
            6 if args.quick else args.backlog,
        )
    out = ROOT / ".results" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    table = report(results, command)
    (ROOT / "BENCHMARKS.md").write_text(table)
    print(table)
    print(f"written to {out} and BENCHMARKS.md")
    return 0


def run_stack(repeats: int, sizes: dict[str, int], queued: int, profile: bool,
              backlog: int) -> dict[str, Any]:  # fmt: skip
    topics = {"connector_commands": "query-orders", "connector_orders": "orders",
              "connector_results": "order-query-results", "naive_commands": "naive-query-orders",
              "naive_orders": "naive-orders", "naive_results": "naive-results",
              "ping": "bench-ping", "scale1_commands": "scale1-query-orders",
              "scale2_commands": "scale2-query-orders"}  # fmt: skip
    settings = {"CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS": "20", "CONNECTOR_LOG_LEVEL": "WARNING"}
    with Stack(Path(tempfile.mkdtemp(prefix="connector-bench-")), env=settings) as stack:
        work = stack.workdir
        broker = stack.start_broker()
        create_topics(stack.env["CONNECTOR_KAFKA_BOOTSTRAP"], [*topics.values(), "order-errors"],
                      wide=frozenset({topics["scale1_commands"], topics["scale2_commands"]}))  # fmt: skip
        stack.start_sandbox(orders_file=orders_file(work / "orders.json"), timeout=120)
        worker = stack.start_worker()
        groups = {a: asc_sim.SEEDED_ACCOUNT_GROUP for a in BIG + MID} | {"ascendex-demo": 7}
        naive = stack.start("naive", [sys.executable, str(ROOT / "scripts/bench_naive.py"),
                                      "worker", "-l", "warn"],
                            NAIVE_GROUPS=json.dumps(groups), NAIVE_WEB_PORT=str(free_port()),
                            NAIVE_DATA_DIR=str(work / "naive"),
                            NAIVE_COMMANDS=topics["naive_commands"],
                            NAIVE_ORDERS=topics["naive_orders"],
                            NAIVE_RESULTS=topics["naive_results"])  # fmt: skip
        assert stack.sandbox is not None
        bench = Bench(dict(stack.env), topics,
                      {"worker": worker.pid, "naive": naive.pid, "sandbox": stack.sandbox.pid,
                       "broker": broker.pid, "bench clients": os.getpid()})  # fmt: skip
        bench.watcher.stack = stack

        def start_worker(name: str, app_id: str, topic: str) -> None:
            scaled = stack.start_worker(name, CONNECTOR_APP_ID=app_id,
                                        CONNECTOR_TOPIC_QUERY_ORDERS=topic,
                                        CONNECTOR_TOPIC_PARTITIONS=str(SCALE_PARTITIONS))  # fmt: skip
            bench.pids[name] = scaled.pid

        def stop_worker(name: str) -> None:
            bench.pids.pop(name)
            stack.stop_process(stack.workers[name])

        try:
            out = e2e(bench, repeats, sizes, queued)
            out["forwarded"] = forwarded(worker.web_port)
            out["bitget"] = bitget(bench, backlog)
            out["scale_out"] = scale_out(bench, start_worker, stop_worker, repeats, sizes)
            if profile:
                try:
                    out["profile"] = {
                        "1000_orders": profile_worker(bench, BIG, sizes["1000_orders"], "1000"),
                        "5_orders": profile_worker(bench, SMALL, sizes["5_orders"], "5"),
                    }
                except (OSError, subprocess.SubprocessError) as exc:  # measurements stay
                    print(f"  profile skipped: {exc}", flush=True)
            return out
        finally:
            bench.close()


if __name__ == "__main__":
    sys.exit(main())
