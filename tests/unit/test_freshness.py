"""The account-status state machine (connector/freshness.py): FRESH, FAILING, STALE, UNKNOWN,
DISABLED from attempts and time; only real changes produce a record; records encode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector import codec
from connector.freshness import (
    MESSAGE_MAX,
    Failed,
    Ok,
    apply_attempt,
    attempt_of,
    initial,
    refresh,
    sanitize,
    stale_at,
    status_of,
)

EX, ACC = "ascendex", "desk-a"
STALE_MS = 60_000


def apply(previous: dict[str, Any] | None, attempt: Ok | Failed, now: int, **kw: Any) -> Any:
    return apply_attempt(
        previous, EX, ACC, attempt, now_ms=now, stale_after_ms=kw.pop("stale", STALE_MS), **kw
    )


def ok(t: int, n: int = 3, covers: bool = True) -> Ok:
    return Ok(f"r-{t}", t, n, covers)


def failed(t: int, code: str = "TIMEOUT", message: str = "no answer in 5.0s") -> Failed:
    return Failed(f"r-{t}", t, code, message)


def test_a_configured_account_starts_unknown_or_disabled() -> None:
    record = initial(EX, ACC, stale_after_ms=STALE_MS, now_ms=5)
    assert record == {
        "exchange": EX,
        "account": ACC,
        "status": "UNKNOWN",
        "as_of": None,
        "as_of_request_id": None,
        "open_orders": None,
        "last_attempt_at": None,
        "last_error_code": None,
        "last_error_message": None,
        "consecutive_failures": 0,
        "stale_after_ms": STALE_MS,
        "updated_at": 5,
    }
    disabled = initial(EX, ACC, stale_after_ms=STALE_MS, now_ms=5, disabled=True)
    assert disabled["status"] == "DISABLED"


def test_an_ok_snapshot_makes_it_fresh_as_of_its_fetch_start() -> None:
    record = apply(None, ok(1_000, n=7), now=1_500)
    assert record is not None
    assert (record["status"], record["as_of"], record["as_of_request_id"]) == (
        "FRESH",
        1_000,
        "r-1000",
    )
    assert record["open_orders"] == 7 and record["last_attempt_at"] == 1_000
    assert record["consecutive_failures"] == 0 and record["updated_at"] == 1_500


def test_failures_make_it_failing_then_time_makes_it_stale() -> None:
    fresh = apply(None, ok(1_000), now=1_500)
    one = apply(fresh, failed(10_000, message="timed\n out   after  5 s"), now=15_000)
    assert one is not None and one["status"] == "FAILING"
    assert one["consecutive_failures"] == 1 and one["last_attempt_at"] == 10_000
    assert (one["last_error_code"], one["last_error_message"]) == ("TIMEOUT", "timed out after 5 s")
    assert one["as_of"] == 1_000  # the data is still the last complete snapshot's
    two = apply(one, failed(20_000, "AUTH_FAILED", "bad key"), now=25_000)
    assert two is not None and two["consecutive_failures"] == 2
    assert (two["last_error_code"], two["last_error_message"]) == ("AUTH_FAILED", "bad key")
    assert refresh(two, now_ms=1_000 + STALE_MS) is None  # not yet: strictly after
    stale = refresh(two, now_ms=1_001 + STALE_MS)
    assert stale is not None and stale["status"] == "STALE" and stale_at(two) == 1_001 + STALE_MS


def test_ok_again_resets_the_failures_and_clears_the_error() -> None:
    failing = apply(apply(None, ok(1_000), now=1_100), failed(2_000), now=2_100)
    back = apply(failing, ok(3_000, n=4), now=3_100)
    assert back is not None and back["status"] == "FRESH"
    assert back["consecutive_failures"] == 0
    assert back["last_error_code"] is None and back["last_error_message"] is None
    assert (back["as_of"], back["open_orders"]) == (3_000, 4)


def test_time_alone_turns_fresh_into_stale_and_a_snapshot_back() -> None:
    fresh = apply(None, ok(1_000), now=1_100)
    assert fresh is not None
    assert refresh(fresh, now_ms=30_000) is None  # nothing but updated_at would change
    stale = refresh(fresh, now_ms=1_000 + STALE_MS + 1)
    assert stale is not None and stale["status"] == "STALE" and stale["as_of"] == 1_000
    again = apply(stale, ok(70_000), now=70_100)
    assert again is not None and again["status"] == "FRESH"


def test_a_new_threshold_is_applied_and_recorded() -> None:
    fresh = apply(None, ok(1_000), now=1_100)
    assert fresh is not None
    shorter = refresh(fresh, now_ms=20_000, stale_after_ms=10_000)
    assert shorter is not None
    assert shorter["status"] == "STALE" and shorter["stale_after_ms"] == 10_000


def test_a_failure_without_any_snapshot_is_stale_not_unknown() -> None:
    record = apply(None, failed(1_000, "AUTH_FAILED"), now=1_100)
    assert record is not None and record["status"] == "STALE" and record["as_of"] is None


@pytest.mark.parametrize(
    "code", ["INVALID_COMMAND", "UNKNOWN_ACCOUNT", "UNSUPPORTED", "EXPIRED", "VENUE_DISABLED"]
)
def test_the_commands_own_mistakes_change_nothing(code: str) -> None:
    result = {"request_id": "r", "exchange": EX, "account": ACC, "status": "FAILED",
              "order_count": 0, "error_code": code, "started_at": 5}  # fmt: skip
    assert attempt_of(result, {"code": code, "message": "x"}) is None


@pytest.mark.parametrize(
    "code",
    ["AUTH_FAILED", "RATE_LIMITED", "EXCHANGE_REJECTED", "EXCHANGE_UNAVAILABLE", "TIMEOUT",
     "INTERNAL", "MALFORMED_RESPONSE", "SNAPSHOT_TOO_LARGE", "VENUE_UNAVAILABLE"],
)  # fmt: skip
def test_failures_about_the_venue_or_account_count(code: str) -> None:
    result = {"request_id": "r-9", "exchange": EX, "account": ACC, "status": "FAILED",
              "order_count": 0, "error_code": code, "started_at": 9}  # fmt: skip
    assert attempt_of(result, {"code": code, "message": "why"}) == Failed("r-9", 9, code, "why")


def test_attempts_from_query_results() -> None:
    result = {"request_id": "r-1", "exchange": EX, "account": ACC, "symbol": None,
              "status": "OK", "order_count": 3, "error_code": None,
              "started_at": datetime.fromtimestamp(1.5, UTC)}  # decoded: a datetime  # fmt: skip
    assert attempt_of(result) == Ok("r-1", 1_500, 3, True)
    assert attempt_of({**result, "symbol": "BTC-PERP"}) == Ok("r-1", 1_500, 3, False)
    assert attempt_of(result, scope={"product_type": "USDT-FUTURES"}) == Ok("r-1", 1_500, 3, True)
    assert attempt_of(result, scope={"trader_id": "t-1"}) == Ok("r-1", 1_500, 3, False)
    assert attempt_of({**result, "exchange": None, "account": None}) is None  # unreadable


def test_a_narrower_snapshot_resets_failures_but_does_not_refresh_as_of() -> None:
    failing = apply(apply(None, ok(1_000), now=1_100), failed(2_000), now=2_100)
    narrow = apply(failing, ok(3_000, covers=False), now=3_100)
    assert narrow is not None and narrow["status"] == "FRESH"
    assert narrow["as_of"] == 1_000 and narrow["consecutive_failures"] == 0
    assert narrow["last_attempt_at"] == 3_000
    stale = refresh(narrow, now_ms=1_001 + STALE_MS)
    assert stale is not None and stale["status"] == "STALE"  # only a covering snapshot refreshes


def test_an_older_ok_finishing_late_never_moves_as_of_back() -> None:
    newer = apply(None, ok(5_000, n=2), now=5_100)
    older = apply(newer, ok(4_000, n=9), now=5_200)
    assert older is None  # nothing changes


def test_an_older_ok_finishing_after_a_newer_failure_keeps_the_failure() -> None:
    base = apply(None, ok(1_000), now=1_100)
    failing = apply(base, failed(5_000), now=5_100)
    late_ok = apply(failing, ok(4_000, n=6), now=5_200)
    assert late_ok is not None
    assert (late_ok["as_of"], late_ok["open_orders"]) == (4_000, 6)  # newer data than before
    assert late_ok["status"] == "FAILING" and late_ok["consecutive_failures"] == 1
    assert late_ok["last_attempt_at"] == 5_000


def test_a_failure_older_than_the_newest_snapshot_is_ignored() -> None:
    fresh = apply(None, ok(5_000), now=5_100)
    assert apply(fresh, failed(4_000), now=5_200) is None


def test_an_older_failure_counts_but_keeps_the_newest_error() -> None:
    one = apply(apply(None, ok(1_000), now=1_100), failed(5_000, "AUTH_FAILED", "new"), now=5_100)
    two = apply(one, failed(3_000, "TIMEOUT", "old"), now=5_200)
    assert two is not None and two["consecutive_failures"] == 2
    assert (two["last_error_code"], two["last_error_message"]) == ("AUTH_FAILED", "new")
    assert two["last_attempt_at"] == 5_000


def test_disabled_wins_and_enabling_again_gives_the_facts_back() -> None:
    fresh = apply(None, ok(1_000), now=1_100)
    assert fresh is not None
    off = refresh(fresh, now_ms=2_000, disabled=True)
    assert off is not None and off["status"] == "DISABLED" and off["as_of"] == 1_000
    assert refresh(off, now_ms=3_000, disabled=True) is None
    on = refresh(off, now_ms=3_000)
    assert on is not None and on["status"] == "FRESH"


def test_status_precedence() -> None:
    facts = {"as_of": None, "consecutive_failures": 0, "stale_after_ms": 10}
    assert status_of(facts, now_ms=0) == "UNKNOWN"
    assert status_of(facts, now_ms=0, disabled=True) == "DISABLED"
    assert status_of({**facts, "consecutive_failures": 1}, now_ms=0) == "STALE"
    assert status_of({**facts, "as_of": 100}, now_ms=110) == "FRESH"
    assert status_of({**facts, "as_of": 100, "consecutive_failures": 2}, now_ms=110) == "FAILING"
    assert status_of({**facts, "as_of": 100, "consecutive_failures": 2}, now_ms=111) == "STALE"
    assert stale_at(facts) is None


def test_the_previous_record_is_never_modified_and_repeats_are_no_change() -> None:
    fresh = apply(None, ok(1_000), now=1_100)
    assert fresh is not None
    snapshot = dict(fresh)
    assert apply(fresh, ok(1_000), now=1_200) is None  # the same snapshot again
    failing = apply(fresh, failed(2_000), now=2_100)
    assert fresh == snapshot and failing is not None and failing is not fresh


def test_messages_are_one_short_line() -> None:
    assert sanitize("a\n\tb  c") == "a b c"
    long = sanitize("x" * 2_000)
    assert len(long) == MESSAGE_MAX and long.endswith("…")


def test_records_encode_with_the_schema_and_decode_back() -> None:
    records = [
        initial(EX, ACC, stale_after_ms=STALE_MS, now_ms=1),
        apply(None, ok(1_000), now=1_100),
        apply(apply(None, ok(1_000), now=1_100), failed(2_000), now=2_100),
        refresh(apply(None, failed(1_000), now=1_100) or {}, now_ms=1_200, disabled=True),
    ]
    for record in records:
        assert record is not None
        data = codec.encode_single_object(codec.ACCOUNT_STATUS, record)
        name, decoded = codec.decode_single_object(data)
        assert name == codec.ACCOUNT_STATUS and codec.to_plain(decoded) == record
