"""The Bitget simulator checks what Bitget checks and answers the way Bitget answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

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
            signed_query if signed_query is not None else unquote(query),
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


async def configure(base: str, **spec: Any) -> None:
    async with httpx.AsyncClient() as c:
        (await c.post(f"{base}/__sandbox/config", json=spec)).raise_for_status()


async def orders(base: str, alias: str, query: str) -> dict[str, Any]:
    result: dict[str, Any] = (await get(base, query, signed(alias, query))).json()
    return result


async def test_reference_version_pages_by_page_number(base_url: str) -> None:
    await configure(base_url, version="reference", rate_limit=100)
    body = await orders(base_url, "bitget-50", "productType=USDT-FUTURES")
    assert body["code"] == "00000" and body["msg"] == "success"
    assert len(body["data"]) == 20  # default pageSize
    page3 = await orders(base_url, "bitget-50", "productType=usdt-futures&pageSize=20&pageNo=3")
    assert len(page3["data"]) == 10
    # Over the maximum: 20 rows, no error. The current version's parameters are ignored.
    over = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&pageSize=51&pageNo=1")
    assert len(over["data"]) == 20
    q = "productType=USDT-FUTURES&limit=50&idLessThan=1&startTime=1&endTime=2&pageNo=2"
    assert len((await orders(base_url, "bitget-137", q))["data"]) == 20  # page 2 of 20 rows
    assert (await orders(base_url, "bitget-50", "pageSize=5"))["code"] == "40019"


async def test_current_version_cursor_and_both_shapes(base_url: str) -> None:
    await configure(base_url, rate_limit=100)  # many requests, no rate-limit test here
    first = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&limit=50")
    page = first["data"]
    assert len(page["trackingList"]) == 50
    numbers = [int(r["trackingNo"]) for r in page["trackingList"]]
    assert numbers == sorted(numbers, reverse=True)  # newest first
    assert page["endId"] == str(numbers[-1])
    q = f"productType=USDT-FUTURES&limit=50&idLessThan={page['endId']}&pageNo=7"
    second = (await orders(base_url, "bitget-137", q))["data"]  # pageNo ignored
    assert int(second["trackingList"][0]["trackingNo"]) == numbers[-1] - 1
    q = "productType=USDT-FUTURES&limit=50&idLessThan=" + second["endId"]
    last = (await orders(base_url, "bitget-137", q))["data"]
    assert (len(last["trackingList"]), last["endId"]) == (37, "")
    # Old paging parameters ignored, over-maximum limit: the default 20 rows.
    old = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&pageSize=50&pageNo=3")
    assert len(old["data"]["trackingList"]) == 20
    over = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&limit=101")
    assert len(over["data"]["trackingList"]) == 20
    await configure(base_url, version="current-list")
    listed = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&limit=100")
    assert isinstance(listed["data"], list) and len(listed["data"]) == 100
    bad = await orders(base_url, "bitget-137", "productType=USDT-FUTURES&idLessThan=abc")
    assert (bad["code"], bad["msg"]) == ("40700", "Cursor parameters are incorrect")


async def test_current_version_time_window(base_url: str) -> None:
    await configure(base_url, rate_limit=100)
    day = 86_400_000
    now = time.time_ns() // 1_000_000
    # Default window: the last three months; the 30 older rows are not listed.
    q = "productType=USDT-FUTURES&limit=100"
    assert len((await orders(base_url, "bitget-250-old", q))["data"]["trackingList"]) == 100
    q = f"productType=USDT-FUTURES&limit=100&startTime={now - 89 * day}&endTime={now}"
    ids: set[str] = set()
    cursor = ""
    while True:
        page = (await orders(base_url, "bitget-250-old", q + cursor))["data"]
        ids |= {r["trackingNo"] for r in page["trackingList"]}
        if not page["endId"]:
            break
        cursor = "&idLessThan=" + page["endId"]
    assert len(ids) == 220
    q = f"productType=USDT-FUTURES&startTime={now - 178 * day}&endTime={now - 89 * day}"
    assert len((await orders(base_url, "bitget-250-old", q))["data"]["trackingList"]) == 20
    errors = {
        f"startTime={now - 91 * day}&endTime={now}": (
            "40705",
            "The start and end time cannot exceed 90 days",
        ),
        f"startTime={now}&endTime={now - 1}": ("40707", "Start time is greater than end time"),
        f"startTime={now - 500 * day}&endTime={now - 420 * day}": (
            "40704",
            "Can only check the data of the last three months",
        ),
    }
    for window, (code, msg) in errors.items():
        body = await orders(base_url, "bitget-250-old", f"productType=USDT-FUTURES&{window}")
        assert (body["code"], body["msg"]) == (code, msg)
    await configure(base_url, accounts={"bitget-250-old": {"history_days": 100}})
    q = f"productType=USDT-FUTURES&startTime={now - 178 * day}&endTime={now - 89 * day}"
    assert (await orders(base_url, "bitget-250-old", q))["code"] == "40704"


async def test_negative_fees_and_not_a_follower(base_url: str) -> None:
    page = (await orders(base_url, "bitget-demo", "productType=USDT-FUTURES"))["data"]
    assert all(r["openFee"].startswith("-") for r in page["trackingList"])
    body = await orders(base_url, "bitget-notfollower", "productType=USDT-FUTURES")
    assert body["code"] == "40017" and "Not currently a trader" in body["msg"]


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


async def test_signature_covers_the_decoded_query_string(base_url: str) -> None:
    sent = "productType=USDT-FUTURES&symbol=%E9%BE%99%E8%99%BEUSDT"
    ok = await get(
        base_url,
        sent,
        signed("bitget-unicode", sent, signed_query="productType=USDT-FUTURES&symbol=龙虾USDT"),
    )
    assert ok.json()["code"] == "00000"
    assert {r["symbol"] for r in ok.json()["data"]["trackingList"]} == {"龙虾USDT"}
    # Same parameters, signed over the encoded text: rejected like on Bitget (ccxt #28888).
    bad = await get(base_url, sent, signed("bitget-unicode", sent, signed_query=sent))
    assert bad.json()["code"] == "40009"


async def test_rate_limit_per_user_is_enforced_and_counted(base_url: str) -> None:
    q = "productType=USDT-FUTURES"
    responses = await asyncio.gather(
        *(get(base_url, q, signed("bitget-demo", q)) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 5 and statuses.count(429) == 5  # 5/s, the current doc
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
