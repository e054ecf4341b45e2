"""Stopping the worker: the shutdown hooks that drain the commands in flight, make the final
commit, and close the exchange clients.

At shutdown (SIGTERM/SIGINT) :func:`drain_and_commit` runs first, before Faust stops anything
(``App.stop_hooks``, connector/worker/faust_internals.py): no new command starts (not even one
already waiting in a venue lane, connector/worker/lanes.py: it stays unacknowledged), the
commands in flight get ``shutdown_drain_s`` to finish, then what was answered is committed so
the next owner of these partitions does not repeat it. A command still running then is
cancelled and abandoned: Faust does not wait for it either (``stream_wait_empty`` is turned off
after this hook; it used to wait without a limit, before this hook even ran), and it is never
acknowledged (app.py ``hold_unanswered``): its offset stays uncommitted for the next owner.
:func:`close_clients` runs last (``App.shutdown_hooks``), once the agents are stopped, so an
abandoned command is cancelled rather than answered FAILED by a closed exchange client. The
hooks see the worker through :class:`Drainable`, so this module does not import the Connector
that connects them.
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
    """Called first when the worker stops (``App.stop_hooks``, connected by the Connector):
    sets the connector draining (the agent starts no new command), waits for the commands in
    flight up to ``shutdown_drain_s``, commits the acknowledged offsets."""
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


async def close_clients(connector: Drainable) -> None:
    """Called last when the worker stops (``App.shutdown_hooks``, connected by the Connector),
    once its agents are stopped: closes the exchange adapters and the serializer."""
    for adapter in connector.adapters.values():
        try:
            await adapter.aclose()
        except Exception:
            log.exception("closing exchange adapter failed")
    await connector.serializer.aclose()
