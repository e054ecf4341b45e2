"""Error mapping from recorded Bitget bodies, and the client's retry/deadline behaviour."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector import errors
from connector.errors import MalformedResponse
from connector.exchanges.bitget.http import (
    BitgetHttpClient,
    TimedOutOrBadSignature,
    TimestampExpired,
    map_response,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitget"
CASES = json.loads((FIXTURES / "errors.json").read_text())["cases"]
ERROR_TYPES: dict[str, type[errors.ConnectorError]] = {
    "AuthFailed": errors.AuthFailed,
    "TimestampExpired": TimestampExpired,
    "RateLimited": errors.RateLimited,
    "ExchangeRejected": errors.ExchangeRejected,
    "ExchangeUnavailable": errors.ExchangeUnavailable,
}


@pytest.mark.parametrize("case", CASES, ids=[c["body"]["code"] for c in CASES])
def test_recorded_error_bodies_map_to_typed_errors(case: dict[str, Any]) -> None:
    content = json.dumps(case["body"]).encode()
    with pytest.raises(errors.ConnectorError) as info:
        map_response("/p", case["status"], content)
    err = info.value
    assert type(err) is ERROR_TYPES[case["error"]]
    assert err.exchange_code == case["body"]["code"]
    assert case["body"]["msg"] in err.message


def test_success_returns_data() -> None:
    body = (FIXTURES / "query-current-orders.json").read_bytes()
    data = json.loads(bytes(map_response("/p", 200, body)))
    assert isinstance(data, list) and data[0]["trackingNo"] == "1"


@pytest.mark.parametrize(
    ("status", "content", "expected", "retryable"),
    [
        (
            503,
            b"<html>503 Service Temporarily Unavailable</html>",
            errors.ExchangeUnavailable,
            True,
        ),
        (502, b"", errors.ExchangeUnavailable, True),
        (200, b'{"code":"00000","data":[{"trackingNo"', MalformedResponse, True),
        (200, b"not json at all", MalformedResponse, True),
        (401, b"", errors.AuthFailed, False),
        (429, b"", errors.RateLimited, True),
        (400, b'{"code":"1001","msg":"The request is too frequent"}', errors.RateLimited, True),
    ],
)
def test_http_level_failures(
    status: int, content: bytes, expected: type[errors.ConnectorError], retryable: bool
) -> None:
    with pytest.raises(expected) as info:
        map_response("/p", status, content)
    assert info.value.retryable is retryable


def _client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> BitgetHttpClient:
    kw.setdefault("retry_backoff_s", 0.001)
    return BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler), **kw)


def _scripted(responses: list[httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return responses.pop(0) if len(responses) > 1 else responses[0]

    return handler


OK = httpx.Response(200, json={"code": "00000", "msg": "success", "data": {"serverTime": "5"}})


async def test_5xx_is_retried_then_succeeds() -> None:
    client = _client(_scripted([httpx.Response(503), httpx.Response(500), OK]), max_attempts=3)
    loop = asyncio.get_running_loop()
    try:
        assert json.loads(bytes(await client.get_public("/p", deadline=loop.time() + 5))) == {
            "serverTime": "5"
        }
    finally:
        await client.aclose()


async def test_5xx_gives_up_after_max_attempts_with_attempt_count() -> None:
    client = _client(_scripted([httpx.Response(503)]), max_attempts=3)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(errors.ExchangeUnavailable) as info:
            await client.get_public("/p", deadline=loop.time() + 5)
    finally:
        await client.aclose()
    assert info.value.attempts == 3


async def test_throttling_is_retried_until_the_deadline_then_ends_as_rate_limited() -> None:
    # Throttling does not use up max_attempts: the exchange asked us to slow down, so the
    # policy keeps backing off until the command's deadline, and never sleeps past it.
    throttled = httpx.Response(429, json={"code": "429", "msg": "Too Many Requests", "data": None})
    client = _client(_scripted([throttled]), max_attempts=2, retry_backoff_s=0.05)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    try:
        with pytest.raises(errors.RateLimited) as info:
            await client.get_public("/p", deadline=deadline)
    finally:
        await client.aclose()
    assert loop.time() <= deadline
    assert info.value.exchange_code == "429"
    assert info.value.attempts > 2


async def test_retry_after_is_honoured() -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "0.3"}, json={"code": "429"})
    client = _client(_scripted([throttled, OK]), retry_backoff_s=0.001)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert json.loads(bytes(await client.get_public("/p", deadline=started + 5))) == {
            "serverTime": "5"
        }
    finally:
        await client.aclose()
    assert loop.time() - started >= 0.3


async def test_no_backoff_past_the_deadline_raises_timeout() -> None:
    client = _client(_scripted([httpx.Response(503)]), max_attempts=10, retry_backoff_s=10.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(errors.ExchangeTimeout) as info:
            await client.get_public("/p", deadline=loop.time() + 1.0)
    finally:
        await client.aclose()
    assert loop.time() - started < 1.0  # gave up at once instead of sleeping past the deadline
    assert info.value.attempts == 1


async def test_a_past_deadline_sends_nothing() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return OK

    client = _client(handler)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(errors.ExchangeTimeout):
            await client.get_public("/p", deadline=loop.time() - 1)
    finally:
        await client.aclose()
    assert sent == []


async def test_transport_timeout_maps_to_exchange_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = _client(handler, max_attempts=2)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(errors.ExchangeTimeout) as info:
            await client.get_public("/p", deadline=loop.time() + 5)
    finally:
        await client.aclose()
    assert info.value.attempts == 2


async def test_connection_errors_map_to_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler, max_attempts=2)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(errors.ExchangeUnavailable):
            await client.get_public("/p", deadline=loop.time() + 5)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("code", "error", "says"),
    [
        # Bitget's error table / ccxt's exceptions table; no live body for these on this endpoint.
        ("40704", errors.SnapshotIncomplete, "cannot be proven complete"),
        ("40705", errors.ExchangeRejected, "exceed 90 days"),
        ("40707", errors.ExchangeRejected, "greater than end"),
        ("40700", errors.ExchangeRejected, "Cursor"),
        ("40506", errors.AuthFailed, "signature"),
        ("40507", errors.AuthFailed, "signature"),
        ("40036", errors.AuthFailed, "passphrase"),
        ("40038", errors.AuthFailed, "whitelist"),
        ("31057", errors.ExchangeRejected, "not a copy-trading follower"),
        ("40732", errors.ExchangeRejected, "not a copy-trading follower"),
        ("40010", TimedOutOrBadSignature, "signature"),
    ],
)
def test_documented_codes_map_to_typed_errors(
    code: str, error: type[errors.ConnectorError], says: str
) -> None:
    messages = {
        "40704": "Can only check the data of the last three months",
        "40705": "The start and end time cannot exceed 90 days",
        "40707": "Start time is greater than end time",
        "40700": "Cursor parameters are incorrect",
        "40506": "Platform signature error",
        "40507": "Api signature error",
        "40036": "passphrase is error",
        "40038": "The current ip is not in the apikey ip whitelist",
        "31057": "user has not follow order",
        "40732": "Not currently a trader",
        "40010": "Request timed out",
    }
    content = json.dumps({"code": code, "msg": messages[code], "data": None}).encode()
    with pytest.raises(errors.ConnectorError) as info:
        map_response("/p", 400, content)
    assert type(info.value) is error
    assert info.value.exchange_code == code and says in info.value.message
    assert info.value.retryable is False
