"""Standing queries: a schedules file, and the pure tick logic the group leader runs.

Risk systems want "what is open now" without running their own scheduler. The schedules file
lists, per account alias and optional filter, how often to query; the worker group's leader
(a Faust ``app.timer(on_leader=True)``, wired in the worker) calls :func:`due_commands` and
publishes what it returns on the ``query-orders`` topic, like any other caller.

File (``CONNECTOR_SCHEDULES_FILE``, YAML or TOML by extension; a separate file from the accounts
file so it can change without touching secrets)::

    schedules:
      - exchange: venue-a            # a registered venue name
        account: follower-1          # alias from the accounts file
        product_type: USDT-FUTURES   # optional filters: symbol, product_type, trader_id
        interval_s: 30
      - exchange: venue-b
        account: desk-a
        symbol: BTC-PERP
        interval_s: 10
        deadline_factor: 0.8         # optional (default 1): deadline = now + factor * interval

A problem fails at start with one line naming the entry and the field, e.g.
``CONNECTOR_SCHEDULES_FILE: schedules[1] (venue-b:desk-a): interval_s: Input should be greater
than or equal to 1``.

Ticks
-----
Time is cut into slots of ``interval_s`` (aligned to the epoch, so every worker computes the same
slot). A schedule is due when the current slot is later than the last slot published for it, and
its command is named ``sched:<schedule id>:<slot ms>``: a second leader during a rebalance
computes the same request id for the same slot, so such a duplicate is recognisable.
:class:`Progress` keeps the last published slot per schedule id as a JSON-friendly mapping, so it
can live in a Faust GlobalTable and a new leader continues from the last published slot.

The clock alone decides: one command per schedule and slot, whether or not the previous one has
been answered. The leader never waits for an answer, because it cannot see them: a command is
answered by whichever worker owns its account's partition, and a GlobalTable write from that
worker does not reach the leader's copy of the table (Faust lists a GlobalTable's changelog
partition as active on every worker and applies only the standby updates live; compare
faust-streaming/faust#283). Waiting for answers made every other slot of an account handled by a
non-leader be skipped (4 commands in 40 s instead of 8), so an account looked stale because of
the scheduler itself. What the wait was for, no pile-up behind a slow exchange, the command's
deadline already gives: ``deadline_ms`` (publish time + ``deadline_factor`` x interval) bounds
the whole fetch (the pipeline's budget), and a command still queued after it is answered
``EXPIRED`` without a fetch. So a schedule has at most about ``deadline_factor`` commands in
flight (one with the default factor 1), however slow the exchange.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigurationError
from .state import scope_of

SETTING = "CONNECTOR_SCHEDULES_FILE"
FILTER_FIELDS = ("symbol", "product_type", "trader_id")


class Schedule(BaseModel):
    """One standing query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange: str = Field(min_length=1, max_length=64)
    account: str = Field(min_length=1, max_length=128)
    symbol: str | None = None
    product_type: str | None = None
    trader_id: str | None = None
    interval_s: float = Field(ge=1, le=86_400)
    deadline_factor: float = Field(default=1.0, gt=0, le=10)

    @field_validator("exchange")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @property
    def filters(self) -> dict[str, str]:
        """The filter fields set on this schedule (its scope, before venue defaults)."""
        return scope_of({name: getattr(self, name) for name in FILTER_FIELDS})

    @property
    def schedule_id(self) -> str:
        """``<exchange>:<account>[:field=value...]``, unique in a file."""
        return ":".join(
            [self.exchange, self.account, *(f"{k}={v}" for k, v in self.filters.items())]
        )

    @property
    def interval_ms(self) -> int:
        return int(self.interval_s * 1000)


@dataclass(frozen=True)
class ScheduledCommand:
    schedule_id: str
    slot_ms: int
    deadline_ms: int
    command: dict[str, Any]  # a QueryOrders command, as `connector query` builds it


def load_schedules(path: str | Path) -> list[Schedule]:
    """Load and validate the schedules file; any problem is one ConfigurationError line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{SETTING}: cannot read {p}: {exc.strerror}") from None
    try:
        data: Any = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else getattr(exc, "lineno", "?")
        raise ConfigurationError(f"{SETTING}: {p} is not valid YAML/TOML (line {line})") from None
    entries = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f"{SETTING}: {p} must hold a list under 'schedules'")
    return parse_schedules(entries)


def parse_schedules(entries: Iterable[Any]) -> list[Schedule]:
    out: list[Schedule] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{SETTING}: schedules[{i}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: must be a mapping")
        ex, acc = entry.get("exchange"), entry.get("account")
        if isinstance(ex, str) and isinstance(acc, str):
            where += f" ({ex.lower()}:{acc})"
        try:
            schedule = Schedule.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "entry"
            raise ConfigurationError(f"{where}: {field}: {err['msg']}") from None
        if schedule.schedule_id in seen:
            raise ConfigurationError(f"{where}: duplicate of an earlier entry with the same filter")
        seen.add(schedule.schedule_id)
        out.append(schedule)
    return out


REQUEST_PREFIX = "sched:"


def request_id_for(schedule_id: str, slot_ms: int) -> str:
    return f"{REQUEST_PREFIX}{schedule_id}:{slot_ms}"


def parse_request_id(request_id: str) -> tuple[str, int] | None:
    """``sched:<schedule id>:<slot>`` -> (schedule id, slot); None for any other request id."""
    if not request_id.startswith(REQUEST_PREFIX):
        return None
    sid, sep, slot = request_id[len(REQUEST_PREFIX) :].rpartition(":")
    if not sep or not sid or not slot.isdigit():
        return None
    return sid, int(slot)


class Progress:
    """The leader's bookkeeping, as one JSON-friendly mapping per schedule id (a Faust
    GlobalTable in the worker): ``{"last_slot": int}``. Written by the leader only. (Values
    stored by earlier versions also hold ``outstanding_deadline``; it is ignored.)"""

    def __init__(self, table: dict[str, dict[str, int | None]] | None = None) -> None:
        self.table: dict[str, dict[str, int | None]] = table if table is not None else {}

    def last_slots(self) -> dict[str, int]:
        return {
            sid: slot for sid, v in self.table.items() if (slot := v.get("last_slot")) is not None
        }

    def published(self, cmd: ScheduledCommand) -> dict[str, int | None]:
        """Record a published command; returns the new value for its schedule id."""
        value: dict[str, int | None] = {"last_slot": cmd.slot_ms}
        self.table[cmd.schedule_id] = value
        return value

    def tick(self, now_ms: int, schedules: Iterable[Schedule]) -> list[ScheduledCommand]:
        """:func:`due_commands` from this bookkeeping (call :meth:`published` per command
        once the broker acknowledged it)."""
        return due_commands(now_ms, schedules, self.last_slots())


def slot_of(now_ms: int, interval_ms: int) -> int:
    """Start of the epoch-aligned slot containing ``now_ms``."""
    return now_ms - now_ms % interval_ms


def due_commands(
    now_ms: int, schedules: Iterable[Schedule], last_slot: Mapping[str, int]
) -> list[ScheduledCommand]:
    """The commands to publish at ``now_ms``: one per schedule whose current slot is later than
    ``last_slot`` (schedule id -> slot of the last command published for it). By the clock
    only; see "Ticks" in the module docstring for why answers are not waited for."""
    out: list[ScheduledCommand] = []
    for s in schedules:
        sid, interval = s.schedule_id, s.interval_ms
        slot = slot_of(now_ms, interval)
        previous = last_slot.get(sid)
        if previous is not None and slot <= previous:
            continue
        deadline = now_ms + max(1, int(interval * s.deadline_factor))
        command = {
            "request_id": request_id_for(sid, slot),
            "exchange": s.exchange,
            "account": s.account,
            **{name: getattr(s, name) for name in FILTER_FIELDS},
            "requested_at": now_ms,
            "deadline_ms": deadline,
        }
        out.append(ScheduledCommand(sid, slot, deadline, command))
    return out
