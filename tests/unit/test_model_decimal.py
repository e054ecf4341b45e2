"""canonical_decimal's fast path (the Decimal's own text) gives exactly the exact path's answer."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.model import canonical_decimal


def exact(d: Decimal) -> str:
    """The definition: normalize, then fixed-point; every zero is "0"."""
    n = d.normalize()
    return "0" if n == 0 else format(n, "f")


texts = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{'.' + frac if frac is not None else ''}{exp}",
    st.sampled_from(["", "-", "+"]),
    st.from_regex(r"\A[0-9]{1,22}\Z"),
    st.none() | st.from_regex(r"\A[0-9]{0,22}\Z"),
    st.sampled_from(["", "", "", "E-3", "e+2", "E0", "E-30", "E+25"]),
)


@settings(max_examples=3000, deadline=None)
@given(text=texts)
def test_same_as_the_exact_path_for_exchange_like_text(text: str) -> None:
    d = Decimal(text)
    assert canonical_decimal(d) == exact(d)


@settings(max_examples=1000, deadline=None)
@given(d=st.decimals(allow_nan=False, allow_infinity=False))
def test_same_as_the_exact_path_for_any_finite_decimal(d: Decimal) -> None:
    assert canonical_decimal(d) == exact(d)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60000.5", "60000.5"), ("0.0100", "0.01"), ("66000", "66000"), ("0", "0"), ("-0", "0"),
     ("0.000", "0"), ("1E+2", "100"), ("1E-7", "0.0000001"), ("-0.5", "-0.5"),
     ("12345678901234567890123456.7", "12345678901234567890123456.7"),
     ("1234567890123456789012345678.9", exact(Decimal("1234567890123456789012345678.9")))],
)  # fmt: skip
def test_examples(text: str, expected: str) -> None:
    assert canonical_decimal(Decimal(text)) == expected


def test_a_lower_context_precision_takes_the_exact_path() -> None:
    d = Decimal("1.23456789")
    with localcontext() as ctx:
        ctx.prec = 5
        assert canonical_decimal(d) == exact(d) == "1.2346"
