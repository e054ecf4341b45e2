"""Helpers for the fault-injection tests: a restartable broker on a fixed port, counting what a
scenario sent/answered/lost/repeated, and recording the figures in ``.results/faults.json``
(gitignored) for the README's "Guarantees" table."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connector import devstack
from connector.codec import QUERY_RESULT

from .harness import Outputs, Worker, wait_until

RESULTS = Path(__file__).resolve().parents[2] / ".results" / "faults.json"


@dataclass
class Broker:
    """The embedded broker on a port fixed for the test, really stopped and started again
    (Tansu alone, through connector/devstack.py, so a freeze or a kill reaches the broker).

    Its storage is in memory, so a restart loses topics, records and group offsets (topics are
    re-created by the test). Real Kafka keeps them; what is tested is the worker's side.
    """

    port: int
    log_dir: Path
    process: devstack.Broker | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.process is None else self.process.proc

    def start(self) -> None:
        assert self.process is None or not self.process.alive()
        self.process = devstack.start_broker(self.port, self.log_dir / "broker.log", bare=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its connections and its data (a long
        pause, a hung host); :meth:`thaw` resumes it where it was."""
        assert self.process is not None
        self.process.freeze()

    def thaw(self) -> None:
        assert self.process is not None
        self.process.thaw()

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once (a crash, not a clean shutdown)."""
        if self.process is not None:
            self.process.kill()
            self.process = None


def new_broker(log_dir: Path) -> Broker:
    return Broker(devstack.free_port(), log_dir)


def results_by_request(outputs: Outputs) -> Counter[str]:
    return Counter(
        m.headers.get("request_id", "") for m in outputs.messages if m.schema == QUERY_RESULT
    )


async def wait_results(outputs: Outputs, request_ids: list[str], timeout: float) -> None:
    """Until every request id has at least one QueryResult."""
    wanted = set(request_ids)

    def done(msgs: list[Any]) -> bool:
        seen = {m.headers.get("request_id") for m in msgs if m.schema == QUERY_RESULT}
        return wanted <= seen

    await outputs.wait_for(done, timeout)


async def wait_count(outputs: Outputs, n: int, timeout: float) -> None:
    await outputs.wait_for(lambda msgs: sum(m.schema == QUERY_RESULT for m in msgs) >= n, timeout)


async def status(worker: Worker, path: str) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            return (await http.get(f"http://127.0.0.1:{worker.web_port}{path}")).status_code
        except httpx.HTTPError:
            return 0


async def wait_status(worker: Worker, path: str, code: int, timeout: float = 60) -> None:
    # Polls another process's endpoint: there is no event to wait on across processes.
    async def answered() -> bool:
        return await status(worker, path) == code

    await wait_until(answered, timeout=timeout, what=f"{path} answering {code}", interval=0.2)


async def wait_log(worker: Worker, text: str, timeout: float = 60) -> None:
    await wait_until(lambda: text in worker.log_text(), timeout=timeout,
                     what=f"{text!r} in the worker's log", interval=0.1)  # fmt: skip


def assert_clean_log(worker: Worker) -> None:
    log = worker.log_text()
    assert "Traceback" not in log, log[
        log.index("Traceback") - 2000 : log.index("Traceback") + 3000
    ]
    assert "exception was never retrieved" not in log


def record(scenario: str, **figures: Any) -> None:
    """Print the figures and merge them into .results/faults.json."""
    RESULTS.parent.mkdir(exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[scenario] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\nFAULT {scenario}: {json.dumps(figures)}")
