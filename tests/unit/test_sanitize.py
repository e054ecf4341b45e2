"""Sanitizing outputs: the fast path (nothing to change) must never let a secret or an
unencodable string through; the slow path still redacts and escapes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import codec, secrets
from connector.pipeline import Outcome, OutputRecord, _is_clean, sanitize, sanitize_record
from connector.secrets import (
    REDACTED,
    Secret,
    contains_secret,
    contains_secret_utf8,
    register_secrets,
)

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


@pytest.fixture
def registry_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by the test are forgotten afterwards (the registry is process-wide)."""
    monkeypatch.setattr(secrets, "REGISTRY", secrets.REGISTRY.copy())


def test_the_json_scan_finds_a_secret_in_every_kind_of_place(registry_restored: None) -> None:
    register_secrets(Secret(SECRET))
    assert secrets.secrets_survive_json()
    for rec in (
        record(raw=f'{{"clientOrderId":"{SECRET}"}}'),  # escaped quotes around it
        record(symbol=f'a"b\\c\n{SECRET}\x01é'),  # escapes and non-ASCII before it
        record(copy_trading={"trader_name": f"x{SECRET}y"}),
        record(exec_instructions=["ok", SECRET]),
        record(command=b"bytes are not scanned", message=SECRET),
    ):
        assert not _is_clean(rec)
        assert SECRET not in repr(sanitize_record(rec).value)


@pytest.mark.parametrize(
    "secret", ['quote"in-secret-0123', "back\\slash-secret-0123", "tab\tsecret-01"]
)
def test_a_secret_json_would_escape_is_still_found(registry_restored: None, secret: str) -> None:
    register_secrets(Secret(secret))
    assert not secrets.secrets_survive_json()  # so the record is walked, not JSON-encoded
    for rec in (record(raw=f"x{secret}y"), record(copy_trading={"trader_id": secret})):
        assert not _is_clean(rec)
        out = sanitize_record(rec)
        assert secret not in repr(out.value) and REDACTED in repr(out.value)


def test_an_unencodable_string_is_never_clean(registry_restored: None) -> None:
    register_secrets(Secret(SECRET))
    assert not _is_clean(record(copy_trading={"trader_name": "x\udc80"}))
    assert not _is_clean(OutputRecord("orders", "k\ud800", codec.ORDER_EVENT, {}, {}))


# The registry is restored after the test, not between examples: registering the same three
# secrets again is harmless, and both scans always see the same set.
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    inside=st.booleans(),
    secret=st.sampled_from(["ünïcode-sécret-ключ", "plain-secret-value-99", "秘密の鍵-0123"]),
)
def test_utf8_scan_agrees_with_the_text_scan(
    registry_restored: None, before: str, after: str, inside: bool, secret: str
) -> None:
    register_secrets(Secret(secret))
    text = before + (secret if inside else secret[:-1]) + after
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return  # not encodable: never scanned as bytes (the JSON encoder refuses it)
    assert contains_secret_utf8(data) == contains_secret(text)
    if inside:
        assert contains_secret_utf8(data)


def test_a_whole_snapshot_is_checked_at_once_and_one_dirty_order_is_still_redacted(
    registry_restored: None,
) -> None:
    register_secrets(Secret(SECRET))
    clean = [record(order_id=str(i), raw='{"orderId":"1"}') for i in range(50)]
    out = sanitize(Outcome("r1", "ascendex", "desk", True, orders=list(clean)))
    assert all(a is b for a, b in zip(out.orders, clean, strict=True))  # passed through
    dirty = [*clean[:25], record(order_id="x", raw=f'{{"clientOrderId":"{SECRET}"}}'), *clean[25:]]
    out = sanitize(Outcome("r1", "ascendex", "desk", True, orders=dirty))
    assert SECRET not in repr([r.value for r in out.orders])
    assert out.orders[25].value["raw"] == f'{{"clientOrderId":"{REDACTED}"}}'
    assert [r.value["order_id"] for r in out.orders] == [r.value["order_id"] for r in dirty]
    assert out.orders[0] is clean[0]  # the clean ones still pass through unchanged
    # Halves of a secret in two records are no secret: the JSON of the batch keeps them apart.
    half = len(SECRET) // 2
    split = [record(raw=SECRET[:half]), record(raw=SECRET[half:])]
    out = sanitize(Outcome("r1", "ascendex", "desk", True, orders=split))
    assert [r.value["raw"] for r in out.orders] == [SECRET[:half], SECRET[half:]]
