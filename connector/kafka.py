"""Kafka client settings and topic administration shared by the worker, CLI and tests.

Start-up checks live here: a TLS file that cannot be loaded and a contract topic missing on the
broker are :class:`~connector.errors.ConfigurationError` lines naming the setting (the worker
never creates the contract topics: production provisions them with its own partitions and
retention). Which topics exist and who creates them is :mod:`connector.topicplan`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from murmurhash2 import murmurhash2

from .errors import ConfigurationError
from .settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{ENV_PREFIX}KAFKA_SSL_CAFILE: cannot load {settings.kafka_ssl_cafile}: "
            f"{type(exc).__name__}"
        ) from None
    if settings.kafka_ssl_certfile:
        try:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{ENV_PREFIX}KAFKA_SSL_CERTFILE/{ENV_PREFIX}KAFKA_SSL_KEYFILE: cannot load "
                f"{settings.kafka_ssl_certfile}: {type(exc).__name__}"
            ) from None
    return ctx


#: Kafka's murmur2 seed (org.apache.kafka.common.utils.Utils.murmur2).
MURMUR2_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit int, equal to aiokafka's
    pure-Python ``aiokafka.partitioner.murmur2`` (tests/unit/test_partitioner.py) at a fortieth of
    its cost: the murmurhash2 package (Rust), seeded as Kafka seeds it."""
    return int(murmurhash2(data, MURMUR2_SEED)) & 0xFFFFFFFF


def kafka_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """The producer's partitioner: aiokafka's ``DefaultPartitioner`` (and so the Java client's
    and librdkafka's ``murmur2_random``) rule, with the C hash. A keyed record goes to
    ``all_partitions[toPositive(murmur2(key)) % len(all_partitions)]``; a record without a key
    to a random available partition. aiokafka's pure-Python murmur2 was 8-10% of the worker's
    CPU with 1,000-order snapshots (one hash per order event, py-spy in ``make bench``)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap and security."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    ctx = ssl_context(settings)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def consumer_kwargs(settings: Settings) -> dict[str, Any]:
    """:func:`client_kwargs` plus the consumer long-poll wait (see settings)."""
    return {**client_kwargs(settings), "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms}


async def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Wait for the port first, quietly: aiokafka logs every refused connection as an ERROR.
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            break
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"broker {settings.kafka_bootstrap} not listening") from None
            await asyncio.sleep(0.05)
    while True:
        admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"broker {settings.kafka_bootstrap} not answering: {exc}"
                ) from None
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def await_broker(settings: Settings, max_backoff_s: float = 10.0) -> None:
    """Wait without limit until the broker answers, with capped jittered backoff; one log line
    when waiting starts and one when the broker is reachable (not one per attempt)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempts = 0
    while True:
        try:
            await wait_for_broker(settings, timeout=2.0)
        except TimeoutError as exc:
            if attempts == 0:
                log.warning("broker not reachable (%s); waiting for it", exc)
            attempts += 1
            delay = min(max_backoff_s, 0.2 * 2**attempts)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            continue
        if attempts:
            log.warning("broker reachable after %.1fs", loop.time() - started)
        return


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the connector's four contract topics if missing (``connector broker``, tests);
    returns the ones created. As planned in :func:`connector.topicplan.topic_plan`."""
    from .topicplan import topic_plan

    rf = settings.topic_replication_factor
    return await create_missing_topics(
        settings, [t.new_topic(rf) for t in topic_plan(settings) if t.created_by == "you"]
    )


async def create_missing_topics(settings: Settings, topics: list[NewTopic]) -> list[str]:
    """Create those of ``topics`` that do not exist yet (one admin connection); returns the
    names this call created (a topic another process created meanwhile is not counted)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created = []
        for topic in topics:
            if topic.name in existing:
                continue
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def missing_topics(settings: Settings) -> list[str]:
    """``SETTING=topic`` for each of the four contract topics the broker does not have."""
    from .topicplan import topic_plan

    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [
        t.label for t in topic_plan(settings) if t.created_by == "you" and t.name not in existing
    ]


async def require_topics(settings: Settings) -> None:
    """Wait up to ``startup_topic_wait_s`` for the worker's topics (one log line if any are
    missing), then one ConfigurationError line naming every topic still missing and its
    setting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.startup_topic_wait_s
    missing = await missing_topics(settings)
    if missing and settings.startup_topic_wait_s > 0:
        log.warning(
            "topics missing (%s); waiting up to %gs for them",
            ", ".join(missing),
            settings.startup_topic_wait_s,
        )
        while missing and loop.time() < deadline:
            await asyncio.sleep(0.5)
            missing = await missing_topics(settings)
        if not missing:
            log.warning("topics present")
    if missing:
        raise ConfigurationError(
            f"topics missing on {settings.kafka_bootstrap}: {', '.join(missing)} "
            "(create them, or point the settings at existing topics)"
        )


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: murmur2, as Java clients,
    aiokafka and librdkafka's ``murmur2_random`` compute it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Partition count per existing topic among ``topics`` (absent topics are left out)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d.get("partitions")}
