"""Where an account's state (connector/state.py) is kept between commands: the
:class:`StateStore` seam.

In production it is :class:`FaustTableStore`: the Faust table ``STATE_TABLE``, backed by its
changelog topic so a restarted or rebalanced worker continues from it. A store returns only
once the changelog acknowledged the change (or reports that the broker refused it), because
the state is stored *before* its records are published (connector/state.py "Publishing": the
stored state is never behind the topic). :class:`InMemoryStateStore` is the test double.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..state import AccountState
from .outages import Outages, refusal_name

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """Keeps each account's state, by table key (``<exchange>:<account>``)."""

    def load(self, key: str) -> AccountState | None:
        """The account's stored state, or None when it has none."""
        ...

    async def store(self, key: str, state: AccountState) -> bool:
        """Store ``state`` as the account's state; True once it is durable, False when the
        store refused it for good (outages are waited out, not reported)."""
        ...


class FaustTableStore:
    """:class:`StateStore` over a Faust table with a changelog. Written only inside the agent:
    routing makes the changelog partition of an account the one of the event being processed
    (docs/state-topic.md "Routing")."""

    def __init__(self, table: Any, outages: Outages) -> None:
        self.table = table
        self.outages = outages

    def load(self, key: str) -> AccountState | None:
        value: AccountState | None = self.table.get(key)
        return value

    async def store(self, key: str, state: AccountState) -> bool:
        """Called by the state writer with the account's lock held: changes the table in memory
        and sends the changelog record, waiting out outages until it is acknowledged.

        What ``table[key] = value`` does, but keeping the changelog record's future (Faust's
        own drops it: a failed send would be an "exception never retrieved" and a silently
        stale table after a restart). It is acknowledged before the command is, so a worker
        killed right after the ack restarts from a table that has this snapshot.
        """
        table = self.table
        table.data[key] = state
        partition = table.partition_for_key(key)
        refused = await self.outages.until_acked(
            lambda: table.send_changelog(partition, key, state)
        )
        if refused is not None:
            log.error("state table change refused by the broker (%s)", refusal_name(refused))
        return refused is None


class InMemoryStateStore:
    """:class:`StateStore` for tests: ``states`` by key, optionally pre-filled (a state
    restored from the changelog); ``refuse`` makes every store report a refusal."""

    def __init__(self, states: dict[str, AccountState] | None = None) -> None:
        self.states: dict[str, AccountState] = dict(states or {})
        self.refuse = False

    def load(self, key: str) -> AccountState | None:
        return self.states.get(key)

    async def store(self, key: str, state: AccountState) -> bool:
        if self.refuse:
            return False
        self.states[key] = state
        return True
