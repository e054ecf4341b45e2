"""Standing queries (connector/schedules.py) in the worker: the group leader's timer publishes
them to the command topic; the progress per schedule (the last slot published) is a
GlobalTable, so a new leader after a rebalance or restart continues from it. The leader topic
elects the one worker that runs the timer.

Only the leader writes the table, and it decides by the clock alone: one command per schedule
and slot. It does not wait for answers: those are handled on whichever worker owns the account's
partition, and a GlobalTable write from another worker is not seen by the leader's copy (Faust
keeps a GlobalTable's changelog partition active on every worker; see faust-streaming/faust#283).
When it did wait, an account answered by the other worker of two got every other slot skipped.
No pile-up follows from not waiting: each command's deadline bounds its fetch (see "Ticks" in
connector/schedules.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import faust

from ..account import Accounts
from ..commands import RawCommand, validate_command
from ..errors import ConfigurationError, ConnectorError
from ..exchanges.registry import disabled_names
from ..model import now_ms
from ..schedules import SETTING, Progress, Schedule, load_schedules
from ..settings import SCHEDULES_TABLE, Settings
from ..state import table_key
from .outcomes import utf8
from .publisher import Publisher, Record

log = logging.getLogger(__name__)


class StandingQueries:
    """The schedules' progress table and the leader's timer, on the Faust ``app``.

    ``idle``: True while no new command may start (the worker is draining for shutdown).
    """

    def __init__(
        self,
        app: Any,
        settings: Settings,
        schedules: list[Schedule],
        publisher: Publisher,
        idle: Callable[[], bool],
        may_schedule: Callable[[str, str], bool] = lambda exchange, account: True,
    ) -> None:
        """``may_schedule(exchange, account)``: False while the account's venue is disabled
        or its circuit is open (:meth:`connector.venue_gate.VenueGate.should_schedule`); such a
        schedule is skipped, not piled up, and its next slot goes once a probe may."""
        self.app = app
        self._may_schedule = may_schedule
        self.settings = settings
        self.schedules = schedules
        self.publisher = publisher
        self._idle = idle
        self.table: Any = app.GlobalTable(
            SCHEDULES_TABLE,
            default=None,
            partitions=1,
            use_partitioner=True,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        tick_s = min(1.0, min(s.interval_s for s in schedules) / 4)
        app.timer(interval=tick_s, on_leader=True, name="standing-queries")(self.tick)

    async def tick(self, *args: Any) -> None:
        """Called by Faust's timer, on the leader only: publish the standing queries that are
        due (one per schedule and slot, by the clock), each acked before it counts. Affects the
        command topic and the progress table."""
        app = self.app
        if self._idle() or app.rebalancing or not app.tables.recovery.completed.is_set():
            return  # the progress table may be stale until recovery is done
        try:
            progress = Progress({k: dict(v) for k, v in self.table.items()})
            due = [s for s in self.schedules if self._may_schedule(s.exchange, s.account)]
            for cmd in progress.tick(now_ms(), due):
                command = {k: v for k, v in cmd.command.items() if v is not None}
                key = utf8(table_key(command["exchange"], command["account"]))
                value = json.dumps(command).encode()
                await self.publisher.send(
                    [Record(self.settings.topic_query_orders, key, value, [])]
                )
                self.table[cmd.schedule_id] = progress.published(cmd)
                log.info(
                    "standing query published",
                    extra={"request_id": command["request_id"], "exchange": command["exchange"],
                           "account": command["account"]},
                )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: the next tick tries again (same slot, same id)
            log.warning("standing queries: publishing failed (%s)", type(exc).__name__)

    def mark_answered(self, request_id: str) -> None:
        """Nothing to do: the leader does not wait for answers (module docstring). Kept while
        ``Connector.handle`` still calls it; that call can go."""


def load_checked_schedules(settings: Settings, accounts: Accounts) -> list[Schedule]:
    """The schedules file, each entry checked as the command it will publish and against the
    accounts file: a problem fails at start with one line naming the entry."""
    if not settings.schedules_file:
        return []
    disabled = disabled_names()
    schedules = []
    for i, s in enumerate(load_schedules(settings.schedules_file)):
        if s.exchange in disabled:  # never scheduled (connector/exchanges/registry.py)
            log.info("standing query for %s:%s not scheduled: its venue is disabled",
                     s.exchange, s.account)  # fmt: skip
            continue
        command = {"request_id": "check", "exchange": s.exchange, "account": s.account,
                   **s.filters}  # fmt: skip
        try:
            validate_command(RawCommand(command))
            accounts.get(s.exchange, s.account)
        except ConnectorError as exc:
            where = f"{SETTING}: schedules[{i}] ({s.exchange}:{s.account})"
            raise ConfigurationError(f"{where}: {exc}") from None
        schedules.append(s)
    return schedules
