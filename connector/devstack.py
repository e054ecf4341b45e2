"""The whole product on one machine: the embedded broker, the sandbox exchanges and workers.

``make demo`` (scripts/demo.py), ``make bench`` (scripts/bench.py) and the integration tests'
fixtures (tests/integration) all start the same processes the way an operator would, each its
own ``connector`` subcommand: free ports, the broker, the sandbox (wired by reading its first
line), N workers with their own settings, waits until each is ready, and a stop that never
leaves a process behind. This module is that launcher, written once, so the three users cannot
drift apart (a readiness wait that is bounded in one and not in another, a different dev-only
Kafka setting). Fault tests also stop, kill, freeze and restart single processes through it.

Development and tests only: production runs the worker under its own supervisor against real
Kafka and real exchanges; nothing here changes how a worker behaves.

Typical use::

    with Stack() as stack:
        stack.start_broker()
        stack.start_sandbox()
        worker = stack.start_worker()
        asyncio.run(worker.wait_ready())
        ...  # stack.env points any client at the broker and the sandbox
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

#: How to run a connector subcommand with this interpreter.
CONNECTOR = [sys.executable, "-m", "connector"]

#: Dev-only Kafka settings for the embedded broker (docs/state-topic.md): it completes a group
#: join only after session_timeout/2, and answers a waiting fetch only when the wait expires.
EMBEDDED_BROKER_ENV = {
    "CONNECTOR_KAFKA_SESSION_TIMEOUT_S": "6",
    "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_S": "1",
    "CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS": "50",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def parse_env_line(line: str) -> dict[str, str]:
    """``connector sandbox``'s first line (``CONNECTOR_X=... CONNECTOR_Y=...``) as a mapping."""
    env = {}
    for token in shlex.split(line):
        name, sep, value = token.partition("=")
        if not sep or not name.startswith("CONNECTOR_"):
            raise ValueError(f"not an env assignment: {token!r}")
        env[name] = value
    return env


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` (plain or async) until it holds; TimeoutError naming ``what`` if it
    does not within ``timeout`` seconds. For conditions only observable by polling (another
    process's endpoint, a counter): every such wait has a deadline and says what it waited for.
    ``interval`` 0 yields to the event loop between polls (in-process conditions)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM (a clean stop), then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(eq=False)
class Process:
    """One started process of the stack; its stdout and stderr go to ``log_path``.

    Every process runs in its own session (process group), so a fault test can freeze or kill
    it with whatever it started, without touching the test runner."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        stop_process(self.proc, timeout)
        self.log_file.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the process and its group: gone at once (a crash, not a clean shutdown)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log_file.close()

    def freeze(self) -> None:
        """SIGSTOP the group: it stops answering but keeps its connections and its data (a long
        pause, a hung host); :meth:`thaw` resumes it where it was."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def wait_line(self, needle: str, timeout: float) -> str:
        """The first line of the log containing ``needle``; fails at once, with the log's tail,
        if the process exits first, and after ``timeout`` seconds if it never prints it."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None  # read the log after: its last words count
            for line in self.log_text().splitlines():
                if needle in line:
                    return line.strip()
            if exited:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before printing "
                    f"{needle!r}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} did not print {needle!r} within {timeout:g} s")
            time.sleep(0.05)


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
          cwd: Path | None = None) -> Process:  # fmt: skip
    """Start ``argv`` with exactly ``env`` (in ``cwd``), its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    return Process(name, proc, log_path, log_file)


@dataclass(eq=False)
class Broker(Process):
    """The embedded broker (Tansu, in memory: a restart loses topics, records and offsets)."""

    port: int = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_broker(port: int, log_path: Path, *, env: Mapping[str, str] | None = None,
                 bare: bool = False, timeout: float = 60) -> Broker:  # fmt: skip
    """The embedded broker on ``127.0.0.1:port``.

    By default ``connector broker``, as an operator runs it: it creates the topics ``env``
    names and this returns once it printed ``broker ready``. ``bare``: Tansu alone (no topics;
    returns at once, the caller waits for the broker to answer), so that :meth:`Process.freeze`
    and :meth:`Process.kill` reach the broker itself and it can be restarted on the same port.
    """
    from .broker import start_tansu

    if bare:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        proc = start_tansu("127.0.0.1", port, log=log_file.fileno())
        return Broker("broker", proc, log_path, log_file, port=port)
    full = {**os.environ, **(env or {}), "CONNECTOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    started = spawn("broker", [*CONNECTOR, "broker"], full, log_path)
    broker = Broker(started.name, started.proc, started.log_path, started.log_file, port=port)
    try:
        broker.wait_line("broker ready", timeout)
    except BaseException:
        broker.kill()
        raise
    return broker


@dataclass(eq=False)
class Worker(Process):
    """A ``connector worker``; ``env`` is what it was started with (CONNECTOR_* settings)."""

    env: dict[str, str] = field(default_factory=dict)
    web_port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    async def readyz_reason(self) -> str:
        import httpx

        async with httpx.AsyncClient(timeout=5) as http:
            return str((await http.get(self.url("/readyz"))).json()["reason"])

    async def wait_ready(self, timeout: float = 90) -> None:
        """Until /readyz says ready; fails at once, with the log's tail, if the process exits."""
        import httpx

        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                    )
                try:
                    return (await http.get(self.url("/readyz"))).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(ready, timeout=timeout, what=f"{self.name} ready", interval=0.1)


def start_worker(env: Mapping[str, str], log_path: Path, name: str = "worker") -> Worker:
    """``connector worker`` with this process's environment plus ``env`` (which must name
    CONNECTOR_WEB_PORT); returns at once (see :meth:`Worker.wait_ready`)."""
    started = spawn(name, [*CONNECTOR, "worker"], {**os.environ, **env}, log_path)
    return Worker(started.name, started.proc, started.log_path, started.log_file,
                  env=dict(env), web_port=int(env["CONNECTOR_WEB_PORT"]))  # fmt: skip


async def wait_all_assigned(workers: Sequence[Worker], timeout: float = 90) -> None:
    """Until every worker's /readyz reports partitions assigned ("N partitions assigned"), i.e.
    the group's rebalance gave each a share."""

    async def assigned() -> bool:
        reasons = [await w.readyz_reason() for w in workers]
        return all(r[:1].isdigit() for r in reasons)

    await wait_until(assigned, timeout=timeout, what="every worker assigned partitions",
                     interval=0.2)  # fmt: skip


class Stack:
    """Processes started together and stopped together (in reverse order), on exit of a
    ``with`` / ``async with`` block or by :meth:`stop`.

    ``env`` holds the CONNECTOR_* settings every process and client of the stack shares: given
    ones, the broker's address and the dev-only Kafka settings once a broker is started (or
    :meth:`use_broker` names one), the sandbox's URLs and accounts file once it is started.
    Each process gets this process's environment plus ``env`` plus its own overrides, and runs
    in ``cwd`` (default: this process's).
    """

    def __init__(self, workdir: Path | str | None = None, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:  # fmt: skip
        self.cwd = cwd
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="connector-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = dict(env or {})
        self.processes: list[Process] = []
        self.broker: Broker | None = None
        self.sandbox: Process | None = None
        self.workers: dict[str, Worker] = {}

    # --- starting ------------------------------------------------------------------------

    def use_broker(self, bootstrap: str) -> None:
        """Point the stack at a broker it did not start (e.g. a real Kafka)."""
        self.env["CONNECTOR_KAFKA_BOOTSTRAP"] = bootstrap

    def start_broker(self, port: int | None = None, *, bare: bool = False,
                     timeout: float = 60) -> Broker:  # fmt: skip
        """The embedded broker (see :func:`start_broker`) on ``port`` (default: a free one);
        the stack's env then points at it, with :data:`EMBEDDED_BROKER_ENV` unless set."""
        port = port or free_port()
        for name, value in EMBEDDED_BROKER_ENV.items():
            self.env.setdefault(name, value)
        self.use_broker(f"127.0.0.1:{port}")
        log = self.workdir / "broker.log"
        self.broker = start_broker(port, log, env=self.env, bare=bare, timeout=timeout)
        self.processes.append(self.broker)
        return self.broker

    def start_sandbox(self, *, orders_file: Path | str | None = None,
                      timeout: float = 60) -> dict[str, str]:  # fmt: skip
        """``connector sandbox`` (every venue's simulator), wired as a user would: by reading
        its first line. ``orders_file`` seeds it (``connector sandbox --orders-file``). Returns
        the env line's settings, also merged into the stack's env."""
        workdir = self.workdir / "sandbox"
        argv = [*CONNECTOR, "sandbox", "--workdir", str(workdir)]
        if orders_file is not None:
            argv += ["--orders-file", str(orders_file)]
        self.sandbox = self.start("sandbox", argv)
        try:
            announced = parse_env_line(self.sandbox.wait_line("CONNECTOR_", timeout))
        except BaseException:
            self.sandbox.kill()
            raise
        self.env.update(announced)
        return announced

    def start_worker(self, name: str = "worker", **overrides: str) -> Worker:
        """A ``connector worker`` named ``name`` (its log ``<workdir>/<name>.log``), on a free
        web port with its own data directory unless ``overrides`` (CONNECTOR_* settings) say
        otherwise. Returns at once; ``await worker.wait_ready()`` to wait for it."""
        env = {
            **self.env,
            "CONNECTOR_WEB_PORT": str(free_port()),
            "CONNECTOR_DATA_DIR": str(self.workdir / f"data-{name}"),
            **overrides,
        }
        worker = start_worker(env, self.workdir / f"{name}.log", name)
        self.processes.append(worker)
        self.workers[name] = worker
        return worker

    def start(self, name: str, argv: Sequence[str], **overrides: str) -> Process:
        """Any other process (e.g. the benchmark's baseline worker) with the stack's env."""
        proc = spawn(name, argv, {**os.environ, **self.env, **overrides},
                     self.workdir / f"{name}.log", self.cwd)  # fmt: skip
        self.processes.append(proc)
        return proc

    # --- stopping ------------------------------------------------------------------------

    def stop_process(self, process: Process, timeout: float = 20) -> int:
        """Stop one process (SIGTERM, then SIGKILL) and forget it; its exit code."""
        code = process.stop(timeout)
        self.forget(process)
        return code

    def forget(self, process: Process) -> None:
        if process in self.processes:
            self.processes.remove(process)
        for name, worker in list(self.workers.items()):
            if worker is process:
                del self.workers[name]

    def dead(self) -> list[str]:
        """Names of started processes that exited on their own."""
        return [p.name for p in self.processes if not p.alive()]

    def stop(self) -> None:
        """Stop everything, the last started first."""
        while self.processes:
            self.stop_process(self.processes[-1])

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await asyncio.to_thread(self.stop)
