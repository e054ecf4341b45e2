"""Log lines: ISO-8601 UTC timestamps, a command's context on every line of its work (adapters
included, through a context variable), JSON with no control codes when not a terminal."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest

from connector import codec, logs
from connector.account import Account, Accounts
from connector.model import FetchResult, OrderQuery
from connector.pipeline import Pipeline
from connector.secrets import Secret
from connector.settings import Settings

adapter_log = logging.getLogger("connector.exchanges.test")


class LoggingAdapter:
    """Logs from inside the adapter, as the venue adapters do, and from a task it starts."""

    exchange = "ascendex"

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        adapter_log.info("fetching page 1")

        async def page_two() -> None:
            adapter_log.info("fetching page 2")

        await asyncio.create_task(page_two())
        return FetchResult([], calls=2)

    async def aclose(self) -> None:
        pass


class _NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def stream() -> Iterator[_NotATerminal]:
    out = _NotATerminal()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(logs.logging_config("INFO", "auto", stream=out))
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_every_line_of_a_command_carries_its_context(stream: io.StringIO) -> None:
    accounts = Accounts([Account("desk", "ascendex", Secret("key-abcdef"), Secret("s3cr3t"))])
    pipe = Pipeline(Settings(), accounts, {"ascendex": LoggingAdapter()}, codec.Serializer())  # type: ignore[dict-item]
    body = {"request_id": "r-ctx", "exchange": "AscendEX", "account": "desk"}
    outcome = await pipe.process(json.dumps(body).encode())
    assert outcome.ok
    adapter_log.info("after the command")
    records = lines(stream)
    inside = [r for r in records if str(r["message"]).startswith("fetching")]
    assert len(inside) == 2
    for r in inside:
        assert (r["request_id"], r["exchange"], r["account"]) == ("r-ctx", "ascendex", "desk")
    after = next(r for r in records if r["message"] == "after the command")
    assert "request_id" not in after  # the context ends with the command


def test_json_lines_have_iso_utc_timestamps_and_no_control_codes(stream: io.StringIO) -> None:
    logging.getLogger("connector.test").warning("\x1b[31mred\x1b[0m text")
    text = stream.getvalue()
    record = json.loads(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(record["time"]))
    assert "\x1b" not in text and "\x1b" not in str(record["message"])


def test_extra_fields_win_over_the_context(stream: io.StringIO) -> None:
    with logs.context(request_id="outer", exchange="bitget"):
        logging.getLogger("connector.test").warning("x", extra={"request_id": "explicit"})
    (record,) = lines(stream)
    assert record["request_id"] == "explicit" and record["exchange"] == "bitget"


def test_text_format_uses_iso_utc() -> None:
    record = logging.LogRecord("connector", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 0.0
    assert logs.TextFormatter().format(record).startswith("1970-01-01T00:00:00.000Z INFO")
