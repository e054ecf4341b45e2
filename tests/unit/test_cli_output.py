"""What ``query``, ``tail`` and ``state`` print: the summary a person reads on a terminal, JSON
lines for programs, and which of the two is the default."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any, TextIO

import pytest

from connector.cli import output_format
from connector.client import Decoded, summary_line
from connector.codec import ERROR_EVENT, ORDER_EVENT, QUERY_RESULT

ORDER: dict[str, Any] = {
    "request_id": "r-1", "exchange": "bitget", "account": "follower-1", "snapshot_seq": 2,
    "snapshot_size": 5, "symbol": "BTCUSDT", "unified_symbol": "BTC/USDT:USDT", "side": "SELL",
    "position_side": "LONG", "order_type": None, "status": "NEW", "price": "65000",
    "quantity": "0.01", "filled_quantity": "0", "order_id": "T-9", "reduce_only": True,
    "post_only": False, "liquidation": True, "raw": '{"trackingNo": "T-9"}',
}  # fmt: skip


def decoded(schema: str | None, value: Any, headers: dict[str, str] | None = None) -> Decoded:
    return Decoded("t", "k", headers or {}, schema, value, partition=0, offset=7)


def test_order_event_summary_names_the_command_shows_flags_and_dashes_for_absent_values() -> None:
    line = summary_line(decoded(ORDER_EVENT, ORDER))
    assert line == (
        "OrderEvent  bitget:follower-1 req=r-1 2/5 BTCUSDT   (BTC/USDT:USDT) SELL LONG - NEW "
        "price=65000 qty=0.01 filled=0 flags=reduce_only,liquidation order_id=T-9"
    )
    assert "None" not in line and "trackingNo" not in line  # no raw JSON on a terminal


def test_order_event_without_flags() -> None:
    plain = {**ORDER, "reduce_only": False, "liquidation": False, "post_only": True}
    assert " flags=post_only " in summary_line(decoded(ORDER_EVENT, plain))
    plain["post_only"] = False
    assert " flags=- " in summary_line(decoded(ORDER_EVENT, plain))


def test_result_and_error_summaries_name_request_exchange_and_account() -> None:
    result = {"request_id": "r-1", "exchange": "ascendex", "account": "desk-a", "status": "OK",
              "order_count": 120, "error_code": None, "exchange_calls": 3,
              "started_at": 1_000, "completed_at": 1_250}  # fmt: skip
    assert summary_line(decoded(QUERY_RESULT, result)) == (
        "QueryResult ascendex:desk-a req=r-1 OK order_count=120 error_code=- exchange_calls=3 "
        "took=250ms"
    )
    error = {"request_id": "r-2", "exchange": "ascendex", "account": "desk-b",
             "code": "UNKNOWN_ACCOUNT", "exchange_code": None, "message": "no such account"}  # fmt: skip
    assert summary_line(decoded(ERROR_EVENT, error)) == (
        "ErrorEvent  ascendex:desk-b req=r-2 UNKNOWN_ACCOUNT exchange_code=-: no such account"
    )


def test_command_and_other_records_are_named_too() -> None:
    command = {"request_id": "r-3", "exchange": "bitget", "account": "f", "symbol": "BTCUSDT",
               "deadline_ms": 1_800_000_000_000}  # fmt: skip
    assert summary_line(decoded("json", command)) == (
        "QueryOrders bitget:f req=r-3 symbol=BTCUSDT product_type=- trader_id=- "
        "requested_at=- deadline_ms=1800000000000"
    )
    # A record that carries none of it in its value: the headers, else "-".
    other = summary_line(decoded(None, {"x": 1}, {"request_id": "r-4", "exchange": "bitget"}))
    assert other.startswith("record bitget:- req=r-4 t[0]@7 key=k ")


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real terminal (the slave side of a pseudo-terminal), as a person's shell gives."""
    master, slave = os.openpty()
    with open(slave, "w") as stream:
        yield stream
    os.close(master)


def test_default_format_is_summary_on_a_terminal_and_json_elsewhere(terminal: TextIO) -> None:
    assert output_format(None, terminal) == "summary"
    read, write = os.pipe()
    with open(write, "w") as pipe:
        assert output_format(None, pipe) == "jsonl"
    os.close(read)
    assert output_format(None, io.StringIO()) == "jsonl"


def test_explicit_format_always_wins(terminal: TextIO) -> None:
    assert output_format("jsonl", terminal) == "jsonl"
    assert output_format("summary", io.StringIO()) == "summary"
