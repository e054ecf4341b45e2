"""The Faust worker: the ``query-orders`` agent, publishing with at-least-once delivery.

Faust commits an input offset only once the event is acknowledged, and our agent acknowledges
it only after every output of that command has been acknowledged by the broker (acks=all). A
crash in between therefore repeats a command's outputs; it never loses them. Commands are
processed ``worker_concurrency`` at a time; Faust commits the highest *contiguous* acknowledged
offset per partition, so a slow command holds back commits, never skips them. Commits happen
every ``kafka_commit_interval_s`` or after ``kafka_commit_every`` acks, whichever comes first, so
a crash repeats about the in-flight commands, not seconds of history.

Nothing a command does can escape the agent (see README "Guarantees"):

* the pipeline turns every input and exchange problem into a FAILED outcome;
* outages (broker, schema registry) are waited out with capped, jittered backoff, logging one
  line when they start and one when they end; the command stays unacknowledged meanwhile;
* an outcome the broker refuses for good (e.g. larger than its message limit) is replaced by a
  FAILED ``INTERNAL`` outcome without the echo, so the command is still answered exactly once.

``/healthz`` fails when the agent's actors are gone or when commands are pending and none made
progress for ``liveness_stall_s``; ``/readyz`` needs the producer and the broker, not a partition
(an idle group member in a rolling update is normal).
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import random
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
import httpx
from aiohttp.web import Response as AioResponse
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .accounts import Accounts, load_accounts
from .codec import ORDER_EVENT, RegistryUnavailable, serializer_for
from .commands import RawCommand, validate_command
from .errors import ConfigurationError, ConnectorError, InternalError
from .exchanges import create_adapters
from .exchanges.base import ExchangeAdapter
from .faust_transport import App
from .kafka import (
    await_broker,
    kafka_partitioner,
    partition_counts,
    partition_for,
    require_topics,
    ssl_context,
)
from .logs import logging_config
from .model import now_ms
from .pipeline import Outcome, OutputRecord, Pipeline
from .schedules import Progress, Schedule, parse_request_id
from .settings import SCHEDULES_TABLE, STATE_TABLE, Settings
from .state import (
    AccountState,
    Snapshot,
    StateRecord,
    apply_snapshot,
    scope_of_query,
    table_key,
    unpublished_tombstones,
    with_pending,
)
from .statetopic import ensure_internal_topics, state_headers
from .status import VenueHealth, status_document
from .version import __version__

log = logging.getLogger(__name__)

READY_BROKER_TIMEOUT_S = 2.0
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
Batched = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""One record to send: key, value (None: a tombstone) and headers."""
Encoded = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""One record to send with its topic."""
# Publishing (Connector._send_batch): records for one partition sent as a record batch from
# this many on; values above MAX_BATCHED_VALUE keep the producer's per-record path (and its
# max_request_size check).
BATCH_MIN_RECORDS = 16
MAX_BATCHED_VALUE = 128 * 1024


def is_outage(exc: BaseException) -> bool:
    """Broker or registry unavailable (wait and retry) vs. a refusal that retrying cannot fix."""
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ else exc
    if isinstance(cause, _TOO_LARGE):
        return False
    return isinstance(
        cause,
        (TimeoutError, OSError, KafkaError, ProducerSendError, RegistryUnavailable,
         httpx.TransportError),
    )  # fmt: skip


@dataclass(eq=False)
class _StateWrite:
    """A snapshot waiting to be written to its account's state (Connector.publish_state)."""

    snap: Snapshot
    outcome: Outcome
    encoded: dict[int, bytes]
    done: bool = False
    upserts: int = 0
    tombstones: int = 0


class Outages:
    """Backoff and state-change logging for broker/registry outages, shared by all actors."""

    def __init__(self, max_backoff_s: float, on_wait: Any = None) -> None:
        self.max_backoff_s = max_backoff_s
        self.down: dict[str, tuple[float, int]] = {}  # what -> (since, attempts)
        self._on_wait = on_wait

    async def wait(self, what: str, exc: BaseException) -> None:
        since, attempts = self.down.get(what, (time.monotonic(), 0))
        if what not in self.down:
            log.warning(
                "%s unavailable (%s); holding commands and retrying", what, type(exc).__name__
            )
            metrics.OUTAGES.labels(what).inc()
        self.down[what] = (since, attempts + 1)
        # Exponential, capped, "equal jitter": never a hot loop, never a synchronized herd.
        delay = min(self.max_backoff_s, 0.2 * 2**attempts)
        if self._on_wait is not None:
            self._on_wait()
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def recovered(self, *what: str) -> None:
        for name in what:
            state = self.down.pop(name, None)
            if state is not None:
                log.warning("%s available again after %.1fs", name, time.monotonic() - state[0])


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
        schedules: list[Schedule] | None = None,
        direct_partitions: int | None = None,
    ) -> None:
        self.settings = settings
        self.schedules = schedules or []
        self.serializer = serializer_for(settings)
        self.adapters = adapters if adapters is not None else create_adapters(settings)
        # Metric label values: the configured venues and "unknown", never caller input.
        self.venues = frozenset(self.adapters)
        self.outages = Outages(settings.outage_backoff_max_s, on_wait=self._beat)
        self.accounts = accounts
        self.venue_health = VenueHealth(self.venues)
        self._pending = 0
        self._progress = time.monotonic()
        self._fatal: str | None = None
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Per account: the lock that serializes applying snapshots to its state (commands of
        # one account run concurrently). The state itself lives in ``state_table``;
        # ``_local_state`` only serves handle() called outside an agent (unit tests).
        self._local_state: dict[str, AccountState] = {}
        self._state_locks: dict[str, asyncio.Lock] = {}
        # Per account: the snapshots waiting for the lock (the holder writes them all), and the
        # last state whose records this process saw acknowledged (see _write_states).
        self._state_queues: dict[str, list[_StateWrite]] = {}
        self._published: dict[str, AccountState] = {}
        # Records this process has started handling, by identity (see _agent): Faust can deliver
        # a record twice around a rebalance (fetched before its post-recovery seek and again
        # after it). Bounded; the value says whether the first delivery was answered.
        self._handled: OrderedDict[tuple[Any, ...], asyncio.Future[bool]] = OrderedDict()
        self.pipeline = Pipeline(settings, accounts, self.adapters, self.serializer)
        self.app = App(
            settings.app_id,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=_credentials(settings),
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
        # Routing by account (docs/state-topic.md "Routing"): every command of an account is
        # handled on the partition ``partition_for(<exchange>:<account>)`` of the command topic
        # or of the by-account topic (same partition count, so Faust assigns partition p of
        # both, and of the state table's changelog, to one worker). A command already on its
        # account's partition (keyed ``<exchange>:<account>`` by a murmur2 partitioner, as Java
        # clients do) is handled where it is; any other (unkeyed, other key, other partitioner)
        # is forwarded to the by-account topic first (Faust-style repartitioning, one extra
        # hop). So an account's state and its exchange rate limits live on one worker, whatever
        # key the caller used and however many workers run.
        # ``direct_partitions``: the partition count when the command topic's equals the
        # by-account topic's (run_worker checks it at start); None forwards every command.
        self.direct_partitions = direct_partitions
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
        source = self.app.topic(
            settings.topic_query_orders,
            settings.commands_by_account_topic,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )
        self.agent = self.app.agent(
            source, name="query-orders", concurrency=settings.worker_concurrency
        )(self._agent)
        # Standing queries (connector/schedules.py): the group leader's timer publishes them; the
        # progress per schedule (last slot published, deadline of the unanswered one) is a
        # GlobalTable, so a new leader after a rebalance or restart continues from it.
        self.schedule_table: Any = None
        if self.schedules:
            self.schedule_table = self.app.GlobalTable(
                SCHEDULES_TABLE,
                default=None,
                partitions=1,
                use_partitioner=True,
                schema=faust.Schema(key_serializer="json", value_serializer="json"),
            )
            tick_s = min(1.0, min(s.interval_s for s in self.schedules) / 4)
            self.app.timer(interval=tick_s, on_leader=True, name="standing-queries")(
                self._schedule_tick
            )
        self._register_web()
        self.app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    def _topic(self, name: str) -> Any:
        return self.app.topic(name, key_serializer="raw", value_serializer="raw", internal=False)

    async def _agent(self, stream: Any) -> None:
        async for event in stream.events():
            if self._draining:
                # Shutting down: do not start this command, and do not let Faust ack it (it
                # acks an event when the loop asks for the next one, and again when the agent
                # is cancelled: the stream generator's ``finally`` acks the current event, which
                # a later commit would then skip: a lost command). The extra references keep
                # every such ack from being final. Parked until the agent is cancelled; the
                # offset stays uncommitted for the next owner.
                event.message.incref(1 << 30)
                await asyncio.Event().wait()
            msg = event.message
            ts = msg.timestamp
            # Topic, partition and offset, plus timestamp and checksum: the embedded broker
            # restarts offsets at 0 after a restart, and a new record must never look repeated.
            identity = (msg.topic, msg.partition, msg.offset, ts, zlib.crc32(event.value or b""))
            first = self._handled.get(identity)
            if first is not None and await asyncio.shield(first):
                # A redelivery of a record this process answered: acking it again is a no-op.
                log.info("record redelivered by the consumer, already answered; skipped",
                         extra={"topic": msg.topic, "partition": msg.partition,
                                "offset": msg.offset})  # fmt: skip
                event.ack()
                continue
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._handled[identity] = done
            while len(self._handled) > _HANDLED_MAX:
                self._handled.popitem(last=False)
            try:
                where, decoded = "here", None
                if msg.topic != self.settings.commands_by_account_topic:
                    where, decoded = await self._route(event.value, msg)
                if where != "forwarded":
                    await self.handle(
                        event.value,
                        timestamp_ms=int(ts * 1000) if ts else None,
                        position=(msg.partition, msg.offset),
                        state=where == "here",
                        topic=msg.topic,
                        decoded=decoded,
                    )
                # Ack now, not when this actor takes its next event (Faust's default): an idle
                # actor would otherwise hold back the commit of an answered command, and a
                # SIGTERM or SIGKILL would repeat it. A second ack by Faust is a no-op.
                event.ack()
                done.set_result(True)
            except Exception as exc:
                # Unreachable by design (handle answers or waits). If it happens anyway, do not
                # move on: that would acknowledge an unanswered command. Fail liveness so the
                # pod restarts and the uncommitted command is processed again.
                self._fatal = f"agent failed: {type(exc).__name__}"
                log.exception("agent failed; /healthz now fails so the worker restarts")
                raise
            finally:
                if not done.done():  # failed or cancelled: a redelivery is handled afresh
                    done.set_result(False)

    async def _route(self, value: bytes | None, msg: Any) -> tuple[str, RawCommand | None]:
        """Where a command from the command topic is handled, and the command decoded (so the
        pipeline does not decode it again): ``"here"`` when it is on its account's partition
        already, ``"forwarded"`` once the by-account topic acknowledged its copy (so it is never
        lost between the hops), ``"stateless"`` when it has no account to route by (it ends as
        INVALID_COMMAND anyway) or the broker refused the forward for good (then it is answered
        here, without a state update, rather than dropped)."""
        routable = await self._decode_routable(value)
        if routable is None:
            return "stateless", None
        raw, key = routable
        n = self.settings.topic_partitions
        partition = partition_for(key, n)
        if self.direct_partitions == n and msg.partition == partition:
            return "here", raw
        try:
            await self._forward(value, key, partition, msg)
        except _Refused:
            return "stateless", raw
        metrics.COMMANDS_FORWARDED.inc()
        log.debug("command forwarded to its account's partition",
                  extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                         "to_partition": partition})  # fmt: skip
        return "forwarded", raw

    async def _decode_routable(self, value: bytes | None) -> tuple[RawCommand, bytes] | None:
        """The command decoded and its routing key (``<exchange>:<account>``, as the state
        table keys it) when it validates; None (any partition: it ends as INVALID_COMMAND) when
        it does not."""
        while True:
            try:
                raw = await self.pipeline.decode(value)
                query = validate_command(raw)
            except RegistryUnavailable as exc:
                await self.outages.wait("schema registry", exc)
                continue
            except ConnectorError:
                return None
            except Exception:  # never let a command stop the agent
                log.exception("decoding a command to route it failed; handling it without state")
                return None
            return raw, _utf8(table_key(query.exchange, query.account))

    async def _forward(self, value: bytes | None, key: bytes, partition: int, msg: Any) -> None:
        headers = list(msg.headers or [])
        topic = self.settings.commands_by_account_topic

        async def send() -> None:
            await (await self.app.producer.send(
                topic, key, value, partition, msg.timestamp, headers
            ))  # fmt: skip

        refused = await self._until_acked(send)
        if refused is not None:
            log.error("forwarding a command refused (%s)", _cause(refused))
            raise _Refused from refused

    async def _schedule_tick(self, *args: Any) -> None:
        """On the leader only: publish the standing queries that are due (one per schedule and
        slot, none while the previous one is unanswered), each acked before it counts."""
        app: Any = self.app
        if self._draining or app.rebalancing or not app.tables.recovery.completed.is_set():
            return  # the progress table may be stale until recovery is done
        try:
            progress = Progress({k: dict(v) for k, v in self.schedule_table.items()})
            for cmd in progress.tick(now_ms(), self.schedules):
                command = {k: v for k, v in cmd.command.items() if v is not None}
                key = _utf8(table_key(command["exchange"], command["account"]))
                fut = await app.producer.send(
                    self.settings.topic_query_orders, key, json.dumps(command).encode(),
                    None, None, None,
                )  # fmt: skip
                await fut
                self.schedule_table[cmd.schedule_id] = progress.published(cmd)
                log.info(
                    "standing query published",
                    extra={"request_id": command["request_id"], "exchange": command["exchange"],
                           "account": command["account"]},
                )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: the next tick tries again (same slot, same id)
            log.warning("standing queries: publishing failed (%s)", type(exc).__name__)

    def _mark_answered(self, request_id: str) -> None:
        if self.schedule_table is None or parse_request_id(request_id) is None:
            return
        changed = Progress({k: dict(v) for k, v in self.schedule_table.items()}).answered(
            request_id
        )
        if changed is not None:
            self.schedule_table[changed[0]] = changed[1]

    def _beat(self) -> None:
        self._progress = time.monotonic()

    async def _until_acked(self, send: Callable[[], Awaitable[Any]]) -> BaseException | None:
        """Run ``send`` (which returns once the broker acknowledged what it sent) until it
        succeeds, waiting out broker and schema registry outages with backoff; returns None
        then, or the exception of a refusal that retrying cannot fix (for the caller to
        answer). The one retry loop behind every write the worker makes."""
        while True:
            answers = self.serializer.registry_answers
            try:
                await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc):
                    return exc
                what = "schema registry" if isinstance(exc, RegistryUnavailable) else "broker"
                await self.outages.wait(what, exc)
                continue
            self.outages.recovered("broker")
            if self.serializer.registry_answers > answers:
                self.outages.recovered("schema registry")
            return None

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
        ``topic`` it names the command's record in the "command answered" line."""
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        self._pending += 1
        self._idle.clear()
        self._beat()
        try:
            outcome = await self._process(value, timestamp_ms, decoded)
            # The order events' encoded values (by id of the value), reused as the state
            # topic's upserts: the same OrderEvents, encoded once (single-object framing does
            # not depend on the topic; with a registry each topic has its own subject).
            encoded: dict[int, bytes] | None = {} if self.serializer.registry is None else None
            outcome = await self.publish(outcome, value, encoded)
            if state:
                await self.publish_state(outcome, position, encoded)
            self._mark_answered(outcome.request_id)
        finally:
            metrics.IN_FLIGHT.dec()
            self._pending -= 1
            if not self._pending:
                self._idle.set()
            self._beat()
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
        while True:
            answers = self.serializer.registry_answers
            try:
                outcome = await self.pipeline.process(
                    value, timestamp_ms=timestamp_ms, decoded=decoded
                )
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

    async def publish(
        self,
        outcome: Outcome,
        value: bytes | None = None,
        encoded: dict[int, bytes] | None = None,
    ) -> Outcome:
        """Publish in contract order, retrying until the broker acknowledges; returns what was
        published (``outcome``, or its FAILED replacement when the broker refused it for good).

        The order events go first and must all be acknowledged before the ErrorEvent/QueryResult,
        so a consumer that sees the result knows the snapshot is complete. A broker or registry
        outage is waited out rather than dropping or failing the command: the input offset is
        not committed meanwhile, so nothing is lost.
        """
        replaced = False
        while True:
            refused = await self._until_acked(partial(self._send_outcome, outcome, encoded))
            if refused is None:
                return outcome
            if not replaced:
                cause = _cause(refused)
                log.error(
                    "outputs refused by the broker (%s); answering FAILED instead",
                    cause,
                    extra={"request_id": outcome.request_id, "exchange": outcome.exchange},
                )
                outcome = self.pipeline.failure(
                    value, InternalError(f"outputs could not be published: {cause}"), echo=False
                )
                replaced = True
            else:  # even the minimal FAILED outcome was refused: nothing left but waiting
                log.error("publishing the FAILED outcome refused (%s); retrying", _cause(refused))
                await self.outages.wait("broker", refused)

    async def _send_outcome(self, outcome: Outcome, encoded: dict[int, bytes] | None) -> None:
        await self._send_batch(outcome.orders, encoded)
        await self._send_batch([r for r in (outcome.error, outcome.result) if r is not None])

    async def publish_state(
        self,
        outcome: Outcome,
        position: tuple[int, int],
        encoded: dict[int, bytes] | None = None,
    ) -> None:
        """Apply a complete OK snapshot to its account's state and publish the upserts and
        tombstones on the state topic, after the snapshot's QueryResult (docs/state-topic.md);
        returns once they are acknowledged. A FAILED outcome changes nothing.

        Applying is serialized per account (the lock), so two snapshots of one account finishing
        together neither lose an update nor interleave their records;
        :func:`connector.state.apply_snapshot` orders them by version, so the older one finishing
        last does not regress the state. Snapshots that queue for the lock are written together
        by whoever holds it next (:meth:`_write_states`): one table change and one produce round
        for all of them instead of two round trips each, one after another, which bounded the
        commands per second of a busy account.
        """
        query = outcome.query
        if not outcome.ok or query is None:
            return
        key = table_key(outcome.exchange, outcome.account)
        snap = Snapshot(
            outcome.exchange,
            outcome.account,
            scope_of_query(query),
            (outcome.started_at, *position),
            [r.value for r in outcome.orders],
        )
        mine = _StateWrite(snap, outcome, encoded or {})
        self._state_queues.setdefault(key, []).append(mine)
        async with self._state_locks.setdefault(key, asyncio.Lock()):
            if not mine.done:  # nobody wrote it while this command waited for the lock
                queued = self._state_queues.pop(key)
                try:
                    await self._write_states(key, queued)
                except BaseException:  # cancelled: the others go back, for the next holder
                    rest = [w for w in queued if w is not mine]
                    self._state_queues[key] = rest + self._state_queues.get(key, [])
                    raise
                for write in queued:
                    write.done = True
        label = outcome.exchange if outcome.exchange in self.venues else "unknown"
        if mine.upserts:
            metrics.STATE_RECORDS.labels(label, "upsert").inc(mine.upserts)
        if mine.tombstones:
            metrics.STATE_RECORDS.labels(label, "tombstone").inc(mine.tombstones)

    async def _write_states(self, key: str, queued: list[_StateWrite]) -> None:
        """Apply ``queued`` snapshots of one account in turn, store the resulting state, then
        publish their records (connector/state.py "Publishing": the stored state is never
        behind the topic, and names the versions being published as pending)."""
        first = queued[0]
        ctx = {"exchange": first.snap.exchange, "account": first.snap.account}
        loaded = self._load_state(key)
        # A state this process did not see published (loaded from the changelog after a restart
        # or a rebalance, or whose records were refused) may have tombstones nobody sent.
        unconfirmed: AccountState | None = None
        resend: list[StateRecord] = []
        if loaded is not None and loaded is not self._published.get(key):
            try:
                resend = unpublished_tombstones(loaded, first.snap.exchange, first.snap.account)
                unconfirmed = loaded
            except (ValueError, KeyError, TypeError):  # unreadable: reported just below
                pass
        batches = [(resend, first.outcome, first.encoded)]
        counts: list[tuple[int, int]] = []
        state = loaded
        for write in queued:
            try:
                applied = apply_snapshot(state, write.snap)
            except (ValueError, KeyError, TypeError) as exc:  # a stored state we cannot read
                log.error("stored state unreadable (%s); starting afresh", type(exc).__name__,
                          extra=ctx)  # fmt: skip
                applied = apply_snapshot(None, write.snap)
            state = applied.state
            batches.append((applied.records, write.outcome, write.encoded))
            counts.append((len(applied.upserts), len(applied.tombstones)))
        assert state is not None  # at least one snapshot was applied
        with_pending(state, (w.snap.version for w in queued), unconfirmed)
        ids = {**ctx, "request_ids": [w.outcome.request_id for w in queued]}
        if not await self._store_state(key, state):
            log.error("state records not published: the table change was refused", extra=ids)
            return
        refused = await self._until_acked(partial(self._send_state, batches))
        if refused is not None:
            log.error("state records refused by the broker (%s)", _cause(refused), extra=ids)
            return
        self._published[key] = state
        # Counted as acknowledged (connector_state_records_total) only now.
        for write, (upserts, tombstones) in zip(queued, counts, strict=True):
            write.upserts, write.tombstones = upserts, tombstones

    def _load_state(self, key: str) -> AccountState | None:
        if key in self._local_state:  # stored outside an agent (see _store_state)
            return self._local_state[key]
        value: AccountState | None = self.state_table.get(key)
        return value

    async def _store_state(self, key: str, value: AccountState) -> bool:
        """Store ``value`` as the account's state; True once the changelog acknowledged it."""
        if faust.current_event() is None:  # called outside an agent (unit tests)
            self._local_state[key] = value
            return True
        # What ``table[key] = value`` does, but keeping the changelog record's future (Faust's
        # own drops it: a failed send would be an "exception never retrieved" and a silently
        # stale table after a restart). It is acknowledged before the command is, so a worker
        # killed right after the ack restarts from a table that has this snapshot; a broker
        # outage is waited out like any other.
        table = self.state_table
        table.data[key] = value
        partition = table.partition_for_key(key)
        refused = await self._until_acked(lambda: table.send_changelog(partition, key, value))
        if refused is not None:
            log.error("state table change refused by the broker (%s)", _cause(refused))
        return refused is None

    async def _send_state(
        self, batches: list[tuple[list[StateRecord], Outcome, dict[int, bytes]]]
    ) -> None:
        """Send state records and wait for every acknowledgement, as :meth:`_send_batch` does.
        Each batch carries its command's headers; an upsert's value is the order event's bytes
        from the batch's ``encoded`` when present, else encoded here."""
        topic = self.settings.topic_state
        items: list[Encoded] = []
        for records, outcome, encoded in batches:
            headers = state_headers(outcome.request_id, outcome.exchange, outcome.account)
            for rec in records:
                value = None if rec.value is None else encoded.get(id(rec.value))
                if rec.value is not None and value is None:
                    value = await self.serializer.encode(topic, ORDER_EVENT, dict(rec.value))
                items.append((topic, _utf8(rec.key), value, headers[rec.value is not None]))
        await self._send_encoded(items)

    async def _send_batch(
        self, records: list[OutputRecord], keep: dict[int, bytes] | None = None
    ) -> None:
        """Encode ``records``, send them and wait for every acknowledgement (see
        :meth:`_send_encoded`); ``keep`` collects the encoded values by id of the value."""
        encoded: list[Encoded] = []
        last: tuple[dict[str, str] | None, list[tuple[str, bytes]]] = (None, [])
        for rec in records:
            topic = self.settings.topic_for(rec.role)
            value = await self.serializer.encode(topic, rec.schema, rec.value)
            if keep is not None:
                keep[id(rec.value)] = value
            key = _utf8(rec.key) if rec.key is not None else None
            if rec.headers is not last[0]:  # a snapshot's events share one headers dict
                last = (rec.headers, [(k, _utf8(v)) for k, v in rec.headers.items()])
            encoded.append((topic, key, value, last[1]))
        await self._send_encoded(encoded)

    async def _send_encoded(self, encoded: list[Encoded]) -> None:
        """Send encoded records (topic, key, value, headers) and wait for every
        acknowledgement. Every future is awaited, even after a failure, so no exception is
        left unretrieved.

        Records are partitioned here, by the producer's own rule (:func:`kafka_partitioner`
        over the producer's metadata), so the same keys land on the same partitions. Where one
        partition gets at least ``BATCH_MIN_RECORDS`` of them (a large snapshot), they go as
        aiokafka record batches (``create_batch``/``send_batch``): one future per batch
        instead of one per record, which was the costliest part of publishing after encoding.
        Fewer records per partition (a small snapshot, a QueryResult) go one by one through
        ``producer.send`` and join the batch the producer is already filling, as before. Either
        way a partition's records are appended in order and this returns only once every one
        of them is acknowledged (acks=all).
        """
        producer = self.app.producer
        futures: list[Any] = []
        failure: BaseException | None = None
        try:
            groups = await self._by_partition(encoded)
            for (topic, partition), items in groups.items():
                if partition is None or len(items) < BATCH_MIN_RECORDS:
                    for key, value, headers in items:
                        futures.append(await producer.send(topic, key, value, None, None, headers))
                else:
                    futures += await self._send_record_batches(topic, partition, items)
        except Exception as exc:
            failure = exc
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            failure = failure or next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    async def _by_partition(
        self, encoded: list[Encoded]
    ) -> dict[tuple[str, int | None], list[Batched]]:
        """Records grouped by (topic, partition), in order. Partition None = leave it to
        ``producer.send`` (all of them, when a record has no key or a value too large for a
        batch: those keep exactly the producer's own path, size checks included)."""
        unsplit: dict[tuple[str, int | None], list[Batched]] = {}
        for topic, key, value, headers in encoded:
            unsplit.setdefault((topic, None), []).append((key, value, headers))
        if len(encoded) < BATCH_MIN_RECORDS or any(
            key is None or len(value or b"") > MAX_BATCHED_VALUE for _, key, value, _ in encoded
        ):
            return unsplit
        aio = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        for topic, _ in unsplit:
            await aio.client._wait_on_metadata(topic)
            cluster = aio.client.cluster
            everyone = list(cluster.partitions_for_topic(topic) or ())
            if not everyone:  # no metadata after all: the producer's path reports it
                return unsplit
            partitions[topic] = (
                everyone,
                list(cluster.available_partitions_for_topic(topic) or ()),
            )
        groups: dict[tuple[str, int | None], list[Batched]] = {}
        for topic, key, value, headers in encoded:
            partition = kafka_partitioner(key, *partitions[topic])
            groups.setdefault((topic, partition), []).append((key, value, headers))
        return groups

    async def _send_record_batches(
        self,
        topic: str,
        partition: int,
        items: list[Batched],
    ) -> list[Any]:
        """``items`` as aiokafka record batches of at most the producer's batch size; one
        future per batch. The batches are left open, so other commands' records sent meanwhile
        may join them, as they would join any batch of the producer."""
        aio = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        futures = []
        builder = aio.create_batch()
        for key, value, headers in items:
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                futures.append(await aio.send_batch(builder, topic, partition=partition))
                builder = aio.create_batch()
                # An empty batch always takes one record (aiokafka's DefaultRecordBatchBuilder).
                builder.append(timestamp=None, key=key, value=value, headers=headers)
        futures.append(await aio.send_batch(builder, topic, partition=partition))
        return futures

    # --- health and metrics --------------------------------------------------------------------

    def alive(self) -> tuple[bool, str]:
        """Liveness: the agent's actors are running and pending work is making progress."""
        if self._fatal:
            return False, self._fatal
        agent: Any = self.agent
        if agent.started:
            live = len([a for a in list(agent._actors) if a.actor_task and not a.actor_task.done()])
            if live < self.settings.worker_concurrency:
                return False, f"{self.settings.worker_concurrency - live} agent actors are dead"
        stall = self.settings.liveness_stall_s
        idle = time.monotonic() - self._progress
        if self._pending and idle > stall:
            return False, f"{self._pending} commands pending, no progress for {idle:.0f}s"
        # Faust's table recovery blocks every command until it is done, and it can wait forever
        # for changelog records a broker lost (seen on the embedded broker, whose in-memory
        # storage a restart wipes): past the same stall limit, a restart (a fresh recovery) is
        # the way out.
        recovery: Any = getattr(self.app.tables, "recovery", None)
        started = getattr(recovery, "_recovery_started_at", None)
        if getattr(recovery, "in_recovery", False) and started is not None:
            recovering = time.monotonic() - started
            if recovering > stall:
                return False, f"state table recovery stuck for {recovering:.0f}s"
        return True, "ok"

    async def ready(self) -> tuple[bool, str]:
        """Readiness: alive, producer started and the broker answering right now.

        Owning a partition is *not* required: with as many replicas as partitions, a surge pod
        is an idle group member until an old pod leaves, and a rolling update must not stall on
        it. Each probe makes one metadata round trip (bounded by READY_BROKER_TIMEOUT_S).
        """
        ok, reason = self.alive()
        if not ok:
            return False, reason
        app = self.app
        producer = getattr(app.producer, "_producer", None)  # the underlying aiokafka producer
        if producer is None or not app.producer.started:  # type: ignore[attr-defined]
            return False, "producer not started"
        try:
            reachable = await asyncio.wait_for(
                producer.client.force_metadata_update(), READY_BROKER_TIMEOUT_S
            )
        except (TimeoutError, KafkaError, OSError):
            reachable = False
        if not reachable:
            return False, "broker not reachable"
        assigned = app.consumer.assignment() if app.consumer else set()
        if not assigned:
            return True, "no partitions assigned (idle group member)"
        return True, f"{len(assigned)} partitions assigned"

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (no secrets: see connector/status.py)."""
        from .exchanges import registry

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
        )

    def _register_web(self) -> None:
        connector = self

        @self.app.page("/status")
        class Status(View):
            async def get(self, request: Request) -> Response:
                return self.json(connector.status())

        @self.app.page("/healthz")
        class Healthz(View):
            async def get(self, request: Request) -> Response:
                ok, reason = connector.alive()
                return self.json(
                    {"status": "ok" if ok else "failing", "reason": reason},
                    status=200 if ok else 503,
                )

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
        # Faust has stopped fetching but its agents still run: let the commands in flight
        # finish (bounded by shutdown_drain_s), start no new ones, then commit what was
        # answered so the next owner of these partitions does not repeat it.
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_drain_s)
        except TimeoutError:
            log.warning(
                "%d commands still in flight after %.0fs; abandoning them uncommitted",
                self._pending,
                self.settings.shutdown_drain_s,
            )
        try:  # diagnostics for the known gap in README "Guarantees" (repeats after SIGTERM)
            consumer: Any = self.app.consumer
            log.debug(
                "shutdown: acked-but-uncommitted %s, committed %s",
                {f"{tp.topic}:{tp.partition}": len(v) for tp, v in consumer._acked.items() if v},
                {f"{tp.topic}:{tp.partition}": o for tp, o in consumer._committed_offset.items()},
            )
        except Exception:  # noqa: S110 - Faust internals; diagnostics only
            pass
        try:
            # Twice: a commit already running when we get here returns without committing
            # the acks that came after it started.
            committed = False
            for _ in range(2):
                committed = await asyncio.wait_for(self.app.consumer.commit(), 10) or committed
            log.info("final commit of acknowledged offsets: %s", "done" if committed else "none")
        except Exception as exc:  # best effort: at worst the next owner repeats them
            log.warning("final commit failed: %s", type(exc).__name__)
        for adapter in self.adapters.values():
            try:
                await adapter.aclose()
            except Exception:
                log.exception("closing exchange adapter failed")
        await self.serializer.aclose()


async def _await_broker_serving_health(settings: Settings) -> None:
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


def ready_line(settings: Settings, accounts: Accounts, venues: Any) -> dict[str, Any]:
    """The fields of the one "ready" log line (no secrets: account aliases only)."""
    per_venue: dict[str, list[str]] = {name: [] for name in sorted(venues)}
    for account in accounts:
        per_venue.setdefault(account.exchange, []).append(account.alias)
    return {
        "version": __version__,
        "bootstrap": settings.kafka_bootstrap,
        "group": settings.app_id,
        "topics": {**settings.topics, "state": settings.topic_state},
        "venues": sorted(venues),
        "accounts": {k: sorted(v) for k, v in per_venue.items()},
        "web_port": settings.web_port,
    }


class _Worker(faust.Worker):
    """Faust's worker, with no spinner when stdout is not a terminal (no control codes in
    logs) and one "ready" line when start-up has finished."""

    def __init__(self, *args: Any, ready: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = ready
        if not self.stdout.isatty():
            self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        r = self._ready
        log.info(
            "ready: connector %s, bootstrap %s, group %s, topics %s, venues %s, accounts %s, "
            "web port %s",
            r["version"], r["bootstrap"], r["group"],
            ", ".join(f"{k}={v}" for k, v in r["topics"].items()), ", ".join(r["venues"]),
            "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in r["accounts"].items()),
            r["web_port"],
            extra={"ready": r},
        )  # fmt: skip


def run_worker(settings: Settings) -> None:
    """``connector worker``: load accounts, build the app, run until SIGTERM/SIGINT."""

    if not settings.accounts_file:
        raise ConfigurationError("CONNECTOR_ACCOUNTS_FILE: required for the worker")
    accounts = load_accounts(settings.accounts_file)
    schedules = load_checked_schedules(settings, accounts)
    # Broker absent at start is an outage like any other: wait (serving /healthz meanwhile)
    # instead of letting Faust give up after its first connection attempt.
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_await_broker_serving_health(settings))
        # Faust may not declare topics (topic_allow_declare=False): create the state topic and
        # the internal ones (by-account commands, table changelog) if missing.
        created = loop.run_until_complete(ensure_internal_topics(settings))
        if created:
            log.info("created topics: %s", ", ".join(created))
        direct = loop.run_until_complete(check_routing_partitions(settings))
    finally:
        loop.close()
    connector = Connector(settings, accounts, schedules=schedules, direct_partitions=direct)
    worker = _Worker(
        connector.app,
        ready=ready_line(settings, accounts, connector.venues),
        quiet=not sys.stdout.isatty(),  # Faust's banner and spinner are for terminals
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


async def check_routing_partitions(settings: Settings) -> int | None:
    """The by-account topic and the state table's changelog must have
    ``CONNECTOR_TOPIC_PARTITIONS`` partitions (Faust co-partitions them; a mismatch would put
    an account's state on another worker): otherwise fail at start with one line. Returns that
    count when the command topic has it too, so commands already on their account's partition
    are handled without the extra hop; None when every command must be forwarded."""

    n = settings.topic_partitions
    names = [settings.commands_by_account_topic, settings.state_table_changelog]
    counts = await partition_counts(settings, [settings.topic_query_orders, *names])
    for name in names:
        if counts.get(name, n) != n:
            raise ConfigurationError(
                f"CONNECTOR_TOPIC_PARTITIONS: {n}, but topic {name!r} has {counts[name]} "
                "partitions; they must be equal (docs/state-topic.md)"
            )
    if counts.get(settings.topic_query_orders) == n:
        return n
    log.warning(
        "command topic %r has %s partitions, not CONNECTOR_TOPIC_PARTITIONS=%s: every command "
        "is forwarded to %r (one extra hop)", settings.topic_query_orders,
        counts.get(settings.topic_query_orders), n, settings.commands_by_account_topic,
    )  # fmt: skip
    return None


def load_checked_schedules(settings: Settings, accounts: Accounts) -> list[Schedule]:
    """The schedules file, each entry checked as the command it will publish and against the
    accounts file: a problem fails at start with one line naming the entry."""
    from .schedules import SETTING, load_schedules

    if not settings.schedules_file:
        return []
    schedules = load_schedules(settings.schedules_file)
    for i, s in enumerate(schedules):
        command = {"request_id": "check", "exchange": s.exchange, "account": s.account,
                   **s.filters}  # fmt: skip
        try:
            validate_command(RawCommand(command))
            accounts.get(s.exchange, s.account)
        except ConnectorError as exc:
            where = f"{SETTING}: schedules[{i}] ({s.exchange}:{s.account})"
            raise ConfigurationError(f"{where}: {exc}") from None
    return schedules


_HANDLED_MAX = 4096  # records remembered per process for redelivery detection


class _Refused(Exception):
    """The broker refused a forwarded command for good."""


def _cause(exc: BaseException) -> str:
    """The name of what the broker refused with (Faust wraps aiokafka's errors)."""
    return type(exc.__cause__ or exc).__name__


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")
