"""Credentials never show up in logs, exception messages or reprs, whatever goes wrong."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from connector.account import Account
from connector.errors import ConnectorError
from connector.exchanges.bitget import create_adapter
from connector.exchanges.bitget import simulator as sim
from connector.exchanges.bitget.config import BitgetSettings
from connector.model import OrderQuery
from connector.secrets import Secret
from connector.settings import Settings

API_KEY = "bg_5ecre7a11ce0000000000000000000"
API_SECRET = "super-secret-value-that-must-never-leak-0123456789"
PASSPHRASE = "Passphrase-Never-Leak-42"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def leaks(text: str) -> list[str]:
    return [s for s in (API_KEY, API_SECRET, PASSPHRASE) if s in text]


async def test_secrets_never_leak(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # includes httpx/httpcore debug logging
    demo = sim.demo_accounts()["bitget-demo"]
    accounts = [
        # unknown key, wrong secret, wrong passphrase: every auth failure path
        Account("a", "bitget", Secret(API_KEY), Secret(API_SECRET), Secret(PASSPHRASE)),
        Account(
            "b",
            "bitget",
            Secret(demo["api_key"]),
            Secret(API_SECRET),
            Secret(demo["passphrase"]),
        ),
        Account(
            "c",
            "bitget",
            Secret(demo["api_key"]),
            Secret(demo["api_secret"]),
            Secret(PASSPHRASE),
        ),
    ]
    adapter = create_adapter(
        Settings(retry_backoff_s=0.01, max_attempts=2), BitgetSettings(rest_url=base_url)
    )
    texts: list[str] = [repr(adapter), repr(adapter.http), *(repr(a) for a in accounts)]
    errors: list[ConnectorError] = []
    try:
        for account in accounts:
            q = OrderQuery(request_id="r", exchange="bitget", account=account.alias)
            deadline = asyncio.get_running_loop().time() + 10
            with pytest.raises(ConnectorError) as info:
                await adapter.fetch_open_orders(account, q, deadline=deadline)
            errors.append(info.value)
        # Exchange-side failures with valid-looking credentials, too.
        async with httpx.AsyncClient() as c:
            await c.post(f"{base_url}/__sandbox/faults", json={"fail_next": 5, "status": 503})
        q = OrderQuery(request_id="r", exchange="bitget", account="a")
        with pytest.raises(ConnectorError) as info:
            await adapter.fetch_open_orders(
                accounts[0], q, deadline=asyncio.get_running_loop().time() + 10
            )
        errors.append(info.value)
    finally:
        await adapter.aclose()

    assert [e.exchange_code for e in errors[:3]] == ["40037", "40009", "40012"]
    for err in errors:
        texts += [str(err), repr(err), err.message, "".join(traceback.format_exception(err))]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
    assert caplog.records, "expected the client to log something at DEBUG"
    found = [(t[:120], leaks(t)) for t in texts if leaks(t)]
    assert found == []


def test_the_check_would_catch_a_leak() -> None:
    assert leaks(f"headers={{'ACCESS-PASSPHRASE': '{PASSPHRASE}'}}") == [PASSPHRASE]
