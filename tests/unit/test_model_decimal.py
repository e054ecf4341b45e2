"""The decimal helpers' fast paths give exactly the answers (and errors) of the general path."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.exchanges._json import DecimalText
from connector.model import canonical_decimal, decimal_or_none, millis_or_none, text_or_none


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


# --- decimal_or_none / millis_or_none fast paths: same answers (and errors) as before --------

PLACEHOLDER_TEXTS = ["", " ", "NULL_VAL", "None", "null", "NULL", " 0 ", "0", "-0.000"]


def reference_decimal_or_none(value: object, *, zero_is_null: bool = False) -> Decimal | None:
    """decimal_or_none as it was before its str fast path."""
    s = text_or_none(value)
    if s is None:
        return None
    if isinstance(value, float):
        raise ValueError(f"refusing float {value!r}: decimals must arrive as strings")
    try:
        d = Decimal(s)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {s!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {s!r}")
    if zero_is_null and d == 0:
        return None
    return d


def reference_millis_or_none(value: object, *, zero_is_null: bool = True) -> int | None:
    s = text_or_none(value)
    if s is None:
        return None
    try:
        ms = int(s)
    except ValueError as exc:
        raise ValueError(f"not a millisecond timestamp: {s!r}") from exc
    if zero_is_null and ms == 0:
        return None
    return ms


def outcome(fn: Callable[..., object], value: object, **kw: bool) -> tuple[str, object]:
    try:
        result = fn(value, **kw)
    except ValueError as exc:
        return "error", str(exc)
    return "ok", (result, type(result))


anything = st.one_of(
    texts,
    st.sampled_from([*PLACEHOLDER_TEXTS, "NaN", "inf", "-Infinity", "sNaN", "1e5", " 12 ", "x"]),
    st.text(max_size=12),
    st.builds(DecimalText, texts),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.decimals(),
    st.none(),
)


@settings(max_examples=3000, deadline=None)
@given(value=anything, zero_is_null=st.booleans())
def test_decimal_or_none_unchanged(value: object, zero_is_null: bool) -> None:
    got = outcome(decimal_or_none, value, zero_is_null=zero_is_null)
    assert got == outcome(reference_decimal_or_none, value, zero_is_null=zero_is_null)


@settings(max_examples=3000, deadline=None)
@given(value=anything, zero_is_null=st.booleans())
def test_millis_or_none_unchanged(value: object, zero_is_null: bool) -> None:
    got = outcome(millis_or_none, value, zero_is_null=zero_is_null)
    assert got == outcome(reference_millis_or_none, value, zero_is_null=zero_is_null)
