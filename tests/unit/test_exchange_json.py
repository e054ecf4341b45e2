"""Exchange JSON at the boundary: no floats in, the exchange's exact text kept for ``raw``."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from connector.errors import MalformedResponse
from connector.exchanges._json import DecimalText, decode, raw_text


class Row(msgspec.Struct):
    price: DecimalText | None = None
    n: int | None = None


def test_quoted_and_bare_decimals_keep_their_exact_text() -> None:
    assert decode(Row, '{"price":"66000.10"}', "t").price == "66000.10"
    # A bare number never passes through a float: 0.1000000000000000055 would not survive one.
    assert decode(Row, '{"price":0.1000000000000000055}', "t").price == "0.1000000000000000055"
    assert Decimal(decode(Row, '{"price":1e-8}', "t").price or "") == Decimal("1e-8")


def test_raw_rows_are_the_bytes_as_sent() -> None:
    body = '{"data": [ {"price": 0.10 ,"x":"é"} ]}'
    rows = decode(dict[str, list[msgspec.Raw]], body, "t")["data"]
    assert raw_text(rows[0]) == '{"price": 0.10 ,"x":"é"}'


@pytest.mark.parametrize(
    "text", ['{"price": NaN}', '{"price": Infinity}', '{"price": true}', '{"n": "x"}', "[1]"]
)
def test_unreadable_payloads_are_malformed_responses(text: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        decode(Row, text, "somewhere")
    assert info.value.message.startswith("somewhere: ")
    assert info.value.retryable is False
