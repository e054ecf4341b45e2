"""Bitget copy-trading follower adapter (signed REST v2).

Layout follows nautilus_trader's adapters: ``config`` holds settings, the accounts-file model and
the command options, ``auth`` signs, ``http`` talks to the exchange (one pooled client, clock
sync, error mapping, retries), ``ratelimit`` keeps every account under Bitget's per-UID limit,
``schemas`` names the raw payloads, ``parsing`` turns them into the normalized model without
I/O, ``scopes`` remembers how far back the next snapshot of a scope has to look, ``adapter``
pages a command's snapshot together, and ``simulator`` is the sandbox server.
"""

from __future__ import annotations

from ...settings import Settings
from ..registry import Simulator, Venue, register
from .adapter import BitgetAdapter
from .config import BitgetCredentials, BitgetOptions, BitgetSettings

NAME = "bitget"


def create_adapter(settings: Settings, venue: BitgetSettings | None = None) -> BitgetAdapter:
    """The process-wide Bitget adapter (one HTTP connection pool, one limiter per user)."""
    return BitgetAdapter(settings, venue or BitgetSettings())


def _simulator() -> Simulator:
    from . import simulator

    def env(base: str) -> dict[str, str]:
        return {"CONNECTOR_BITGET_REST_URL": base}

    return Simulator(simulator.create_app, simulator.demo_accounts, env, simulator.app_accounts)


VENUE = register(
    Venue(
        name=NAME,
        title="Bitget",
        settings=BitgetSettings,
        credentials=BitgetCredentials,
        options=BitgetOptions,
        create_adapter=create_adapter,
        simulator=_simulator,
    )
)

__all__ = ["VENUE", "BitgetAdapter", "BitgetSettings", "create_adapter"]
