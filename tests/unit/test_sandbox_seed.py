"""Seeding the sandbox: an orders file brings accounts of its own (the benchmark's, the
integration run's), so no simulator carries data for one caller."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from connector.exchanges.ascendex import simulator as asc_sim
from connector.exchanges.bitget import simulator as bg_sim
from connector.sandbox.server import start_sandbox


def _seed(tmp_path: Path) -> Path:
    account_id = asc_sim.seeded_account("ascendex-seeded-1").futures_account_id
    rows = [asc_sim.order_row(account_id, orderId=f"seed{i}", price="1", orderQty="2")
            for i in range(3)]  # fmt: skip
    path = tmp_path / "orders.json"
    path.write_text(json.dumps({
        "ascendex": {"ascendex-seeded-1": rows},
        "bitget-seeded-1": [],
        "ascendex-top-level-ignored": [],
    }))  # fmt: skip
    return path


def test_an_ascendex_section_creates_accounts_with_derived_keys(tmp_path: Path) -> None:
    app = asc_sim.create_app(str(_seed(tmp_path)))
    account = asc_sim.get_state(app).accounts["ascendex-seeded-1"]
    expected = asc_sim.seeded_account("ascendex-seeded-1")
    assert (account.api_key, account.account_group) == (expected.api_key, expected.account_group)
    assert [o["orderId"] for o in account.orders] == ["seed0", "seed1", "seed2"]
    entries = asc_sim.app_accounts(app)
    assert entries["ascendex-seeded-1"]["api_key"] == expected.api_key
    assert "ascendex-demo" in entries  # the demo accounts stay
    assert "ascendex-seeded-1" not in asc_sim.demo_accounts()


def test_top_level_aliases_without_a_section_are_not_created(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump({"ascendex-unknown": [], "ascendex-empty": []}))
    app = asc_sim.create_app(str(path))
    assert "ascendex-unknown" not in asc_sim.get_state(app).accounts


async def test_the_sandbox_accounts_file_lists_seeded_accounts_of_every_venue(
    tmp_path: Path,
) -> None:
    sandbox = await start_sandbox(workdir=str(tmp_path / "sb"), orders_file=str(_seed(tmp_path)))
    try:
        accounts_file = Path(sandbox.env["CONNECTOR_ACCOUNTS_FILE"])
        accounts = yaml.safe_load(accounts_file.read_text())["accounts"]  # noqa: ASYNC240
    finally:
        await sandbox.stop()
    assert accounts["ascendex-seeded-1"]["exchange"] == "ascendex"
    assert (
        accounts["bitget-seeded-1"]["api_key"]
        == bg_sim.credentials_for("bitget-seeded-1")["api_key"]
    )
    assert "ascendex-top-level-ignored" not in accounts
    assert "ascendex-demo" in accounts and "bitget-demo" in accounts
