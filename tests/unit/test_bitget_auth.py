"""Signing: known answers from Bitget's documented algorithm, and wire == signed bytes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from urllib.parse import unquote

import httpx
import pytest

from connector.account import Account
from connector.exchanges.bitget.auth import build_query, prehash, sign, signed_headers
from connector.exchanges.bitget.http import BitgetHttpClient
from connector.resilience import SlidingWindowLimiter
from connector.secrets import Secret

KAT_SECRET = "bitget-kat-secret"
ORDERS_PATH = "/api/v2/copy/mix-follower/query-current-orders"


def test_prehash_matches_the_documented_examples() -> None:
    # Bitget docs, "Generate Signature": GET with a query string, POST with a body.
    assert (
        prehash("16273667805456", "get", "/api/mix/v2/market/depth", "limit=20&symbol=BTCUSDT")
        == "16273667805456GET/api/mix/v2/market/depth?limit=20&symbol=BTCUSDT"
    )
    body = '{"productType":"usdt-futures","symbol":"BTCUSDT","size":"8"}'
    assert (
        prehash("16273667805456", "POST", "/api/v2/mix/order/place-order", "", body)
        == "16273667805456POST/api/v2/mix/order/place-order" + body
    )
    # No "?" when the query string is empty.
    assert prehash("1", "GET", "/api/v2/public/time") == "1GET/api/v2/public/time"


def test_signature_known_answers() -> None:
    # Expected values computed independently with:
    #   printf '%s' "$PREHASH" | openssl dgst -sha256 -hmac bitget-kat-secret -binary | base64
    assert (
        sign(
            KAT_SECRET,
            "1659076670000",
            "GET",
            ORDERS_PATH,
            "productType=USDT-FUTURES&symbol=BTCUSDT&pageSize=20&pageNo=1",
        )
        == "mINC5S22eR5+MHgfDVJYoj8sPbn19WOgGVsjilA0Cv4="
    )
    body = (
        '{"productType":"usdt-futures","symbol":"BTCUSDT","size":"8","marginMode":"crossed",'
        '"side":"buy","orderType":"limit","clientOid":"channel#123456"}'
    )
    assert (
        sign(
            Secret(KAT_SECRET), "16273667805456", "POST", "/api/v2/mix/order/place-order", "", body
        )
        == "evkrtU6AidUJuwSLFcHioSA5tmHBsJK9XjXTvGM9jh4="
    )
    assert (
        sign(KAT_SECRET, "1688008631614", "GET", "/api/v2/public/time")
        == "/Lg9UZGQ8i9fCjLrl382A9NaVKaieEpaV3AtcRChdGA="
    )


NON_ASCII_QUERY = "productType=USDT-FUTURES&symbol=龙虾USDT&limit=50"


def test_signature_known_answer_non_ascii_symbol() -> None:
    # printf '%s' "1659076670000GET$ORDERS_PATH?$NON_ASCII_QUERY" \
    #   | openssl dgst -sha256 -hmac bitget-kat-secret -binary | base64
    assert (
        sign(KAT_SECRET, "1659076670000", "GET", ORDERS_PATH, NON_ASCII_QUERY)
        == "e5Y11kYx9xY4i7hSIZI7NWGbpoUk7Z2xReaIoAofp2g="
    )


async def test_non_ascii_symbol_on_the_wire_encoded_signature_over_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        return httpx.Response(200, json={"code": "00000", "msg": "success", "data": []})

    client = BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    monkeypatch.setattr(client.clock, "now_ms", lambda: 1659076670000)
    account = Account(
        alias="kat",
        exchange="bitget",
        api_key=Secret("bg_0123456789abcdef"),
        api_secret=Secret(KAT_SECRET),
        passphrase=Secret("pass-phrase"),
    )
    params = [("productType", "USDT-FUTURES"), ("symbol", "龙虾USDT"), ("limit", "50")]
    loop = asyncio.get_running_loop()
    try:
        await client.get_signed(
            ORDERS_PATH,
            params,
            account=account,
            limiter=SlidingWindowLimiter(10),
            deadline=loop.time() + 5,
        )
    finally:
        await client.aclose()
    request = seen[-1]
    assert request.url.raw_path.decode("ascii") == (
        ORDERS_PATH + "?productType=USDT-FUTURES&symbol=%E9%BE%99%E8%99%BEUSDT&limit=50"
    )
    assert request.headers["ACCESS-TIMESTAMP"] == "1659076670000"
    # The known answer above; signing the encoded text would give
    # "qLiNOgbbEJh4Fy1vuC/53qJ/BmGeBsRU5t8paH1i3qc=", which Bitget answers with 40009.
    assert request.headers["ACCESS-SIGN"] == "e5Y11kYx9xY4i7hSIZI7NWGbpoUk7Z2xReaIoAofp2g="


def test_build_query_keeps_order_and_encodes_rfc3986() -> None:
    q = build_query([("productType", "USDT-FUTURES"), ("traderId", "a b/c+d"), ("pageNo", "1")])
    assert q == "productType=USDT-FUTURES&traderId=a%20b%2Fc%2Bd&pageNo=1"
    assert build_query([]) == ""


def test_signed_headers() -> None:
    headers = signed_headers(
        api_key=Secret("bg_key"),
        api_secret=Secret(KAT_SECRET),
        passphrase=Secret("pass-phrase"),
        timestamp="1659076670000",
        method="GET",
        request_path=ORDERS_PATH,
        query="productType=USDT-FUTURES&symbol=BTCUSDT&pageSize=20&pageNo=1",
    )
    assert headers["ACCESS-KEY"] == "bg_key"
    assert headers["ACCESS-PASSPHRASE"] == "pass-phrase"
    assert headers["ACCESS-TIMESTAMP"] == "1659076670000"
    assert headers["ACCESS-SIGN"] == "mINC5S22eR5+MHgfDVJYoj8sPbn19WOgGVsjilA0Cv4="
    assert headers["locale"] == "en-US"


async def test_the_query_is_sent_encoded_and_signed_decoded() -> None:
    """Recompute the signature from the raw bytes httpx put on the wire, percent-decoded: Bitget
    verifies the decoded query (ccxt PR #28890)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v2/public/time":
            return httpx.Response(200, json={"code": "00000", "data": {"serverTime": "1"}})
        return httpx.Response(200, json={"code": "00000", "msg": "success", "data": []})

    client = BitgetHttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    account = Account(
        alias="kat",
        exchange="bitget",
        api_key=Secret("bg_0123456789abcdef"),
        api_secret=Secret(KAT_SECRET),
        passphrase=Secret("pass-phrase"),
    )
    params = [
        ("productType", "USDT-FUTURES"),
        ("symbol", "BTCUSDT"),
        ("traderId", "odd id/with+chars&="),
        ("pageSize", "50"),
        ("pageNo", "1"),
    ]
    loop = asyncio.get_running_loop()
    try:
        await client.get_signed(
            ORDERS_PATH,
            params,
            account=account,
            limiter=SlidingWindowLimiter(10),
            deadline=loop.time() + 5,
        )
    finally:
        await client.aclose()
    request = seen[-1]
    raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
    assert raw_path == ORDERS_PATH
    assert raw_query == (
        "productType=USDT-FUTURES&symbol=BTCUSDT&traderId=odd%20id%2Fwith%2Bchars%26%3D"
        "&pageSize=50&pageNo=1"
    )
    timestamp = request.headers["ACCESS-TIMESTAMP"]
    message = f"{timestamp}GET{raw_path}?{unquote(raw_query)}".encode()
    expected = base64.b64encode(hmac.new(KAT_SECRET.encode(), message, hashlib.sha256).digest())
    assert request.headers["ACCESS-SIGN"] == expected.decode()
    assert request.headers["ACCESS-KEY"] == "bg_0123456789abcdef"
    assert request.headers["ACCESS-PASSPHRASE"] == "pass-phrase"
    assert request.headers["locale"] == "en-US"
