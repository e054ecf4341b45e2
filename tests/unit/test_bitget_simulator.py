"""The Bitget simulator checks what Bitget checks and answers the way Bitget answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from connector.exchanges.bitget import simulator as sim
from connector.exchanges.bitget.auth import sign

ORDERS = "/api/v2/copy/mix-follower/query-current-orders"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def signed(
    alias: str,
    query: str,
    *,
    timestamp: int | None = None,
    signed_query: str | None = None,
    override: dict[str, str] | None = None,
) -> dict[str, str]:
    creds = sim.demo_accounts()[alias]
    ts = str(timestamp if timestamp is not None else time.time_ns() // 1_000_000)
    headers = {
        "ACCESS-KEY": creds["api_key"],
        "ACCESS-SIGN": sign(
            creds["api_secret"],
            ts,
            "GET",
            ORDERS,
            signed_query if signed_query is not None else query,
        ),
        "ACCESS-PASSPHRASE": creds["passphrase"],
        "ACCESS-TIMESTAMP": ts,
        "locale": "en-US",
    }
    headers.update(override or {})
    return headers


async def get(base: str, query: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.get(httpx.URL(f"{base}{ORDERS}?{query}"), headers=headers)


async def stats(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        result: dict[str, Any] = (await c.get(f"{base}/__sandbox/stats")).json()
        return result


def test_demo_accounts() -> None:
    accounts = sim.demo_accounts()
    assert set(accounts) >= {
        "bitget-demo",
        "bitget-empty",
        "bitget-1",
        "bitget-50",
        "bitget-51",
        "bitget-120",
        "bitget-badpass",
    }
    for entry in accounts.values():
        assert entry["exchange"] == "bitget"
        assert entry["api_key"].startswith("bg_") and entry["api_secret"] and entry["passphrase"]
    assert (
        accounts["bitget-badpass"]["passphrase"]
        != sim.credentials_for("bitget-badpass")["passphrase"]
    )
    demo = sim.DEMO_ROWS["bitget-demo"]
    assert len(demo) == 3
    assert len({r["symbol"] for r in demo}) == 2
    assert len({r["traderId"] for r in demo}) == 1
    assert sum(1 for r in demo if float(r["closeSize"]) > 0) == 1


async def test_valid_request_pages_as_documented(base_url: str) -> None:
    q = "productType=USDT-FUTURES"
    r = await get(base_url, q, signed("bitget-50", q))
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == "00000" and body["msg"] == "success"
    assert len(body["data"]) == 20  # default pageSize
    q = "productType=usdt-futures&pageSize=20&pageNo=3"
    assert len((await get(base_url, q, signed("bitget-50", q))).json()["data"]) == 10
    q = "productType=USDT-FUTURES&pageSize=51&pageNo=1"
    r = await get(base_url, q, signed("bitget-50", q))
    assert (r.status_code, r.json()["code"]) == (400, "40017")
    q = "pageSize=5"
    r = await get(base_url, q, signed("bitget-50", q))
    assert r.json()["code"] == "40019"


@pytest.mark.parametrize(
    ("alias", "kwargs", "code", "msg"),
    [
        ("bitget-demo", {"ACCESS-SIGN": "AAAA"}, "40009", "sign signature error"),
        ("bitget-badpass", {}, "40012", "apikey/password is incorrect"),
        (
            "bitget-demo",
            {"ACCESS-KEY": "bg_ffffffffffffffffffffffffffffffff"},
            "40037",
            "Apikey does not exist",
        ),
        ("bitget-demo", {"ACCESS-KEY": "not-a-key"}, "40006", "Invalid ACCESS_KEY"),
        ("bitget-demo", {"ACCESS-KEY": ""}, "40001", "ACCESS_KEY cannot be empty"),
        ("bitget-demo", {"ACCESS-TIMESTAMP": "yesterday"}, "40005", "Invalid ACCESS_TIMESTAMP"),
    ],
)
async def test_auth_failures_answer_bitgets_body(
    base_url: str, alias: str, kwargs: dict[str, str], code: str, msg: str
) -> None:
    q = "productType=USDT-FUTURES"
    r = await get(base_url, q, signed(alias, q, override=kwargs))
    assert r.status_code == 400
    body = r.json()
    assert (body["code"], body["msg"], body["data"]) == (code, msg, None)


async def test_expired_timestamp(base_url: str) -> None:
    q = "productType=USDT-FUTURES"
    old = time.time_ns() // 1_000_000 - 31_000
    r = await get(base_url, q, signed("bitget-demo", q, timestamp=old))
    assert r.json()["code"] == "40008"
    assert r.json()["msg"] == "Request timestamp expired"
    r = await get(base_url, q, signed("bitget-demo", q, timestamp=old + 2_000))
    assert r.json()["code"] == "00000"


async def test_signature_covers_the_raw_query_string(base_url: str) -> None:
    sent = "productType=USDT-FUTURES&traderId=a%20b"
    ok = await get(base_url, sent, signed("bitget-demo", sent))
    assert ok.json()["code"] == "00000"
    # Same parameters, signed with a different (decoded) spelling: rejected like on Bitget.
    bad = await get(
        base_url,
        sent,
        signed("bitget-demo", sent, signed_query="productType=USDT-FUTURES&traderId=a b"),
    )
    assert bad.json()["code"] == "40009"


async def test_rate_limit_per_user_is_enforced_and_counted(base_url: str) -> None:
    q = "productType=USDT-FUTURES"
    responses = await asyncio.gather(
        *(get(base_url, q, signed("bitget-demo", q)) for _ in range(15))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10 and statuses.count(429) == 5
    throttled = next(r for r in responses if r.status_code == 429).json()
    assert (throttled["code"], throttled["msg"]) == ("429", "Too Many Requests")
    s = await stats(base_url)
    assert s["rate_limit_violations"] == 5
    assert s["by_account"]["bitget-demo"]["rate_limit_violations"] == 5
    # Another user has its own window.
    other = await get(base_url, q, signed("bitget-1", q))
    assert other.status_code == 200


async def test_faults_and_reset(base_url: str) -> None:
    q = "productType=USDT-FUTURES&pageSize=50&pageNo=1"
    async with httpx.AsyncClient() as c:
        await c.post(f"{base_url}/__sandbox/faults", json={"fail_next": 1, "status": 502})
        await c.post(f"{base_url}/__sandbox/faults", json={"malformed_next": 1})
    r = await get(base_url, q, signed("bitget-demo", q))
    assert r.status_code == 502
    r = await get(base_url, q, signed("bitget-demo", q))
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    async with httpx.AsyncClient() as c:
        await c.post(f"{base_url}/__sandbox/faults", json={"fail_on_page": 2, "times": 1})
    r2 = "productType=USDT-FUTURES&pageSize=50&pageNo=2"
    assert (await get(base_url, q, signed("bitget-120", q))).status_code == 200
    assert (await get(base_url, r2, signed("bitget-120", r2))).status_code == 503
    assert (await get(base_url, r2, signed("bitget-120", r2))).status_code == 200
    assert (await stats(base_url))["requests"] == 5
    async with httpx.AsyncClient() as c:
        await c.post(f"{base_url}/__sandbox/faults", json={"clock_skew_ms": 45_000})
        server = int((await c.get(f"{base_url}/api/v2/public/time")).json()["data"]["serverTime"])
        assert abs(server - time.time_ns() // 1_000_000 - 45_000) < 2_000
        await c.post(f"{base_url}/__sandbox/reset")
    assert (await stats(base_url)) == {"requests": 0, "rate_limit_violations": 0, "by_account": {}}
    async with httpx.AsyncClient() as c:
        server = int((await c.get(f"{base_url}/api/v2/public/time")).json()["data"]["serverTime"])
    assert abs(server - time.time_ns() // 1_000_000) < 2_000


async def test_contracts_endpoint(base_url: str) -> None:
    async with httpx.AsyncClient() as c:
        coin = (
            await c.get(f"{base_url}/api/v2/mix/market/contracts?productType=COIN-FUTURES")
        ).json()
        missing = await c.get(f"{base_url}/api/v2/mix/market/contracts")
    btcusd = next(r for r in coin["data"] if r["symbol"] == "BTCUSD")
    assert (btcusd["baseCoin"], btcusd["quoteCoin"]) == ("BTC", "USD")
    assert missing.json()["code"] == "40019"


def test_orders_file_bitget_section(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(
        yaml.safe_dump({"bitget": {"bitget-empty": [{"trackingNo": "5", "openSize": 1}]}})
    )
    state = sim.create_app(orders_file=str(path))["state"]
    key = sim.credentials_for("bitget-empty")["api_key"]
    assert state.accounts[key].rows == [{"trackingNo": "5", "openSize": "1"}]
