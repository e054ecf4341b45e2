"""The shared resilience layer: one retry policy, clock and instrument cache for every venue."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping

import pytest
from prometheus_client import REGISTRY

from connector.errors import (
    AuthFailed,
    ExchangeTimeout,
    ExchangeUnavailable,
    RateLimited,
)
from connector.resilience import InstrumentCache, RetryPolicy, ServerClock, retry_after_s


def scripted(*outcomes: BaseException | str) -> tuple[list[float], Callable[[], Awaitable[str]]]:
    """An operation that fails/succeeds in order, recording when each try started."""
    started: list[float] = []
    queue = list(outcomes)

    async def op() -> str:
        started.append(asyncio.get_running_loop().time())
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return started, op


async def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    started, op = scripted(*[ExchangeUnavailable("503")] * 5, "ok")
    policy = RetryPolicy(max_attempts=6, backoff_s=0.02, max_backoff_s=0.05)
    loop = asyncio.get_running_loop()
    assert await policy.call(op, deadline=loop.time() + 5, venue="t", what="op") == "ok"
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert len(gaps) == 5
    assert all(0.02 <= g for g in gaps)
    assert all(g <= 0.05 + 0.02 for g in gaps)  # capped (plus scheduling slack)


async def test_non_throttling_failures_stop_after_max_attempts() -> None:
    started, op = scripted(ExchangeUnavailable("503", exchange_code="503"))
    loop = asyncio.get_running_loop()
    with pytest.raises(ExchangeUnavailable) as info:
        await RetryPolicy(3, 0.001).call(op, deadline=loop.time() + 5, venue="t", what="op")
    assert len(started) == info.value.attempts == 3


async def test_throttling_is_retried_until_the_deadline_and_never_past_it() -> None:
    started, op = scripted(RateLimited("429", exchange_code="429"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    with pytest.raises(RateLimited) as info:
        await RetryPolicy(2, 0.01, 0.05).call(op, deadline=deadline, venue="t", what="op")
    # No attempt starts past the deadline (the raise itself may land a scheduler tick later).
    assert max(started) <= deadline
    assert info.value.attempts == len(started) > 2
    assert info.value.exchange_code == "429"


async def test_retry_after_is_honoured() -> None:
    started, op = scripted(RateLimited("429", retry_after=0.2), "ok")
    loop = asyncio.get_running_loop()
    await RetryPolicy(3, 0.001).call(op, deadline=loop.time() + 5, venue="t", what="op")
    assert started[1] - started[0] >= 0.2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),  # a negative delay means "now"
        # HTTP-date (RFC 9110), counted from now = 1445412400 (07:26:40 GMT): 80 s ahead.
        ("Wed, 21 Oct 2015 07:28:00 GMT", 80.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # already past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, now=1445412400.0) == seconds


async def test_a_wait_past_the_deadline_ends_as_timeout_keeping_the_exchange_code() -> None:
    started, op = scripted(ExchangeUnavailable("502", exchange_code="502"))
    loop = asyncio.get_running_loop()
    with pytest.raises(ExchangeTimeout) as info:
        await RetryPolicy(5, 10.0).call(op, deadline=loop.time() + 1, venue="t", what="op")
    assert len(started) == 1
    assert info.value.exchange_code == "502"
    assert isinstance(info.value.__cause__, ExchangeUnavailable)


async def test_non_retryable_errors_are_raised_at_once() -> None:
    started, op = scripted(AuthFailed("no", exchange_code="40012"))
    loop = asyncio.get_running_loop()
    with pytest.raises(AuthFailed):
        await RetryPolicy(5, 0.001).call(op, deadline=loop.time() + 5, venue="t", what="op")
    assert len(started) == 1


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_instrument_cache_failure_policy_and_metric() -> None:
    answers: list[Mapping[str, str] | BaseException] = [
        ExchangeUnavailable("down"),
        {"BTC-PERP": "BTC/USDT:USDT"},
        ExchangeUnavailable("down again"),
    ]
    loads = 0

    async def loader(key: str, deadline: float) -> Mapping[str, str]:
        nonlocal loads
        loads += 1
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    labels = {"exchange": "cache-test", "kind": "instruments"}
    cache: InstrumentCache[str, str] = InstrumentCache(loader, venue="cache-test", ttl_s=0.0)
    loop = asyncio.get_running_loop()
    assert await cache.get("k", deadline=loop.time() + 1) == {}  # no list yet: empty, no failure
    assert await cache.get("k", deadline=loop.time() + 1) == {"BTC-PERP": "BTC/USDT:USDT"}
    # expired (ttl 0) and the refresh fails: the previous list is used
    assert await cache.get("k", deadline=loop.time() + 1) == {"BTC-PERP": "BTC/USDT:USDT"}
    assert loads == 3
    assert sample("connector_exchange_metadata_fetches_total", **labels) == 3
    assert sample("connector_exchange_metadata_failures_total", **labels) == 2


async def test_concurrent_cache_misses_share_one_load() -> None:
    loads = 0

    async def loader(key: str, deadline: float) -> Mapping[str, str]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return {"a": "b"}

    cache: InstrumentCache[str, str] = InstrumentCache(loader, venue="t", ttl_s=60)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(cache.get("k", deadline=loop.time() + 1) for _ in range(10)))
    assert loads == 1


async def test_server_clock_offset_from_round_trip_midpoint_and_resync() -> None:
    calls = 0

    async def source(deadline: float) -> int:
        nonlocal calls
        calls += 1
        from connector.model import now_ms

        return now_ms() + 45_000  # the exchange is 45 s ahead

    clock = ServerClock(source, venue="t")
    loop = asyncio.get_running_loop()
    await clock.ensure(deadline=loop.time() + 1)
    await clock.ensure(deadline=loop.time() + 1)  # cached
    assert calls == 1
    assert clock.offset_ms is not None and abs(clock.offset_ms - 45_000) < 1_000
    generation = clock.generation
    await asyncio.gather(*(clock.resync(generation, deadline=loop.time() + 1) for _ in range(5)))
    assert calls == 2  # concurrent "timestamp expired" callers share one re-measurement


async def test_optional_clock_falls_back_to_local_time() -> None:
    async def source(deadline: float) -> int:
        raise ExchangeUnavailable("no Date header")

    loop = asyncio.get_running_loop()
    with pytest.raises(ExchangeUnavailable):
        await ServerClock(source, venue="t").ensure(deadline=loop.time() + 1)
    optional = ServerClock(source, venue="t", required=False)
    await optional.ensure(deadline=loop.time() + 1)
    assert optional.offset_ms is None
