"""Routing by account (docs/state-topic.md "Routing").

Every command of an account is handled on the partition ``partition_for(<exchange>:<account>)``
of the command topic or of the by-account topic (same partition count, so Faust assigns
partition p of both, and of the state table's changelog, to one worker). A command already on
its account's partition (keyed ``<exchange>:<account>`` by a murmur2 partitioner, as Java
clients do) is handled where it is; any other (unkeyed, other key, other partitioner) is
forwarded to the by-account topic first (Faust-style repartitioning, one extra hop). So an
account's state and its exchange rate limits live on one worker, whatever key the caller used
and however many workers run.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .. import metrics
from ..codec import RegistryUnavailable
from ..commands import RawCommand, validate_command
from ..errors import ConfigurationError, ConnectorError
from ..kafka import client_kwargs, partition_counts, partition_for
from ..pipeline import Pipeline
from ..settings import Settings
from ..state import table_key
from .outages import Outages, refusal_name
from .outcomes import utf8
from .publisher import Publisher, Record

log = logging.getLogger(__name__)

Where = Literal["here", "forwarded", "stateless"]


class _Refused(Exception):
    """The broker refused a forwarded command for good."""


class Router:
    """Decides where a command from the command topic is handled, forwarding it if needed.

    ``direct_partitions``: the partition count when the command topic's equals the by-account
    topic's (:func:`check_routing_partitions` checks it at start); None forwards every command.
    """

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        publisher: Publisher,
        outages: Outages,
        direct_partitions: int | None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.publisher = publisher
        self.outages = outages
        self.direct_partitions = direct_partitions

    async def route(self, value: bytes | None, msg: Any) -> tuple[Where, RawCommand | None]:
        """Called by the agent for a command from the command topic: where it is handled, and
        the command decoded (so the pipeline does not decode it again): ``"here"`` when it is
        on its account's partition already, ``"forwarded"`` once the by-account topic
        acknowledged its copy (so it is never lost between the hops), ``"stateless"`` when it
        has no account to route by (it ends as INVALID_COMMAND anyway) or the broker refused
        the forward for good (then it is answered here, without a state update, rather than
        dropped). Affects the by-account topic and connector_commands_forwarded_total."""
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
            return raw, utf8(table_key(query.exchange, query.account))

    async def _forward(self, value: bytes | None, key: bytes, partition: int, msg: Any) -> None:
        topic = self.settings.commands_by_account_topic
        record = Record(topic, key, value, list(msg.headers or []), partition, msg.timestamp)
        refused = await self.outages.until_acked(lambda: self.publisher.send([record]))
        if refused is not None:
            log.error("forwarding a command refused (%s)", refusal_name(refused))
            raise _Refused from refused


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


def retention_problem(
    by_account: str, by_account_ms: int | None, commands: str, commands_ms: int | None
) -> str | None:
    """The one line refusing a by-account topic whose ``retention.ms`` is shorter than the
    command topic's (-1: forever; None: not reported, not checked), or None when it is not.

    A command forwarded to the by-account topic is acknowledged, and its offset committed, on
    the command topic as soon as the forward is acknowledged. If the by-account topic deletes
    it before the worker of its account reads it (that worker lagging, or down, longer than the
    retention), the command is lost with nothing left to read it again from: so the by-account
    topic must keep commands at least as long as the command topic does."""
    if by_account_ms is None or commands_ms is None or by_account_ms < 0:
        return None
    if commands_ms >= 0 and by_account_ms >= commands_ms:
        return None
    shown = "forever" if commands_ms < 0 else f"{commands_ms} ms"
    return (
        f"topic {by_account!r} keeps records for retention.ms={by_account_ms}, less than "
        f"{commands!r} ({shown}): a forwarded command could be deleted before it is answered; "
        "give it at least the command topic's retention (docs/state-topic.md)"
    )


async def retention_ms(settings: Settings, topics: list[str]) -> dict[str, int]:
    """``retention.ms`` per existing topic among ``topics``, as the broker reports it (a topic
    or a broker that does not report it is left out)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        )
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "retention.ms" and entry[1] is not None:
                    found[name] = int(entry[1])
    return found


async def check_by_account_retention(settings: Settings) -> None:
    """Fail at start with one line (:func:`retention_problem`) when the by-account topic keeps
    commands for less time than the command topic."""
    by_account, commands = settings.commands_by_account_topic, settings.topic_query_orders
    found = await retention_ms(settings, [by_account, commands])
    problem = retention_problem(by_account, found.get(by_account), commands, found.get(commands))
    if problem is not None:
        raise ConfigurationError(problem)
