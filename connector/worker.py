"""The Faust worker: the ``query-orders`` agent, publishing with at-least-once delivery.

Faust commits an input offset only once the event is acknowledged, and our agent acknowledges
it only after every output of that command has been acknowledged by the broker (acks=all). A
crash in between therefore repeats a command's outputs; it never loses them. Commands are
processed ``worker_concurrency`` at a time; Faust commits the highest *contiguous* acknowledged
offset per partition, so a slow command holds back commits, never skips them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from aiohttp.web import Response as AioResponse
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .accounts import Accounts, load_accounts
from .codec import Serializer
from .exchanges import create_adapters
from .exchanges.base import ExchangeAdapter
from .faust_transport import App
from .kafka import ssl_context
from .logs import logging_config
from .pipeline import Outcome, OutputRecord, Pipeline
from .settings import Settings

log = logging.getLogger(__name__)

MAX_PUBLISH_BACKOFF_S = 30.0
READY_BROKER_TIMEOUT_S = 2.0


def _credentials(settings: Settings) -> Any:
    ctx = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


class Connector:
    """Owns the Faust app, the pipeline and the output topics."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        adapters: dict[str, ExchangeAdapter] | None = None,
    ) -> None:
        self.settings = settings
        self.serializer = Serializer(settings.schema_registry_url)
        self.adapters = adapters if adapters is not None else create_adapters(settings)
        self.pipeline = Pipeline(settings, accounts, self.adapters, self.serializer)
        self.app = App(
            settings.app_id,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=_credentials(settings),
            broker_session_timeout=settings.kafka_session_timeout_s,
            broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
            broker_request_timeout=settings.kafka_request_timeout_s,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            key_serializer="raw",
            value_serializer="raw",
            topic_disable_leader=True,
            topic_allow_declare=False,
            topic_partitions=settings.topic_partitions,
            datadir=settings.data_dir,
            web_enabled=True,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            web_host=settings.web_host,
            web_in_thread=False,
        )
        self.topics = {
            "orders": self._topic(settings.topic_orders),
            "results": self._topic(settings.topic_results),
            "errors": self._topic(settings.topic_errors),
        }
        commands = self._topic(settings.topic_query_orders)
        self.app.agent(commands, name="query-orders", concurrency=settings.worker_concurrency)(
            self._agent
        )
        self._register_web()
        self.app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    def _topic(self, name: str) -> Any:
        return self.app.topic(name, key_serializer="raw", value_serializer="raw", internal=False)

    async def _agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self.handle(event.value)

    async def handle(self, value: bytes | None) -> Outcome:
        """Process one command and publish its outputs; returns only when they are acked."""
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            outcome = await self.pipeline.process(value)
            await self.publish(outcome)
        finally:
            metrics.IN_FLIGHT.dec()
        label = outcome.exchange or "unknown"
        metrics.COMMANDS.labels(label, "OK" if outcome.ok else "FAILED").inc()
        metrics.COMMAND_LATENCY.labels(label).observe(time.perf_counter() - started)
        metrics.ORDER_EVENTS.labels(label).inc(len(outcome.orders))
        if outcome.error is not None:
            metrics.ERRORS.labels(outcome.error.value["code"]).inc()
        log.info(
            "command answered %s with %d orders",
            "OK" if outcome.ok else "FAILED",
            len(outcome.orders),
            extra={
                "request_id": outcome.request_id,
                "exchange": outcome.exchange,
                "account": outcome.account,
            },
        )
        return outcome

    async def publish(self, outcome: Outcome) -> None:
        """Publish in contract order, retrying until the broker acknowledges.

        The order events go first and must all be acknowledged before the ErrorEvent/QueryResult,
        so a consumer that sees the result knows the snapshot is complete. A broker outage is
        waited out (with backoff) rather than dropping or failing the command: the input offset
        is not committed meanwhile, so nothing is lost.
        """
        backoff = 0.5
        while True:
            try:
                await self._send_batch(outcome.orders)
                tail = [r for r in (outcome.error, outcome.result) if r is not None]
                await self._send_batch(tail)
                return
            except (TimeoutError, KafkaError, OSError) as exc:
                log.error(
                    "publishing failed (%s), retrying in %.1fs",
                    type(exc).__name__,
                    backoff,
                    extra={"request_id": outcome.request_id, "exchange": outcome.exchange},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_PUBLISH_BACKOFF_S)

    async def _send_batch(self, records: list[OutputRecord]) -> None:
        futures = []
        for rec in records:
            topic = self.topics[rec.role]
            value = await self.serializer.encode(topic.get_topic_name(), rec.schema, rec.value)
            futures.append(
                await topic.send(
                    key=rec.key.encode() if rec.key is not None else None,
                    value=value,
                    headers=[(k, v.encode()) for k, v in rec.headers.items()],
                )
            )
        if futures:
            await asyncio.gather(*futures)

    # --- health and metrics --------------------------------------------------------------------

    async def ready(self) -> tuple[bool, str]:
        """Readiness: partitions assigned *and* the broker answering right now.

        Assignment alone stays set while the broker is down, so each probe also makes one
        metadata round trip (bounded by READY_BROKER_TIMEOUT_S).
        """
        app = self.app
        producer = getattr(app.producer, "_producer", None)  # the underlying aiokafka producer
        if producer is None or not app.producer.started:  # type: ignore[attr-defined]
            return False, "producer not started"
        if app.rebalancing:
            return False, "rebalancing"
        assigned = app.consumer.assignment() if app.consumer else set()
        if not assigned:
            return False, "no partitions assigned"
        try:
            reachable = await asyncio.wait_for(
                producer.client.force_metadata_update(), READY_BROKER_TIMEOUT_S
            )
        except (TimeoutError, KafkaError, OSError):
            reachable = False
        if not reachable:
            return False, "broker not reachable"
        return True, f"{len(assigned)} partitions assigned"

    def _register_web(self) -> None:
        connector = self

        @self.app.page("/healthz")
        class Healthz(View):
            async def get(self, request: Request) -> Response:
                # Answering at all proves the event loop is alive.
                return self.json({"status": "ok"})

        @self.app.page("/readyz")
        class Readyz(View):
            async def get(self, request: Request) -> Response:
                ok, reason = await connector.ready()
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

    async def _on_shutdown(self, app: Any, *args: Any, **kwargs: Any) -> None:
        for adapter in self.adapters.values():
            try:
                await adapter.aclose()
            except Exception:
                log.exception("closing exchange adapter failed")
        await self.serializer.aclose()


def run_worker(settings: Settings) -> None:
    """``connector worker``: load accounts, build the app, run until SIGTERM/SIGINT."""
    from .errors import ConfigurationError

    if not settings.accounts_file:
        raise ConfigurationError("CONNECTOR_ACCOUNTS_FILE: required for the worker")
    accounts = load_accounts(settings.accounts_file)
    connector = Connector(settings, accounts)
    worker = faust.Worker(
        connector.app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
