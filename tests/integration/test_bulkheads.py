"""Bulkheads (issue 20), injected for real: a worker whose AscendEX is dead, through the broker.

AscendEX's URLs point at a local TCP server that accepts connections and never answers (a hung
host), or at a port nothing listens on (connection refused); Bitget is the sandbox. 24 AscendEX
commands are produced first, then 8 Bitget commands. Every Bitget command must be answered OK
while the AscendEX commands are still waiting for their exchange (with a hung host, before the
first of them can time out), and every AscendEX command must be answered exactly once, as the
failure it is. On the old worker the AscendEX commands held every actor slot for their whole
timeout and the Bitget answers came one timeout wave later (measured: 5 to 67 s, with 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from connector.codec import QUERY_RESULT

from .faults import assert_clean_log, results_by_request, wait_results
from .harness import Answer, Stack, free_port, rid

pytestmark = [pytest.mark.integration, pytest.mark.faults]

COMMAND_TIMEOUT_S = 8
ASCENDEX_ACCOUNTS = ("ascendex-demo", "ascendex-empty", "ascendex-intent")
BITGET_ACCOUNTS = ("bitget-demo", "bitget-empty", "bitget-1", "bitget-20")


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on a free local port that accepts every connection, reads what it is sent
    and never answers; yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()


def dead_ascendex(port: int) -> dict[str, str]:
    return {
        "CONNECTOR_ASCENDEX_REST_URL": f"http://127.0.0.1:{port}",
        "CONNECTOR_ASCENDEX_WS_URL": f"ws://127.0.0.1:{port}",
        "CONNECTOR_COMMAND_TIMEOUT_S": str(COMMAND_TIMEOUT_S),
    }


async def run_scenario(stack: Stack) -> tuple[dict[str, Answer], dict[str, Answer]]:
    """24 AscendEX commands, then 8 Bitget commands, produced at once; every answer."""
    dead = [
        await stack.commands.send(request_id=rid(f"dead-{i}"), exchange="ascendex",
                                  account=ASCENDEX_ACCOUNTS[i % len(ASCENDEX_ACCOUNTS)])
        for i in range(24)
    ]  # fmt: skip
    healthy = [
        await stack.commands.send(request_id=rid(f"healthy-{i}"), exchange="bitget",
                                  account=BITGET_ACCOUNTS[i % len(BITGET_ACCOUNTS)])
        for i in range(8)
    ]  # fmt: skip
    await wait_results(stack.outputs, [*dead, *healthy], timeout=120)
    counts = results_by_request(stack.outputs)
    assert {r: counts[r] for r in [*dead, *healthy]} == {r: 1 for r in [*dead, *healthy]}
    return (
        {r: await stack.outputs.answer(r) for r in dead},
        {r: await stack.outputs.answer(r) for r in healthy},
    )


def answered_at(answer: Answer) -> int:
    """When the worker published the command's QueryResult (record timestamp, ms)."""
    (result,) = [m for m in answer.messages if m.schema == QUERY_RESULT]
    return answer.timestamp(result)


async def test_a_hung_venue_does_not_hold_another_venues_commands(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    async with silent_server() as port:
        stack = await isolated_stack("hung", **dead_ascendex(port))
        dead, healthy = await run_scenario(stack)
    for answer in healthy.values():
        assert answer.result["status"] == "OK", answer.result
    codes = {answer.result["error_code"] for answer in dead.values()}
    assert codes <= {"TIMEOUT", "VENUE_UNAVAILABLE"}, codes
    assert all(answer.result["status"] == "FAILED" for answer in dead.values())
    # Every Bitget answer was published before the first AscendEX one: the Bitget commands did
    # not wait for a single AscendEX timeout. (The old worker answered them a timeout later.)
    last_healthy = max(answered_at(a) for a in healthy.values())
    first_dead = min(answered_at(a) for a in dead.values())
    assert last_healthy < first_dead, (last_healthy, first_dead)
    # ...and the first AscendEX answer is a timeout: the exchange never answered.
    first = min(dead.values(), key=answered_at)
    assert first.result["error_code"] == "TIMEOUT", first.result
    assert_clean_log(stack.worker)


async def test_a_refusing_venue_does_not_hold_another_venues_commands(
    isolated_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await isolated_stack("refused", **dead_ascendex(free_port()))
    dead, healthy = await run_scenario(stack)
    for answer in healthy.values():
        assert answer.result["status"] == "OK", answer.result
    codes = {answer.result["error_code"] for answer in dead.values()}
    # Refused at once, or answered at once by the open circuit (the 24 usually all start
    # before it opens: none waits for another's slot).
    assert codes <= {"EXCHANGE_UNAVAILABLE", "VENUE_UNAVAILABLE"}, codes
    assert_clean_log(stack.worker)
