"""AscendEX futures adapter (authenticated WebSocket API v2), laid out like nautilus_trader's.

``auth`` signs, ``http`` finds the account group and the contract list, ``websocket`` keeps one
authenticated socket per account, ``schemas`` describes raw payloads, ``parsing`` turns them into
the normalized model, and ``adapter`` ties them into an :class:`ExchangeAdapter`.
"""

from __future__ import annotations

from ...settings import Settings
from .adapter import AscendexAdapter


def create_adapter(settings: Settings) -> AscendexAdapter:
    return AscendexAdapter(settings)


__all__ = ["AscendexAdapter", "create_adapter"]
