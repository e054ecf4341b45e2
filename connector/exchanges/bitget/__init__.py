"""Bitget copy-trading follower adapter (signed REST v2).

Layout follows nautilus_trader's adapters: ``auth`` signs, ``http`` talks to the exchange (one
pooled client, clock sync, error mapping, retries), ``ratelimit`` keeps every account under
Bitget's per-UID limit, ``schemas`` names the raw payloads, ``parsing`` turns them into the
normalized model without I/O, and ``adapter`` pages a command's snapshot together.
"""

from __future__ import annotations

from ...settings import Settings
from .adapter import BitgetAdapter


def create_adapter(settings: Settings) -> BitgetAdapter:
    """The process-wide Bitget adapter (one HTTP connection pool, one limiter per user)."""
    return BitgetAdapter(settings)


__all__ = ["BitgetAdapter", "create_adapter"]
