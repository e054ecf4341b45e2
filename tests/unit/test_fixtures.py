"""Every recorded fixture decodes into its venue's Struct (see tests/fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from connector.exchanges._json import decode
from connector.exchanges.ascendex import schemas as asc
from connector.exchanges.bitget import schemas as bg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

ASCENDEX: dict[str, type[msgspec.Struct]] = {
    "open_orders_reference.json": asc.OpenOrdersReply,
    "open_orders_variants.json": asc.OpenOrdersReply,
    "malformed_orders.json": asc.OpenOrdersReply,
    "error_invalid_ws_request.json": asc.Reply,
    "account_info.json": asc.AccountInfoReply,
    "futures_contracts.json": asc.ContractsReply,
    "exchange_info.json": asc.ExchangeInfoReply,
    "risk_limit_info_banned.json": asc.RiskLimitReply,
    "open_orders_live_quirks.json": asc.OpenOrdersReply,
}
BITGET_DATA: dict[str, object] = {
    "query-current-orders.json": list[bg.TrackingOrder],
    "query-current-orders-tracking-list.json": bg.TrackingPage,
    "contracts-usdt-futures.json": list[bg.Contract],
    "server-time.json": bg.ServerTime,
}


def test_every_fixture_is_covered_and_listed_in_the_readme() -> None:
    readme = (FIXTURES / "README.md").read_text()
    files = {f"{p.parent.name}/{p.name}" for p in FIXTURES.glob("*/*.json")}
    covered = {f"ascendex/{n}" for n in ASCENDEX} | {f"bitget/{n}" for n in BITGET_DATA}
    covered |= {"ascendex/error_payloads.json", "bitget/errors.json"}
    assert files == covered
    assert all(f"`{f}`" in readme for f in files)


@pytest.mark.parametrize("name", sorted(ASCENDEX))
def test_ascendex_fixture_decodes(name: str) -> None:
    reply = decode(ASCENDEX[name], (FIXTURES / "ascendex" / name).read_bytes(), name)
    if isinstance(reply, asc.OpenOrdersReply):
        assert reply.data
        for raw in reply.data:
            decode(asc.FuturesOrder, raw, name)  # malformed_orders' bad row is bad in value only


def test_ascendex_error_payloads_decode() -> None:
    for case in json.loads((FIXTURES / "ascendex" / "error_payloads.json").read_text()):
        decode(asc.Reply, json.dumps(case["payload"]), case["name"])


@pytest.mark.parametrize("name", sorted(BITGET_DATA))
def test_bitget_fixture_decodes(name: str) -> None:
    envelope = decode(bg.Envelope, (FIXTURES / "bitget" / name).read_bytes(), name)
    assert envelope.code == bg.SUCCESS
    assert decode(BITGET_DATA[name], envelope.data, name)  # type: ignore[call-overload]


def test_bitget_error_bodies_decode() -> None:
    for case in json.loads((FIXTURES / "bitget" / "errors.json").read_text())["cases"]:
        envelope = decode(bg.Envelope, json.dumps(case["body"]), "errors.json")
        assert envelope.code == case["body"]["code"]
