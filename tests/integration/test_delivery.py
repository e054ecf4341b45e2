"""Delivery guarantees through the broker: exactly one result per command, offsets committed only
after outputs, concurrency, and no secrets anywhere in what the connector writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from connector.kafka import client_kwargs
from connector.settings import Settings

from .harness import Commands, Outputs, Worker, rid, wait_until

pytestmark = pytest.mark.integration


async def test_concurrent_commands_each_get_exactly_one_result(
    worker: Worker, commands: Commands, outputs: Outputs
) -> None:
    accounts = ["ascendex-demo", "ascendex-empty", "nobody"]
    ids = [rid(f"conc-{i}") for i in range(24)]
    await asyncio.gather(
        *(
            commands.send(request_id=r, exchange="ascendex", account=accounts[i % 3])
            for i, r in enumerate(ids)
        )
    )
    answers = [await outputs.answer(r) for r in ids]
    for i, answer in enumerate(answers):
        assert len(answer.results) == 1
        expected = "FAILED" if accounts[i % 3] == "nobody" else "OK"
        assert answer.result["status"] == expected
        assert answer.result["order_count"] == len(answer.orders)


async def test_input_offsets_are_committed_after_processing(
    worker: Worker, commands: Commands, outputs: Outputs, settings: Settings
) -> None:
    request_id = await commands.send(
        request_id=rid("commit"), exchange="ascendex", account="ascendex-empty"
    )
    await outputs.answer(request_id)
    # Reads the group's committed offsets (OffsetFetch) without joining the group.
    reader = AIOKafkaConsumer(
        **client_kwargs(settings), group_id=settings.app_id, enable_auto_commit=False
    )
    await reader.start()
    try:
        topic = settings.topic_query_orders
        ends = commands.ends(topic)
        assert ends

        async def committed_all() -> bool:
            committed = {p: await reader.committed(TopicPartition(topic, p)) for p in ends}
            return all((committed[p] or -1) >= end for p, end in ends.items())

        await wait_until(committed_all, timeout=30, what="every command committed", interval=0.2)
    finally:
        await reader.stop()


def _secrets(accounts_file: str) -> list[str]:
    data = yaml.safe_load(Path(accounts_file).read_text())["accounts"]
    values = []
    for entry in data.values():
        values += [entry[k] for k in ("api_key", "api_secret", "passphrase") if entry.get(k)]
    return values


async def test_no_secret_in_any_event_header_or_log(
    worker: Worker, commands: Commands, outputs: Outputs, sandbox: dict[str, str]
) -> None:
    # Failures are where secrets most often leak: provoke some first.
    ids = [
        await commands.send(
            request_id=rid("sec-auth"), exchange="ascendex", account="ascendex-badkey"
        ),
        await commands.send(request_id=rid("sec-ok"), exchange="ascendex", account="ascendex-demo"),
    ]
    for r in ids:
        await outputs.answer(r)
    secrets = _secrets(sandbox["CONNECTOR_ACCOUNTS_FILE"])
    assert secrets
    blobs = [worker.log_text().encode()]
    for msg in outputs.raw:
        blobs += [msg.value or b"", msg.key or b""] + [v for _, v in msg.headers or []]
    for secret in secrets:
        for blob in blobs:
            assert secret.encode() not in blob
