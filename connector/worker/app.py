"""The Faust app and the ``query-orders`` agent, publishing with at-least-once delivery.

Faust commits an input offset only once the event is acknowledged, and our agent acknowledges
it only after every output of that command has been acknowledged by the broker (acks=all). A
crash in between therefore repeats a command's outputs; it never loses them. The
``worker_concurrency`` actors only take events and hand each command to its venue's lane
(connector/worker/lanes.py), which runs it under the venue's limit, so a venue that hangs or
waits on its budgets never holds the commands of another; the commit covers only the
*contiguous* run of answered offsets per partition, so a slow command holds back commits, never
skips them. Commits happen
every ``kafka_commit_interval_s`` or after ``kafka_commit_every`` acks, whichever comes first, so
a crash repeats about the in-flight commands, not seconds of history.

Nothing a command does can escape the agent (see README "Guarantees"):

* the pipeline turns every input and exchange problem into a FAILED outcome;
* outages (broker, schema registry) are waited out with capped, jittered backoff, logging one
  line when they start and one when they end; the command stays unacknowledged meanwhile
  (connector/worker/outages.py);
* an outcome the broker refuses for good is replaced by a FAILED ``INTERNAL`` outcome without
  the echo, so the command is still answered exactly once (connector/worker/outcomes.py).

The :class:`Connector` wires the concerns of connector/worker/ together; the module map is in
connector/worker/__init__.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import OrderedDict
from functools import partial
from typing import Any

import faust

from .. import metrics
from ..account import Accounts
from ..codec import RegistryUnavailable, serializer_for
from ..commands import RawCommand
from ..errors import InternalError
from ..exchanges import create_adapters, registry
from ..exchanges.base import ExchangeAdapter
from ..kafka import kafka_partitioner, ssl_context
from ..pipeline import Outcome, Pipeline
from ..schedules import Schedule
from ..settings import STATE_TABLE, Settings
from ..status import VenueHealth
from .faust_internals import App, live_actor_count, recovery_started_at
from .group_start import BrokerLookup
from .health import Health, Liveness
from .lanes import UNKNOWN, LaneClosed, Lanes
from .outages import Outages
from .outcomes import OutcomeWriter
from .publisher import KafkaPublisher, Publisher
from .routing import Router
from .shutdown import close_clients, drain_and_commit
from .standing import StandingQueries
from .state_store import FaustTableStore, StateStore
from .state_writer import StateWriter

log = logging.getLogger(__name__)

_HANDLED_MAX = 4096  # records remembered per process for redelivery detection


def credentials(settings: Settings) -> Any:
    """Faust's broker credentials for the configured security protocol (None: plaintext)."""
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


def hold_unanswered(event: Any) -> None:
    """Keep Faust from ever acknowledging ``event``, a command that was not answered (issue
    20). Faust acks an event when the agent's loop asks for the next one, and again when the
    loop ends (an exception, a cancellation at shutdown or rebalance): the stream generator's
    ``finally`` acks its current event, which a later commit would then pass, a lost command.
    The extra references keep every such ack from being final; the offset stays uncommitted and
    the next owner of the partition processes the command again."""
    event.message.incref(1 << 30)


class Connector:
    """Owns the Faust app, the pipeline and the output topics.

    ``publisher`` and ``state_store`` default to Kafka through the app and to the app's state
    table; tests pass :class:`~connector.worker.publisher.InMemoryPublisher` and
    :class:`~connector.worker.state_store.InMemoryStateStore`.
    """

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        adapters: dict[str, ExchangeAdapter] | None = None,
        schedules: list[Schedule] | None = None,
        direct_partitions: int | None = None,
        *,
        publisher: Publisher | None = None,
        state_store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.schedules = schedules or []
        self.serializer = serializer_for(settings)
        self.adapters = adapters if adapters is not None else create_adapters(settings)
        # Metric label values: the configured venues and "unknown", never caller input.
        self.venues = frozenset(self.adapters)
        self.accounts = accounts
        self.venue_health = VenueHealth(self.venues)
        self.draining = False  # set by the shutdown hook (shutdown.drain_and_commit)
        self.liveness = Liveness(
            settings.liveness_stall_s,
            settings.worker_concurrency,
            actors_alive=lambda: live_actor_count(self.agent),
            recovery_since=lambda: recovery_started_at(self.app),
        )
        self.outages = Outages(
            settings.outage_backoff_max_s,
            on_wait=self.liveness.beat,
            registry_answers=lambda: self.serializer.registry_answers,
        )
        # Records this process has started handling, by identity (see _agent): Faust can deliver
        # a record twice around a rebalance (fetched before its post-recovery seek and again
        # after it). Bounded; the value says whether the first delivery was answered.
        self._handled: OrderedDict[tuple[Any, ...], asyncio.Future[bool]] = OrderedDict()
        self.pipeline = Pipeline(settings, accounts, self.adapters, self.serializer)
        # The bulkheads: every command runs in its venue's lane (connector/worker/lanes.py).
        self.lanes = Lanes(
            settings.worker_max_in_flight,
            settings.worker_venue_concurrency,
            limits=registry.venue_concurrency(),
            labels=self.venues,
        )
        self.app = App(
            settings.app_id,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            start_offsets=BrokerLookup(settings),  # CONNECTOR_NEW_GROUP_START (group_start.py)
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=credentials(settings),
            broker_session_timeout=settings.kafka_session_timeout_s,
            broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
            broker_request_timeout=settings.kafka_request_timeout_s,
            broker_commit_interval=settings.kafka_commit_interval_s,
            broker_commit_every=settings.kafka_commit_every,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # Send path: a 1,000-order snapshot is ~600 KB of events. Faust's default 16 KB
            # batches split it into ~40 batches per partition, each one more object and request
            # for aiokafka; 256 KB batches (well under the broker's 1 MB limit) cut that to a few.
            # No linger: a small command is sent at once. Acks and ordering are unchanged.
            producer_max_batch_size=settings.kafka_producer_max_batch_size,
            # aiokafka's partitioning rule with a compiled murmur2 (same partitions).
            producer_partitioner=kafka_partitioner,
            key_serializer="raw",
            value_serializer="raw",
            # The leader topic elects the one worker that runs the standing queries' timer.
            topic_disable_leader=not schedules,
            topic_allow_declare=False,
            topic_partitions=settings.topic_partitions,
            datadir=settings.data_dir,
            web_enabled=True,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            web_host=settings.web_host,
            web_in_thread=False,
        )
        # Faust's own sensor metrics (lag, commit/send latency, rebalances) beside ours.
        self.app.monitor = metrics.prometheus_monitor(settings.app_id)
        self.publisher: Publisher = publisher or KafkaPublisher(self.app)
        # Per account (``<exchange>:<account>``) the state of the open-orders topic
        # (connector/state.py), backed by its changelog so a restarted or rebalanced worker
        # continues from it. Written only inside the agent: Faust writes a table change to the
        # changelog partition of the event being processed, which routing makes the key's own.
        self.state_table: Any = self.app.Table(
            STATE_TABLE,
            default=None,
            partitions=settings.topic_partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        store = state_store or FaustTableStore(self.state_table, self.publisher, self.outages)
        self.outcomes = OutcomeWriter(
            settings, self.pipeline, self.serializer, self.publisher, self.outages
        )
        self.state_writer = StateWriter(
            store, self.publisher, self.outages, self.serializer, settings.topic_state, self.venues
        )
        self.router = Router(
            settings, self.pipeline, self.publisher, self.outages, direct_partitions
        )
        source = self.app.topic(
            settings.topic_query_orders,
            settings.commands_by_account_topic,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )
        self.agent = self.app.agent(
            source, name="query-orders", concurrency=settings.worker_concurrency
        )(self.consume)
        self.standing: StandingQueries | None = None
        if self.schedules:
            self.standing = StandingQueries(
                self.app,
                settings,
                self.schedules,
                self.publisher,
                lambda: self.draining,
                self.pipeline.gate.should_schedule,
            )
        self.health = Health(
            self.app, settings, accounts, self.venues, self.liveness, self.pipeline.gate.status
        )
        self.health.register_pages()
        # Shutdown (connector/worker/shutdown.py): drain first, close the clients last.
        self.app.stop_hooks.append(partial(drain_and_commit, self))
        self.app.shutdown_hooks.append(partial(close_clients, self))

    async def consume(self, stream: Any) -> None:
        """The agent (one per actor): takes each event of ``stream`` and hands its command to
        the lanes (:meth:`_serve` answers it and acknowledges the event), so an actor never
        waits for an exchange, only for room among the commands held (the backpressure).
        Called by Faust with the command topics' stream; affects the events' acks and the
        redelivery guard."""
        async for event in stream.events():
            if self.draining:
                await self._park(event)
            msg = event.message
            # Topic, partition and offset, plus timestamp and checksum: the embedded broker
            # restarts offsets at 0 after a restart, and a new record must never look repeated.
            identity = (msg.topic, msg.partition, msg.offset, msg.timestamp,
                        zlib.crc32(event.value or b""))  # fmt: skip
            first = self._handled.get(identity)
            if first is not None and first.done() and first.result():
                self._skip_repeat(event)
                continue
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._handled[identity] = done
            while len(self._handled) > _HANDLED_MAX:
                self._handled.popitem(last=False)
            # Faust acks an event when this loop asks for the next one, and again when the
            # agent is cancelled; one more reference keeps those acks from being final, so only
            # the lane task's ack, once the command is answered, is.
            msg.incref()
            try:
                await self.lanes.submit(partial(self._serve, event, first, done))
            except LaneClosed:
                done.set_result(False)
                await self._park(event)
            except BaseException:  # cancelled while waiting for room: not started
                done.set_result(False)
                raise

    async def _park(self, event: Any) -> None:
        """Shutting down: do not start this command, and do not let Faust ack it (it acks an
        event when the loop asks for the next one, and again when the agent is cancelled: the
        stream generator's ``finally`` acks the current event, which a later commit would then
        skip: a lost command). The extra references keep every such ack from being final.
        Parked until the agent is cancelled; the offset stays uncommitted for the next owner."""
        hold_unanswered(event)
        await asyncio.Event().wait()

    def _skip_repeat(self, event: Any) -> None:
        """A redelivery of a record this process answered: acking it again is a no-op."""
        msg = event.message
        log.info("record redelivered by the consumer, already answered; skipped",
                 extra={"topic": msg.topic, "partition": msg.partition,
                        "offset": msg.offset})  # fmt: skip
        event.ack()

    async def _serve(
        self, event: Any, first: asyncio.Future[bool] | None, done: asyncio.Future[bool]
    ) -> None:
        """One command in its lane: routed, then handled in a slot of its venue's lane, then
        its event acknowledged; ``done`` says whether it was answered (the redelivery guard),
        ``first`` is an earlier delivery of the same record still in progress."""
        msg = event.message
        try:
            if first is not None and await asyncio.shield(first):
                self._skip_repeat(event)
                done.set_result(True)
                return
            if self.draining:
                return  # not started: unacknowledged, for the next owner of the partition
            where, decoded = "here", None
            if msg.topic != self.settings.commands_by_account_topic:
                where, decoded = await self.router.route(event.value, msg)
            if where != "forwarded":
                venue, account = self._lane_of(decoded, msg)
                async with self.lanes.slot(venue, account):
                    await self.handle(
                        event.value,
                        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
                        position=(msg.partition, msg.offset),
                        state=where == "here",
                        topic=msg.topic,
                        decoded=decoded,
                    )
            event.ack()  # final: the command is answered (see consume)
            done.set_result(True)
        except LaneClosed:
            pass  # draining began before it could start: unacknowledged, for the next owner
        except Exception as exc:
            # Unreachable by design (handle answers or waits). If it happens anyway, do not
            # acknowledge an unanswered command: fail liveness so the pod restarts and the
            # uncommitted command is processed again.
            self.liveness.fail(f"agent failed: {type(exc).__name__}")
            log.exception("agent failed; /healthz now fails so the worker restarts")
        finally:
            if not done.done():  # failed, not started or cancelled: a redelivery is handled afresh
                done.set_result(False)

    def _lane_of(self, decoded: RawCommand | None, msg: Any) -> tuple[str, str]:
        """The lane of a command (its venue, or "unknown") and its account: from the command
        decoded to route it, or, on the by-account topic, from its key (``<exchange>:<account>``,
        written by the router)."""
        if decoded is not None:
            exchange, account = decoded.exchange, decoded.account
        else:
            key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else ""
            exchange, _, account = key.partition(":")
        return (exchange if exchange in self.venues else UNKNOWN), account or ""

    async def handle(
        self,
        value: bytes | None,
        *,
        timestamp_ms: int | None = None,
        position: tuple[int, int] = (0, 0),
        state: bool = True,
        topic: str | None = None,
        decoded: RawCommand | None = None,
    ) -> Outcome:
        """Process one command and publish its outputs, then its state-topic records; returns
        only when they are acked. ``position`` (partition, offset) breaks version ties; with
        ``topic`` it names the command's record in the "command answered" line. Called by the
        agent; affects the output topics, the account's state, liveness and the metrics."""
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        self.liveness.started()
        try:
            outcome = await self._process(value, timestamp_ms, decoded)
            # The order events' encoded values (by id of the value), reused as the state
            # topic's upserts: the same OrderEvents, encoded once (single-object framing does
            # not depend on the topic; with a registry each topic has its own subject).
            encoded: dict[int, bytes] | None = {} if self.serializer.registry is None else None
            outcome = await self.outcomes.publish(outcome, value, encoded)
            if state:
                await self.state_writer.publish_state(outcome, position, encoded)
            if self.standing is not None:
                self.standing.mark_answered(outcome.request_id)
        finally:
            metrics.IN_FLIGHT.dec()
            self.liveness.finished()
        label = outcome.exchange if outcome.exchange in self.venues else "unknown"
        metrics.COMMANDS.labels(label, "OK" if outcome.ok else "FAILED").inc()
        metrics.COMMAND_LATENCY.labels(label).observe(time.perf_counter() - started)
        metrics.ORDER_EVENTS.labels(label).inc(len(outcome.orders))
        if outcome.error is not None:
            metrics.ERRORS.labels(outcome.error.value["code"]).inc()
        self.venue_health.record(
            outcome.exchange, outcome.ok, outcome.error.value["code"] if outcome.error else None
        )
        log.info(
            "command answered %s with %d orders",
            "OK" if outcome.ok else "FAILED",
            len(outcome.orders),
            extra={
                "request_id": outcome.request_id,
                "exchange": outcome.exchange,
                "account": outcome.account,
                **({"topic": topic, "partition": position[0], "offset": position[1]}
                   if topic is not None else {}),
            },
        )  # fmt: skip
        return outcome

    async def _process(
        self, value: bytes | None, timestamp_ms: int | None, decoded: RawCommand | None = None
    ) -> Outcome:
        """The pipeline's outcome, waiting out a registry outage while decoding the command."""
        process = partial(self.pipeline.process, value, timestamp_ms=timestamp_ms)
        while True:
            answers = self.serializer.registry_answers
            try:
                outcome = await process(decoded=decoded)
            except RegistryUnavailable as exc:  # decoding a Confluent-framed command
                await self.outages.wait("schema registry", exc)
                continue
            except Exception as exc:  # the pipeline's contract says never; keep serving anyway
                log.exception("pipeline raised")
                return self.pipeline.failure(
                    value, InternalError(f"internal error: {type(exc).__name__}")
                )
            if self.serializer.registry_answers > answers:
                self.outages.recovered("schema registry")
            return outcome
