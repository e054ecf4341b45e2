"""Standing queries (connector/schedules.py): the file, and which commands a tick publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.commands import RawCommand, validate_command
from connector.errors import ConfigurationError
from connector.schedules import (
    Progress,
    Schedule,
    due_commands,
    load_schedules,
    parse_request_id,
    parse_schedules,
    slot_of,
)

YAML = """
schedules:
  - exchange: Bitget
    account: follower-1
    product_type: USDT-FUTURES
    interval_s: 30
  - exchange: ascendex
    account: desk-a
    symbol: BTC-PERP
    interval_s: 10
    deadline_factor: 0.5
"""

TOML = """
[[schedules]]
exchange = "ascendex"
account = "desk-a"
interval_s = 5
"""


def test_yaml_and_toml(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(YAML)
    bitget, ascendex = load_schedules(tmp_path / "s.yaml")
    assert bitget.exchange == "bitget" and bitget.filters == {"product_type": "USDT-FUTURES"}
    assert bitget.schedule_id == "bitget:follower-1:product_type=USDT-FUTURES"
    assert ascendex.schedule_id == "ascendex:desk-a:symbol=BTC-PERP"
    assert ascendex.interval_ms == 10_000
    (tmp_path / "s.toml").write_text(TOML)
    (only,) = load_schedules(tmp_path / "s.toml")
    assert only.schedule_id == "ascendex:desk-a" and only.filters == {}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"exchange": "bitget", "account": "f", "interval_s": 0}],
         "CONNECTOR_SCHEDULES_FILE: schedules[0] (bitget:f): interval_s: Input should be greater than or equal to 1"),
        ([{"exchange": "bitget", "account": "f"}],
         "CONNECTOR_SCHEDULES_FILE: schedules[0] (bitget:f): interval_s: Field required"),
        ([{"account": "f", "interval_s": 5}],
         "CONNECTOR_SCHEDULES_FILE: schedules[0]: exchange: Field required"),
        ([{"exchange": "bitget", "account": "f", "interval_s": 5, "every": 3}],
         "CONNECTOR_SCHEDULES_FILE: schedules[0] (bitget:f): every: Extra inputs are not permitted"),
        ([{"exchange": "bitget", "account": "f", "interval_s": 5},
          {"exchange": "BITGET", "account": "f", "interval_s": 9}],
         "CONNECTOR_SCHEDULES_FILE: schedules[1] (bitget:f): duplicate of an earlier entry with the same filter"),
        (["nope"], "CONNECTOR_SCHEDULES_FILE: schedules[0]: must be a mapping"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_one_line_naming_entry_and_field(
    entries: list[object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_schedules(entries)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CONNECTOR_SCHEDULES_FILE: cannot read"):
        load_schedules(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("schedules: [\n")
    with pytest.raises(ConfigurationError, match=r"not valid YAML/TOML \(line"):
        load_schedules(tmp_path / "bad.yaml")
    (tmp_path / "flat.yaml").write_text("interval_s: 5\n")
    with pytest.raises(ConfigurationError, match="must hold a list under 'schedules'"):
        load_schedules(tmp_path / "flat.yaml")


# --- ticks ---------------------------------------------------------------------------------

S = Schedule(exchange="bitget", account="f", symbol="BTCUSDT", interval_s=10)
T = Schedule(exchange="ascendex", account="d", interval_s=60, deadline_factor=0.5)


def test_first_tick_publishes_every_schedule_with_a_deadline_tied_to_the_interval() -> None:
    now = 1_000_003_500
    cmds = due_commands(now, [S, T], {})
    assert [c.schedule_id for c in cmds] == [S.schedule_id, T.schedule_id]
    s_cmd, t_cmd = cmds
    assert s_cmd.slot_ms == slot_of(now, 10_000) == 1_000_000_000
    assert s_cmd.deadline_ms == now + 10_000 and t_cmd.deadline_ms == now + 30_000
    assert s_cmd.command == {
        "request_id": "sched:bitget:f:symbol=BTCUSDT:1000000000",
        "exchange": "bitget",
        "account": "f",
        "symbol": "BTCUSDT",
        "product_type": None,
        "trader_id": None,
        "requested_at": now,
        "deadline_ms": now + 10_000,
    }


def test_the_command_is_a_valid_query_orders_command() -> None:
    (cmd,) = due_commands(5_000, [S], {})
    query = validate_command(RawCommand(cmd.command))
    assert query.symbol == "BTCUSDT" and query.deadline_ms == cmd.deadline_ms


def test_one_command_per_slot() -> None:
    (first,) = due_commands(20_001, [S], {})
    last = {S.schedule_id: first.slot_ms}
    assert due_commands(29_999, [S], last) == []
    (nxt,) = due_commands(30_000, [S], last)
    assert nxt.slot_ms == 30_000 and nxt.command["request_id"].endswith(":30000")


def test_two_leaders_in_the_same_slot_name_the_command_alike() -> None:
    a = due_commands(40_100, [S], {})
    b = due_commands(49_900, [S], {})
    assert a[0].command["request_id"] == b[0].command["request_id"]


def test_every_slot_gets_its_command_whether_or_not_the_previous_one_was_answered() -> None:
    """The leader cannot see answers handled by other workers, so it never waits for them:
    a schedule gets one command per slot by the clock (its deadline bounds a slow fetch)."""
    last: dict[str, int] = {}
    published = []
    for now in range(10_000, 60_000, 2_500):  # ticks; no answer is ever recorded
        for cmd in due_commands(now, [S], last):
            last[cmd.schedule_id] = cmd.slot_ms
            published.append(cmd.slot_ms)
    assert published == [10_000, 20_000, 30_000, 40_000, 50_000]


def test_the_deadline_ends_before_the_next_slot_is_well_under_way() -> None:
    """With the default factor, a command's whole fetch budget ends one interval after it was
    published: at most one command of a schedule is being fetched at a time (no pile-up)."""
    (cmd,) = due_commands(10_400, [S], {})
    assert cmd.deadline_ms == 20_400
    (nxt,) = due_commands(20_400, [S], {S.schedule_id: cmd.slot_ms})
    assert nxt.command["requested_at"] >= cmd.deadline_ms


def test_schedules_are_independent() -> None:
    last = {S.schedule_id: 60_000}
    cmds = due_commands(60_000, [S, T], last)
    assert [c.schedule_id for c in cmds] == [T.schedule_id]


# --- the leader's bookkeeping ----------------------------------------------------------------


def test_request_ids_round_trip() -> None:
    (cmd,) = due_commands(12_345, [S], {})
    assert parse_request_id(cmd.command["request_id"]) == (S.schedule_id, 10_000)
    assert parse_request_id("r-42") is None
    assert parse_request_id("sched:x") is None and parse_request_id("sched:x:y") is None


def test_progress_is_the_last_slot_and_survives_a_json_round_trip() -> None:
    progress = Progress()
    (cmd,) = progress.tick(10_000, [S])
    assert progress.published(cmd) == {"last_slot": 10_000}
    assert progress.tick(19_999, [S]) == []  # same slot: published already
    # A new leader starting from the stored table continues, without re-publishing slot 10_000.
    restored = Progress(json.loads(json.dumps(progress.table)))
    assert restored.tick(19_999, [S]) == []
    assert [c.slot_ms for c in restored.tick(20_000, [S])] == [20_000]


def test_progress_stored_by_an_earlier_version_is_read() -> None:
    """Values written while the leader still waited for answers carry an outstanding deadline;
    it no longer holds anything back."""
    stored = {S.schedule_id: {"last_slot": 10_000, "outstanding_deadline": 20_000}}
    assert [c.slot_ms for c in Progress(stored).tick(20_000, [S])] == [20_000]
