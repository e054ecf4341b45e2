"""Sanitizing outputs: the fast path (nothing to change) must never let a secret or an
unencodable string through; the slow path still redacts and escapes."""

from __future__ import annotations

from connector import codec
from connector.accounts import REDACTED, Secret, contains_secret, register_secrets
from connector.pipeline import OutputRecord, sanitize_record

SECRET = "fast-path-secret-0123456789abcdef"


def record(**value: object) -> OutputRecord:
    return OutputRecord("orders", "ascendex:desk:o1", codec.ORDER_EVENT, dict(value),
                        {"request_id": "r1", "schema": codec.ORDER_EVENT})  # fmt: skip


def test_contains_secret_finds_any_registered_secret_anywhere() -> None:
    register_secrets(Secret(SECRET), Secret("another-secret-value-42"))
    assert contains_secret(f'{{"clientOrderId":"{SECRET}"}}')
    assert contains_secret("x" * 1000 + "another-secret-value-42")
    assert not contains_secret("fast-path-secret-0123456789abcde")  # one character short
    assert not contains_secret("")


def test_a_clean_record_is_passed_through_unchanged() -> None:
    register_secrets(Secret(SECRET))
    rec = record(raw='{"orderId":"1"}', copy_trading={"trader_id": "t"}, tags=["a"])
    assert sanitize_record(rec) is rec


def test_a_secret_in_any_string_is_redacted() -> None:
    register_secrets(Secret(SECRET))
    for rec in (
        record(raw=f'{{"clientOrderId":"{SECRET}"}}'),
        record(copy_trading={"trader_name": f"x{SECRET}y"}),
        record(exec_instructions=["ok", SECRET]),
        OutputRecord("orders", f"k:{SECRET}", codec.ORDER_EVENT, {}, {}),
        OutputRecord("orders", None, codec.ORDER_EVENT, {}, {"request_id": SECRET}),
    ):
        out = sanitize_record(rec)
        assert out is not rec
        text = repr((out.key, out.value, out.headers))
        assert SECRET not in text and REDACTED in text


def test_an_unencodable_string_is_escaped() -> None:
    rec = record(symbol="BTC\ud800")
    out = sanitize_record(rec)
    assert out.value["symbol"] == "BTC\\ud800"
    assert sanitize_record(record(symbol="BTC-é")).value["symbol"] == "BTC-é"
