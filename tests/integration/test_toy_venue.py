"""A third venue added without touching connector/: the toy venue in tests/toyvenue.

The sandbox and the worker are started as a user would start them, with
``CONNECTOR_VENUE_PLUGINS=tests.toyvenue``; the command goes through the broker and the
answer comes back as OrderEvents and an OK QueryResult.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connector import devstack
from connector.kafka import ensure_topics, wait_for_broker

from .harness import (
    Commands,
    Outputs,
    isolated_env,
    rid,
    settings_from_env,
    start_worker,
    wait_ready,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_ENV = {
    "CONNECTOR_VENUE_PLUGINS": "tests.toyvenue",
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
}


@pytest.fixture
def toy_sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    # Run from tmp_path: the plugin is importable only through PYTHONPATH, like an installed one.
    with devstack.Stack(tmp_path / "toy", env=PLUGIN_ENV, cwd=tmp_path) as stack:
        yield stack.start_sandbox()


async def test_toy_venue_end_to_end(
    worker_env: dict[str, str], toy_sandbox: dict[str, str], tmp_path: Path
) -> None:
    # The sandbox served the toy venue and wrote its account, with the toy's own option.
    assert "CONNECTOR_TOYEX_REST_URL" in toy_sandbox
    accounts_file = Path(toy_sandbox["CONNECTOR_ACCOUNTS_FILE"])
    accounts = yaml.safe_load(accounts_file.read_text())  # noqa: ASYNC240 - small local file
    assert accounts["accounts"]["toy-demo"]["options"] == {"desk": "d1"}

    env = isolated_env(worker_env, "toy", {**toy_sandbox, **PLUGIN_ENV}, tmp_path / "data")
    settings = settings_from_env(env)
    await wait_for_broker(settings)
    await ensure_topics(settings)
    worker = start_worker(env, tmp_path / "worker.log")
    outputs, commands = Outputs(settings), Commands(settings)
    try:
        await wait_ready(worker)
        await outputs.start()
        await commands.start()

        main = await commands.send(request_id=rid("toy"), exchange="ToyEx", account="toy-demo")
        side = await commands.send(
            request_id=rid("toy-side"), exchange="toyex", account="toy-demo", book="side"
        )
        bad = await commands.send(
            request_id=rid("toy-bad"), exchange="toyex", account="toy-demo", book="nope"
        )
        wrong_venue = await commands.send(
            request_id=rid("toy-bg"), exchange="bitget", account="bitget-demo", book="main"
        )

        answer = await outputs.answer(main)
        assert answer.result["status"] == "OK"
        assert (answer.result["order_count"], answer.result["exchange_calls"]) == (2, 1)
        by_id = {o.value["order_id"]: o for o in answer.orders}
        assert set(by_id) == {"11", "12"}
        assert by_id["11"].key == "toyex:toy-demo:11"
        assert by_id["11"].headers["exchange"] == "toyex"
        v = by_id["12"].value
        assert (v["exchange"], v["side"], v["price"], v["quantity"]) == (
            "toyex",
            "SELL",
            "1.3",
            "0.5",
        )

        answer = await outputs.answer(side)
        assert answer.result["status"] == "OK"
        assert [o.value["order_id"] for o in answer.orders] == ["21"]

        for request_id, needle in ((bad, "book"), (wrong_venue, "book applies to toyex only")):
            answer = await outputs.answer(request_id)
            assert answer.result["status"] == "FAILED"
            assert answer.result["error_code"] == "INVALID_COMMAND"
            assert needle in answer.errors[0].value["message"]
    finally:
        await commands.stop()
        await outputs.stop()
        worker.stop()
