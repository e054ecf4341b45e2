"""Liveness, readiness and status of the worker, and its web pages (/status, /healthz, /readyz,
/metrics).

``/healthz`` fails when the agent's actors are gone, when commands are pending and none made
progress for ``liveness_stall_s``, or when a table recovery is stuck that long: a restart is the
way out of each. ``/readyz`` needs the producer and the broker, not a partition (an idle group
member in a rolling update is normal). Until the broker answers at start, a small server on the
same port says alive but not ready (:func:`await_broker_serving_health`), so a missing broker
is not a restart loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp.web import Response as AioResponse
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..account import Accounts
from ..errors import ConfigurationError
from ..kafka import await_broker, require_topics
from ..settings import Settings
from ..status import status_document
from .faust_internals import started_aiokafka_producer

log = logging.getLogger(__name__)

READY_BROKER_TIMEOUT_S = 2.0


class Liveness:
    """Tracks the commands in flight and their progress, and judges liveness from them.

    Inputs from Faust come as functions (see connector/worker/faust_internals.py):
    ``actors_alive`` (running agent actors, None before the agent started) and
    ``recovery_since`` (``clock()`` time a table recovery in progress started, or None).
    """

    def __init__(
        self,
        stall_s: float,
        concurrency: int,
        actors_alive: Callable[[], int | None] = lambda: None,
        recovery_since: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self.concurrency = concurrency
        self._actors_alive = actors_alive
        self._recovery_since = recovery_since
        self._clock = clock
        self.pending = 0
        self.fatal: str | None = None
        self._progress = clock()

    def beat(self) -> None:
        """Called on progress (a command starts or ends, an outage wait): resets the stall."""
        self._progress = self._clock()

    def started(self) -> None:
        """Called by the agent when a command starts: one more pending, not idle."""
        self.pending += 1
        self.beat()

    def finished(self) -> None:
        """Called by the agent when a command ends (answered or not): one fewer pending."""
        self.pending -= 1
        self.beat()

    def fail(self, reason: str) -> None:
        """Called by the agent when it cannot go on: liveness fails from now on."""
        self.fatal = reason

    def check(self) -> tuple[bool, str]:
        """Liveness: the agent's actors are running and pending work is making progress."""
        if self.fatal:
            return False, self.fatal
        live = self._actors_alive()
        if live is not None and live < self.concurrency:
            return False, f"{self.concurrency - live} agent actors are dead"
        idle = self._clock() - self._progress
        if self.pending and idle > self.stall_s:
            return False, f"{self.pending} commands pending, no progress for {idle:.0f}s"
        # Faust's table recovery blocks every command until it is done, and it can wait forever
        # for changelog records a broker lost (seen on the embedded broker, whose in-memory
        # storage a restart wipes): past the same stall limit, a restart (a fresh recovery) is
        # the way out.
        started = self._recovery_since()
        if started is not None:
            recovering = self._clock() - started
            if recovering > self.stall_s:
                return False, f"state table recovery stuck for {recovering:.0f}s"
        return True, "ok"


class Health:
    """Readiness and the ``/status`` document of a worker whose Faust app is ``app``."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        accounts: Accounts,
        venues: frozenset[str],
        liveness: Liveness,
        circuits: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """``circuits``: the venues' circuit breakers and disabled venues for ``/status``
        (:meth:`connector.venue_gate.VenueGate.status`)."""
        self.app = app
        self._circuits = circuits
        self.settings = settings
        self.accounts = accounts
        self.venues = venues
        self.liveness = liveness

    def alive(self) -> tuple[bool, str]:
        return self.liveness.check()

    async def ready(self) -> tuple[bool, str]:
        """Readiness: alive, producer started and the broker answering right now.

        Owning a partition is *not* required: with as many replicas as partitions, a surge pod
        is an idle group member until an old pod leaves, and a rolling update must not stall on
        it. Each probe makes one metadata round trip (bounded by READY_BROKER_TIMEOUT_S).
        """
        ok, reason = self.alive()
        if not ok:
            return False, reason
        producer = started_aiokafka_producer(self.app)
        if producer is None:
            return False, "producer not started"
        try:
            reachable = await asyncio.wait_for(
                producer.client.force_metadata_update(), READY_BROKER_TIMEOUT_S
            )
        except (TimeoutError, KafkaError, OSError):
            reachable = False
        if not reachable:
            return False, "broker not reachable"
        consumer = self.app.consumer
        assigned = consumer.assignment() if consumer else set()
        if not assigned:
            return True, "no partitions assigned (idle group member)"
        return True, f"{len(assigned)} partitions assigned"

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (no secrets: see connector/status.py)."""
        from ..exchanges import registry

        venue_settings = {}
        for name in sorted(self.venues):
            venue = registry.get(name)
            if venue is not None:
                venue_settings[name] = venue.load_settings()
        aliases: dict[str, list[str]] = {}
        for account in self.accounts:
            aliases.setdefault(account.exchange, []).append(account.alias)
        return status_document(
            settings=self.settings,
            venues=self.venues,
            venue_settings=venue_settings,
            aliases=aliases,
            **self._circuits(),
        )

    def register_pages(self) -> None:
        """Called once by the Connector: adds /status, /healthz, /readyz and /metrics to the
        app's web server."""
        health = self

        @self.app.page("/status")
        class Status(View):
            async def get(self, request: Request) -> Response:
                return self.json(health.status())

        @self.app.page("/healthz")
        class Healthz(View):
            async def get(self, request: Request) -> Response:
                ok, reason = health.alive()
                return self.json(
                    {"status": "ok" if ok else "failing", "reason": reason},
                    status=200 if ok else 503,
                )

        @self.app.page("/readyz")
        class Readyz(View):
            async def get(self, request: Request) -> Response:
                ok, reason = await health.ready()
                return self.json(
                    {"status": "ready" if ok else "not ready", "reason": reason},
                    status=200 if ok else 503,
                )

        @self.app.page("/metrics")
        class Metrics(View):
            async def get(self, request: Request) -> Response:
                # Built directly: Faust's helper rejects the charset in Prometheus' content type.
                body = generate_latest()
                return AioResponse(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})  # type: ignore[return-value]


async def await_broker_serving_health(settings: Settings) -> None:
    """Until the broker answers: /healthz 200 (the process is fine, so no restart loop) and
    /readyz 503 on the worker's web port."""
    from aiohttp import web

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "reason": "waiting for the broker"})

    async def readyz(request: web.Request) -> web.Response:
        body = {"status": "not ready", "reason": "waiting for the broker"}
        return web.json_response(body, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise _port_in_use(settings, exc) from None
    try:
        await await_broker(settings, settings.outage_backoff_max_s)
        await require_topics(settings)  # one line naming each missing topic's setting
    finally:
        await runner.cleanup()


def _port_in_use(settings: Settings, exc: OSError) -> Exception:
    return ConfigurationError(
        f"CONNECTOR_WEB_PORT: cannot listen on {settings.web_host}:{settings.web_port} "
        f"({exc.strerror or type(exc).__name__})"
    )
