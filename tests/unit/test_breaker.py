"""The venue circuit breaker on its own: a hand-driven clock, no event loop, no venue."""

from __future__ import annotations

import logging

import pytest

from connector import metrics
from connector.errors import (
    AuthFailed,
    ErrorCode,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidCommand,
    RateLimited,
    VenueUnavailable,
)
from connector.resilience.breaker import (
    BreakerPolicy,
    CircuitBoard,
    CircuitBreaker,
    CircuitState,
    counts_as_outage,
    iso_ms,
)

T0 = 1_782_900_000.0  # 2026-07-01T10:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def refused() -> ExchangeUnavailable:
    return ExchangeUnavailable("futures-open-orders: websocket connect failed: ConnectionRefused")


def breaker(clock: Clock) -> CircuitBreaker:
    policy = BreakerPolicy(failure_threshold=3, cooldown_s=10.0, max_cooldown_s=25.0)
    return CircuitBreaker("toyvenue", "api.example", policy, clock=clock)


def fail(b: CircuitBreaker, exc: BaseException, times: int = 1) -> None:
    for _ in range(times):
        b.record(b.allow(), exc)


def test_opens_after_n_consecutive_outages_and_answers_at_once_with_since_and_next_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, refused(), 2)
    assert b.state is CircuitState.CLOSED
    clock.now += 1
    fail(b, refused())
    assert b.state is CircuitState.OPEN
    clock.now += 3
    with pytest.raises(VenueUnavailable) as caught:
        b.allow()
    err = caught.value
    assert err.code is ErrorCode.VENUE_UNAVAILABLE and err.retryable
    opened, probe = T0 + 1, T0 + 1 + 10
    assert f"unavailable since {iso_ms(opened)} ({int(opened * 1000)})" in err.message
    assert f"next probe at {iso_ms(probe)} ({int(probe * 1000)})" in err.message
    assert iso_ms(opened) == "2026-07-01T10:00:01.000Z"
    assert err.retry_after == pytest.approx(7.0)
    assert "toyvenue (api.example)" in err.message


def test_a_success_resets_the_count() -> None:
    b = breaker(Clock())
    fail(b, refused(), 2)
    b.record(b.allow(), None)
    fail(b, refused(), 2)
    assert b.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "exc",
    [
        InvalidCommand("bad command"),
        AuthFailed("signature mismatch", exchange_code="100010"),
        RateLimited("throttled"),
        ExchangeTimeout("deadline passed while waiting for the rate limiter", retryable=True),
        ExchangeUnavailable("websocket client is closed", retryable=False),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_failures_that_say_nothing_about_the_venue_do_not_count(exc: BaseException) -> None:
    assert not counts_as_outage(exc)
    b = breaker(Clock())
    fail(b, refused(), 2)
    fail(b, exc, 5)
    assert b.state is CircuitState.CLOSED
    fail(b, refused())  # the streak was not broken either
    assert b.state is CircuitState.OPEN


@pytest.mark.parametrize(
    ("exc", "counts"),
    [
        (ExchangeUnavailable("HTTP 503", exchange_code="503"), True),
        (ExchangeTimeout("no response within 10.0s", venue_down=True), True),
        (ExchangeTimeout("no response within 0.2s", venue_down=False), False),
        (ExchangeTimeout("no answer"), False),
    ],
)
def test_outage_classification(exc: BaseException, counts: bool) -> None:
    assert counts_as_outage(exc) is counts


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, refused(), 3)
    clock.now += 10
    assert b.would_allow()
    probe = b.allow()
    assert probe.probe and b.state is CircuitState.HALF_OPEN
    assert not b.would_allow()
    with pytest.raises(VenueUnavailable, match="a probe is in flight"):
        b.allow()
    b.record(probe, None)
    assert b.state is CircuitState.CLOSED
    assert b.since_s is None and b.snapshot()["state"] == "closed"
    assert not b.allow().probe


def test_a_failed_probe_reopens_with_a_longer_cooldown_up_to_the_cap_since_unchanged() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, refused(), 3)
    cooldowns = []
    for _ in range(3):
        opened_probe = b.next_probe_s
        assert opened_probe is not None
        cooldowns.append(opened_probe - clock.now)
        clock.now = opened_probe
        b.record(b.allow(), refused())
        assert b.state is CircuitState.OPEN
    assert cooldowns == [10.0, 20.0, 25.0]
    assert b.since_s == T0
    with pytest.raises(VenueUnavailable, match=iso_ms(T0)):
        b.allow()


def test_a_neutral_probe_hands_the_probe_to_the_next_call() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, refused(), 3)
    clock.now += 10
    b.record(b.allow(), AuthFailed("bad key"))
    assert b.state is CircuitState.HALF_OPEN
    probe = b.allow()
    assert probe.probe
    b.record(probe, None)
    assert b.state is CircuitState.CLOSED


def test_results_of_calls_admitted_before_the_circuit_opened_are_ignored() -> None:
    clock = Clock()
    b = breaker(clock)
    stragglers = [b.allow() for _ in range(5)]
    for permit in stragglers[:3]:
        b.record(permit, refused())
    assert b.state is CircuitState.OPEN
    b.record(stragglers[3], None)  # started while closed: says nothing about now
    b.record(stragglers[4], refused())
    assert b.state is CircuitState.OPEN and b.snapshot()["openings"] == 1


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerPolicy(cooldown_s=10, max_cooldown_s=5)


def gauge(exchange: str, scope: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "connector_venue_circuit_state", {"exchange": exchange, "scope": scope}
    )


def transitions(exchange: str, scope: str, state: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "connector_venue_circuit_transitions_total",
        {"exchange": exchange, "scope": scope, "state": state},
    )
    return value or 0.0


def test_board_reports_each_change_once_in_a_log_line_and_the_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    board = CircuitBoard(
        {"toyboard": BreakerPolicy(failure_threshold=2, cooldown_s=5)}, clock=clock
    )
    b = board.breaker("toyboard", "group-7")
    other = board.breaker("toyboard", "group-8")
    assert board.breaker("toyboard", "group-7") is b
    assert gauge("toyboard", "group-7") == 0
    caplog.set_level(logging.INFO, logger="connector.resilience.breaker")
    fail(b, refused(), 2)
    with pytest.raises(VenueUnavailable):
        b.allow()  # refusals are not state changes: no line, no count
    assert gauge("toyboard", "group-7") == 2 and gauge("toyboard", "group-8") == 0
    assert transitions("toyboard", "group-7", "open") == 1
    assert board.is_open("toyboard") and board.is_open("toyboard", "group-7")
    assert not board.is_open("toyboard", "group-8") and other.allow()
    clock.now += 5
    probe = b.allow()
    assert gauge("toyboard", "group-7") == 1
    b.record(probe, None)
    assert gauge("toyboard", "group-7") == 0
    assert transitions("toyboard", "group-7", "closed") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "toyboard group-7: closed -> open (2 consecutive failures; cool-down 5s)" in lines[0]
    assert f"unavailable since {iso_ms(T0)}" in lines[0]
    assert "half_open" in lines[1] and "-> closed" in lines[2]
    snap = board.snapshot()["toyboard"]
    assert set(snap) == {"group-7", "group-8"} and snap["group-7"]["state"] == "closed"


def test_snapshot_while_open_has_since_and_next_probe_in_ms_and_iso() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, refused(), 3)
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["since_ms"] == int(T0 * 1000) and snap["since"] == iso_ms(T0)
    assert snap["next_probe_ms"] == int((T0 + 10) * 1000)
    assert snap["last_error"].startswith("EXCHANGE_UNAVAILABLE: ")
