"""One sick venue never takes the rest down (issue 20), through the pipeline's seams.

A venue that refuses connections trips its circuit and is then answered at once, without a
call; a healthy venue beside it is untouched; a venue disabled by configuration is answered
VENUE_DISABLED, and its settings may be broken without stopping start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector import codec
from connector.account import Account, Accounts
from connector.errors import (
    ConfigurationError,
    ErrorCode,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidCommand,
)
from connector.exchanges import registry
from connector.model import FetchResult, OrderQuery
from connector.pipeline import Outcome, Pipeline
from connector.resilience.breaker import BreakerPolicy, CircuitBoard, iso_ms
from connector.secrets import Secret
from connector.settings import Settings
from connector.settings_env import load_settings
from connector.status import status_document

T0 = 1_782_900_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class ScopedAdapter:
    """A venue whose accounts live on hosts: ``hosts[alias]`` names the account's host (its
    circuit scope), ``down`` the hosts that refuse connections."""

    def __init__(self, exchange: str, hosts: dict[str, str], down: set[str] | None = None):
        self.exchange = exchange
        self.hosts = hosts
        self.down = down if down is not None else set()
        self.calls: list[str] = []

    def circuit_scope(self, account: Account) -> str:
        return self.hosts[account.alias]

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.calls.append(account.alias)
        host = self.hosts[account.alias]
        if host in self.down:
            raise ExchangeUnavailable(f"{host}: connection failed (ConnectError)")
        return FetchResult([], calls=1)

    async def aclose(self) -> None:
        pass


class PlainAdapter:
    """A venue without scopes (one circuit for the whole venue) that can be made to fail."""

    exchange = "bitget"

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return FetchResult([], calls=1)

    async def aclose(self) -> None:
        pass


ACCOUNTS = Accounts(
    [
        Account("desk-a", "ascendex", Secret("key-aaaaaaaa"), Secret("secret-aaaaaaaa")),
        Account("desk-b", "ascendex", Secret("key-bbbbbbbb"), Secret("secret-bbbbbbbb")),
        Account(
            "copy", "bitget", Secret("key-cccccccc"), Secret("secret-cccccccc"), Secret("pass-cc")
        ),
    ]
)


def cmd(exchange: str, account: str, request_id: str = "r1") -> bytes:
    return json.dumps({"request_id": request_id, "exchange": exchange, "account": account}).encode()


def error_of(out: Outcome) -> dict[str, Any]:
    assert not out.ok and out.error is not None and out.result is not None
    assert out.result.value["error_code"] == out.error.value["code"]
    for rec in out.records():
        codec.encode_single_object(rec.schema, rec.value)  # valid against the .avsc
    return out.error.value


def setup(
    clock: Clock, *, disabled: set[str] | None = None
) -> tuple[Pipeline, ScopedAdapter, PlainAdapter]:
    scoped = ScopedAdapter("ascendex", {"desk-a": "group-1", "desk-b": "group-2"})
    plain = PlainAdapter()
    board = CircuitBoard(
        {
            "ascendex": BreakerPolicy(failure_threshold=3, cooldown_s=30),
            "bitget": BreakerPolicy(failure_threshold=2, cooldown_s=30),
        },
        clock=clock,
    )
    pipeline = Pipeline(
        Settings(),
        ACCOUNTS,
        {"ascendex": scoped, "bitget": plain},
        codec.Serializer(),
        circuits=board,
        disabled=disabled if disabled is not None else set(),
    )
    return pipeline, scoped, plain


async def test_a_refusing_host_is_answered_at_once_after_n_failures_and_the_rest_is_unaffected() -> (
    None
):
    clock = Clock()
    pipeline, scoped, _ = setup(clock)
    scoped.down.add("group-1")
    for i in range(3):
        err = error_of(await pipeline.process(cmd("ascendex", "desk-a", f"r{i}")))
        assert err["code"] == "EXCHANGE_UNAVAILABLE"
    assert scoped.calls == ["desk-a"] * 3
    assert pipeline.gate.is_open("ascendex") and pipeline.gate.is_open("ascendex", "desk-a")

    err = error_of(await pipeline.process(cmd("ascendex", "desk-a", "r-fast")))
    assert scoped.calls == ["desk-a"] * 3  # answered without calling the venue
    assert err["code"] == ErrorCode.VENUE_UNAVAILABLE == "VENUE_UNAVAILABLE"
    assert err["retryable"] is True
    assert f"unavailable since {iso_ms(T0)}" in err["message"]
    assert f"next probe at {iso_ms(T0 + 30)}" in err["message"]

    # The same venue's other host, and the other venue, are served as before.
    assert (await pipeline.process(cmd("ascendex", "desk-b"))).ok
    assert (await pipeline.process(cmd("bitget", "copy"))).ok
    assert not pipeline.gate.is_open("ascendex", "desk-b") and not pipeline.gate.is_open("bitget")
    assert pipeline.gate.should_schedule("ascendex", "desk-b")
    assert not pipeline.gate.should_schedule("ascendex", "desk-a")

    # After the cool-down one command is the probe; the host is back, so the circuit closes.
    scoped.down.clear()
    clock.now += 30
    assert pipeline.gate.should_schedule("ascendex", "desk-a")
    assert (await pipeline.process(cmd("ascendex", "desk-a", "r-probe"))).ok
    assert not pipeline.gate.is_open("ascendex")
    assert scoped.calls.count("desk-a") == 4


class LearningAdapter(ScopedAdapter):
    """Like AscendEX: an account's host (its group) is learnt from a shared host on the first
    fetch; until then the account's scope is the shared host."""

    def __init__(self, groups: dict[str, str], down: set[str]) -> None:
        super().__init__("ascendex", {}, down)
        self.groups = groups

    def circuit_scope(self, account: Account) -> str:
        return self.hosts.get(account.alias, "rest.example")

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        self.hosts[account.alias] = self.groups[account.alias]
        return await super().fetch_open_orders(account, query, deadline=deadline)


async def test_a_failure_is_charged_to_the_scope_learnt_during_the_fetch() -> None:
    adapter = LearningAdapter({"desk-a": "group-1", "desk-b": "group-2"}, down={"group-1"})
    board = CircuitBoard({"ascendex": BreakerPolicy(failure_threshold=2)}, clock=Clock())
    pipeline = Pipeline(
        Settings(), ACCOUNTS, {"ascendex": adapter}, codec.Serializer(), circuits=board, disabled=()
    )
    for i in range(2):
        await pipeline.process(cmd("ascendex", "desk-a", f"r{i}"))
    assert board.is_open("ascendex", "group-1")
    assert not board.is_open("ascendex", "rest.example")  # the shared host answered
    assert (await pipeline.process(cmd("ascendex", "desk-b"))).ok
    err = error_of(await pipeline.process(cmd("ascendex", "desk-a", "fast")))
    assert err["code"] == "VENUE_UNAVAILABLE" and "ascendex (group-1)" in err["message"]
    assert adapter.calls == ["desk-a", "desk-a", "desk-b"]


async def test_a_failed_probe_keeps_the_circuit_open_for_longer() -> None:
    clock = Clock()
    pipeline, _, plain = setup(clock)
    plain.error = ExchangeUnavailable("Bitget /api: HTTP 503", exchange_code="503")
    for i in range(2):
        await pipeline.process(cmd("bitget", "copy", f"r{i}"))
    clock.now += 30
    error_of(await pipeline.process(cmd("bitget", "copy", "probe")))
    assert plain.calls == 3
    err = error_of(await pipeline.process(cmd("bitget", "copy", "after")))
    assert err["code"] == "VENUE_UNAVAILABLE" and plain.calls == 3
    assert f"next probe at {iso_ms(T0 + 30 + 60)}" in err["message"]
    assert f"since {iso_ms(T0)}" in err["message"]


async def test_caller_mistakes_and_short_deadlines_do_not_trip_the_circuit() -> None:
    clock = Clock()
    pipeline, _, plain = setup(clock)
    plain.error = InvalidCommand("bad symbol")
    for i in range(5):
        error_of(await pipeline.process(cmd("bitget", "copy", f"bad{i}")))
    plain.error = ExchangeTimeout("did not answer within 0.100s", venue_down=False)
    for i in range(5):
        error_of(await pipeline.process(cmd("bitget", "copy", f"short{i}")))
    assert plain.calls == 10 and not pipeline.gate.is_open("bitget")


async def test_a_disabled_venue_is_answered_at_once_not_retryable() -> None:
    pipeline, scoped, _ = setup(Clock(), disabled={"ascendex"})
    err = error_of(await pipeline.process(cmd("ascendex", "desk-a")))
    assert err["code"] == ErrorCode.VENUE_DISABLED == "VENUE_DISABLED"
    assert err["retryable"] is False
    assert "disabled by configuration (CONNECTOR_ASCENDEX_ENABLED=false)" in err["message"]
    # Even for an alias the accounts file does not have: the venue is off, not the account.
    assert error_of(await pipeline.process(cmd("ascendex", "nobody")))["code"] == "VENUE_DISABLED"
    assert scoped.calls == []
    assert not pipeline.gate.should_schedule("ascendex", "desk-a")
    assert (await pipeline.process(cmd("bitget", "copy"))).ok


async def test_the_disabled_set_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_ASCENDEX_ENABLED", "false")
    pipeline = Pipeline(Settings(), ACCOUNTS, {}, codec.Serializer())
    assert pipeline.gate.disabled == {"ascendex"}
    assert error_of(await pipeline.process(cmd("ascendex", "desk-a")))["code"] == "VENUE_DISABLED"


async def test_circuit_status_goes_into_the_status_document() -> None:
    clock = Clock()
    pipeline, scoped, _ = setup(clock, disabled={"bitget"})
    scoped.down.add("group-2")
    for i in range(3):
        await pipeline.process(cmd("ascendex", "desk-b", f"r{i}"))
    await pipeline.process(cmd("ascendex", "desk-a"))
    doc = status_document(
        settings=Settings(),
        venues=["ascendex"],
        venue_settings={},
        aliases={"ascendex": ["desk-a", "desk-b"]},
        **pipeline.gate.status(),
    )
    assert doc["disabled_venues"] == ["bitget"]
    circuits = doc["venues"]["ascendex"]["circuits"]
    assert circuits["group-1"]["state"] == "closed"
    assert circuits["group-2"]["state"] == "open"
    assert circuits["group-2"]["since"] == iso_ms(T0)
    assert circuits["group-2"]["next_probe_ms"] == int((T0 + 30) * 1000)
    json.dumps(doc)  # served as JSON


# --- configuration: CONNECTOR_<VENUE>_ENABLED and the circuit policy -------------------------


def test_a_disabled_venue_s_broken_settings_do_not_fail_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_ASCENDEX_REST_URL", "not a url")
    monkeypatch.setenv("CONNECTOR_ASCENDEX_MAX_SESSIONS_PER_GROUP", "999")
    with pytest.raises(ConfigurationError, match="CONNECTOR_ASCENDEX_REST_URL"):
        load_settings()
    monkeypatch.setenv("CONNECTOR_ASCENDEX_ENABLED", "false")
    load_settings()  # no error
    assert registry.disabled_names() == {"ascendex"}
    assert "ascendex" not in registry.enabled_venues()
    assert "ascendex" in registry.venues()  # still registered: commands naming it are understood
    assert "ascendex" not in registry.breaker_policies()


async def test_create_adapters_skips_a_disabled_venue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_ASCENDEX_ENABLED", "false")
    monkeypatch.setenv("CONNECTOR_ASCENDEX_WS_URL", "ftp://nowhere")
    adapters = registry.create_adapters(Settings())
    try:
        assert "ascendex" not in adapters and "bitget" in adapters
    finally:
        for adapter in adapters.values():
            await adapter.aclose()


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_switch_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONNECTOR_BITGET_ENABLED", value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith("CONNECTOR_BITGET_ENABLED:")


def test_circuit_policy_comes_from_the_venue_s_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_BITGET_CIRCUIT_FAILURES", "2")
    monkeypatch.setenv("CONNECTOR_BITGET_CIRCUIT_COOLDOWN_S", "1.5")
    monkeypatch.setenv("CONNECTOR_BITGET_CIRCUIT_MAX_COOLDOWN_S", "60")
    policy = registry.breaker_policies()["bitget"]
    assert policy == BreakerPolicy(failure_threshold=2, cooldown_s=1.5, max_cooldown_s=60)
    assert registry.breaker_policies()["ascendex"] == BreakerPolicy()
    monkeypatch.setenv("CONNECTOR_BITGET_CIRCUIT_MAX_COOLDOWN_S", "1")
    with pytest.raises(ConfigurationError, match="CONNECTOR_BITGET_CIRCUIT_MAX_COOLDOWN_S"):
        load_settings()


def test_lifecycle_settings_are_known_settings() -> None:
    names = registry.setting_names()
    for venue in ("ASCENDEX", "BITGET"):
        for field in (
            "ENABLED",
            "CIRCUIT_FAILURES",
            "CIRCUIT_COOLDOWN_S",
            "CIRCUIT_MAX_COOLDOWN_S",
        ):
            assert f"CONNECTOR_{venue}_{field}" in names


def test_a_disabled_venue_s_accounts_and_schedules_are_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A desk keeps its AscendEX accounts and standing queries in its files after switching the
    venue off: the worker starts, without those accounts, and schedules only the rest."""
    from connector.accounts_file import load_accounts
    from connector.worker.standing import load_checked_schedules

    accounts_file = tmp_path / "accounts.yaml"
    accounts_file.write_text(
        "old-desk: {exchange: ascendex, api_key: k, secret: s, not_a_field: 1}\n"
        "copy: {exchange: bitget, api_key: k, api_secret: s, passphrase: p}\n"
    )
    accounts_file.chmod(0o600)
    schedules_file = tmp_path / "schedules.yaml"
    schedules_file.write_text(
        "schedules:\n"
        "  - {exchange: ascendex, account: old-desk, interval_s: 5}\n"
        "  - {exchange: bitget, account: copy, interval_s: 5}\n"
    )
    with pytest.raises(ConfigurationError, match="old-desk"):  # enabled: the entry is wrong
        load_accounts(accounts_file)
    monkeypatch.setenv("CONNECTOR_ASCENDEX_ENABLED", "false")
    accounts = load_accounts(accounts_file)
    assert [a.alias for a in accounts] == ["copy"]
    settings = Settings(schedules_file=str(schedules_file))
    assert [(s.exchange, s.account) for s in load_checked_schedules(settings, accounts)] == [
        ("bitget", "copy")
    ]
