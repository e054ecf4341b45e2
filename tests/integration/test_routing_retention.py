"""The by-account topic must keep commands as long as the command topic (issue 20), checked
at the worker's start against the broker's own topic configs.

A command forwarded to the by-account topic is committed on the command topic once the forward
is acknowledged; a by-account topic with a shorter retention can delete it before the worker of
its account reads it (that worker lagging or down), and nothing would read it again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.errors import ConfigurationError
from connector.kafka import client_kwargs
from connector.settings import Settings
from connector.worker.routing import check_by_account_retention, retention_ms

from .harness import isolated_env, settings_from_env

pytestmark = pytest.mark.integration


async def _create(settings: Settings, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(name, 4, 1, topic_configs={"retention.ms": str(ms)})
            for name, ms in topics.items()
        ])  # fmt: skip
    finally:
        await admin.close()


@pytest.mark.parametrize("by_account_ms", [60_000, 86_400_000, -1])
async def test_a_by_account_topic_with_a_shorter_retention_fails_the_start(
    kafka_env: dict[str, str], topics: list[str], tmp_path: Path, by_account_ms: int
) -> None:
    env = isolated_env(kafka_env, f"ret-{uuid.uuid4().hex[:4]}", {}, tmp_path)
    settings = settings_from_env(env)
    await _create(settings, {settings.topic_query_orders: 86_400_000,
                             settings.commands_by_account_topic: by_account_ms})  # fmt: skip
    reported = await retention_ms(
        settings, [settings.topic_query_orders, settings.commands_by_account_topic]
    )
    assert reported == {settings.topic_query_orders: 86_400_000,
                        settings.commands_by_account_topic: by_account_ms}  # fmt: skip
    if by_account_ms == 60_000:
        with pytest.raises(ConfigurationError, match=r"retention\.ms=60000, less than"):
            await check_by_account_retention(settings)
    else:
        await check_by_account_retention(settings)
