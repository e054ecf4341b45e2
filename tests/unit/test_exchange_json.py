"""Exchange JSON: no floats in, the exchange's exact text out, on both encoder paths."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.exchanges._json import _dump_exact, dump_raw, loads

QUOTED = '{"orderId":"r1é","price":"66000","orderQty":"0.0001","time":1615696544843,"ok":true,"x":null,"l":[1,"a"]}'


def test_fast_path_gives_the_same_text_as_the_exact_path() -> None:
    row = loads(QUOTED)
    assert dump_raw(row) == _dump_exact(row) == QUOTED


def test_bare_numbers_keep_their_digits() -> None:
    row = loads('{"price":0.10,"qty":1e-8,"n":7}')
    assert row["price"] == Decimal("0.10")
    assert dump_raw(row) == '{"price":0.10,"qty":1E-8,"n":7}'


@pytest.mark.parametrize("text", ['{"p": NaN}', '{"p": Infinity}', '{"p": -Infinity}'])
def test_non_finite_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        loads(text)
