"""Secrets never reach a log line, an exception message or a repr, even with DEBUG logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from connector.errors import ConnectorError
from connector.exchanges.ascendex.auth import SignKey, sign

from .test_ascendex_adapter import (
    AdapterFactory,
    Sim,
    account,
    adapter_factory,
    deadline,
    query,
    running_sim,
)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with running_sim() as running:
        yield running


@pytest.fixture
async def make_adapter(sim: Sim) -> AsyncIterator[AdapterFactory]:
    async with adapter_factory(sim) as factory:
        yield factory


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


async def test_no_secret_in_logs_errors_or_reprs(
    sim: Sim, make_adapter: AdapterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    demo = account("ascendex-demo")
    badkey = account("ascendex-badkey")
    secrets = [
        demo.api_key.reveal(),
        demo.api_secret.reveal(),
        badkey.api_key.reveal(),
        badkey.api_secret.reveal(),
    ]
    # The signature derived from the secret is as sensitive as a password for its 30 s window.
    adapter = make_adapter(max_attempts=2)
    failures: list[BaseException] = []

    async def attempt(acct_alias: str, **options: str) -> None:
        acct = account(acct_alias, **options)
        try:
            await adapter.fetch_open_orders(acct, query(acct_alias), deadline=deadline(3))
        except ConnectorError as exc:
            failures.append(exc)

    await attempt("ascendex-badkey")  # REST signature mismatch
    await attempt("ascendex-demo", ws_sign_key="raw")  # WS auth refused
    await attempt("ascendex-demo", ws_sign_key="hex")  # bad option value
    sim.faults(drop_next_requests=5)  # every request dropped: retries, then failure
    await attempt("ascendex-demo")
    sim.faults(drop_next_requests=0, delay_ms=3000)
    try:
        await adapter.fetch_open_orders(demo, query("ascendex-demo"), deadline=deadline(0.3))
    except ConnectorError as exc:
        failures.append(exc)
    sim.faults(delay_ms=0)
    ok = await adapter.fetch_open_orders(demo, query("ascendex-demo"), deadline=deadline())
    assert len(ok.orders) == 5
    assert len(failures) == 5

    for failure in failures:
        for link in _chain(failure):
            _assert_clean(str(link), secrets)
            _assert_clean(repr(link), secrets)
    _assert_clean(caplog.text, secrets)
    for record in caplog.records:
        _assert_clean(record.getMessage(), secrets)
        _assert_clean(repr(record.__dict__), secrets)
    _assert_clean(repr(adapter), secrets)
    _assert_clean(repr(demo), secrets)
    _assert_clean(repr(adapter._clients), secrets)
    # The auth frames were really exchanged while logging at DEBUG: the check is not vacuous.
    assert sim.state.stats["auth_ok"] >= 1 and sim.state.stats["ws_auth_failed"] >= 1
    assert any("ascendex" in r.name for r in caplog.records)


def test_signature_error_does_not_leak_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "%%%-not-base64-but-very-secret-%%%"
    with pytest.raises(ConnectorError) as info:
        sign(secret, 1, "v2/stream", SignKey.BASE64)
    for link in _chain(info.value):
        assert secret not in str(link) and secret not in repr(link)
    assert secret not in caplog.text


async def test_wire_logger_never_dumps_frames(
    sim: Sim, make_adapter: AdapterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await make_adapter().fetch_open_orders(
        account("ascendex-demo"), query("ascendex-demo"), deadline=deadline()
    )
    frames = [r for r in caplog.records if "TEXT" in r.getMessage() and "websockets" in r.name]
    wire = [r for r in caplog.records if r.name.endswith(".wire") and r.levelno <= logging.DEBUG]
    assert frames == [] and wire == []
