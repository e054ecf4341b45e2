"""Stopping the worker: the shutdown hook that drains the commands in flight and makes the
final commit.

At shutdown (SIGTERM/SIGINT) Faust has stopped fetching but its agents still run: the commands
in flight in the venue lanes (connector/worker/lanes.py) finish (bounded by
``shutdown_drain_s``), no new one starts (not even one already waiting in a lane: it stays
unacknowledged), then what was answered is committed so the next owner of these partitions does
not repeat it. The hook sees the worker
through :class:`Drainable`, so this module does not import the Connector that connects it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from ..codec import Serializer
from ..exchanges.base import ExchangeAdapter
from ..settings import Settings
from .faust_internals import committed_offsets, uncommitted_acks
from .lanes import Lanes

log = logging.getLogger(__name__)


class Drainable(Protocol):
    """What the shutdown hook needs of the worker (connector/worker/app.py's Connector)."""

    draining: bool  # set here: the agent starts no new command

    @property
    def settings(self) -> Settings: ...
    @property
    def lanes(self) -> Lanes: ...
    @property
    def app(self) -> Any: ...
    @property
    def adapters(self) -> Mapping[str, ExchangeAdapter]: ...
    @property
    def serializer(self) -> Serializer: ...


async def drain_and_commit(connector: Drainable) -> None:
    """Called by Faust (``on_before_shutdown``, connected by the Connector) when the worker
    stops: sets the connector draining (the agent starts no new command), waits for the
    commands in flight, commits the acknowledged offsets, closes the exchange adapters and the
    serializer."""
    connector.draining = True
    settings = connector.settings
    abandoned = await connector.lanes.drain(settings.shutdown_drain_s)
    if abandoned:
        log.warning(
            "%d commands still in flight after %.0fs; abandoning them uncommitted",
            abandoned,
            settings.shutdown_drain_s,
        )
    consumer: Any = connector.app.consumer
    try:  # diagnostics for the known gap in README "Guarantees" (repeats after SIGTERM)
        log.debug(
            "shutdown: acked-but-uncommitted %s, committed %s",
            uncommitted_acks(consumer),
            committed_offsets(consumer),
        )
    except Exception:  # noqa: S110 - Faust internals; diagnostics only
        pass
    try:
        # Twice: a commit already running when we get here returns without committing
        # the acks that came after it started.
        committed = False
        for _ in range(2):
            committed = await asyncio.wait_for(consumer.commit(), 10) or committed
        log.info("final commit of acknowledged offsets: %s", "done" if committed else "none")
    except Exception as exc:  # best effort: at worst the next owner repeats them
        log.warning("final commit failed: %s", type(exc).__name__)
    for adapter in connector.adapters.values():
        try:
            await adapter.aclose()
        except Exception:
            log.exception("closing exchange adapter failed")
    await connector.serializer.aclose()
