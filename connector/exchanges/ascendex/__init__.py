"""AscendEX futures adapter (authenticated WebSocket API v2), laid out like nautilus_trader's.

``config`` holds settings and the accounts-file model, ``auth`` signs, ``http`` finds the account
group and the contract list, ``websocket`` keeps one authenticated socket per account,
``schemas`` describes raw payloads, ``parsing`` turns them into the normalized model, ``adapter``
ties them into an :class:`ExchangeAdapter`, and ``simulator`` is the sandbox server.
"""

from __future__ import annotations

from typing import Any

from ...settings import Settings
from ..registry import Simulator, Venue, register
from .adapter import AscendexAdapter
from .config import AscendexCredentials, AscendexSettings

NAME = "ascendex"


def create_adapter(settings: Settings, venue: AscendexSettings | None = None) -> AscendexAdapter:
    return AscendexAdapter(settings, venue or AscendexSettings())


def _simulator() -> Simulator:
    from . import simulator

    def env(base: str) -> dict[str, str]:
        return {
            "CONNECTOR_ASCENDEX_REST_URL": base,
            "CONNECTOR_ASCENDEX_WS_URL": base.replace("http", "ws", 1),
        }

    def create_app(orders_file: str | None) -> Any:
        return simulator.create_app(orders_file)

    return Simulator(create_app, simulator.demo_accounts, env, simulator.app_accounts)


VENUE = register(
    Venue(
        name=NAME,
        title="AscendEX",
        settings=AscendexSettings,
        credentials=AscendexCredentials,
        create_adapter=create_adapter,
        simulator=_simulator,
    )
)

__all__ = ["VENUE", "AscendexAdapter", "AscendexSettings", "create_adapter"]
