"""The local stack's bounded wait and env-line parsing (connector/devstack.py)."""

from __future__ import annotations

import pytest

from connector.devstack import free_port, parse_env_line, wait_until


async def test_wait_until_returns_once_a_plain_or_async_predicate_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await wait_until(third_time, timeout=5, what="three calls", interval=0)
    assert len(calls) == 3

    async def at_once() -> bool:
        return True

    await wait_until(at_once, timeout=5, what="at once")


async def test_wait_until_fails_after_its_timeout_naming_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0\.2 s waiting for the moon"):
        await wait_until(lambda: False, timeout=0.2, what="the moon", interval=0.01)


def test_parse_env_line() -> None:
    line = "CONNECTOR_A=http://x:1 CONNECTOR_B='a b'"
    assert parse_env_line(line) == {"CONNECTOR_A": "http://x:1", "CONNECTOR_B": "a b"}
    with pytest.raises(ValueError, match="not an env assignment"):
        parse_env_line("Traceback (most recent call last):")


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
