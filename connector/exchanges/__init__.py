"""Exchange adapters, one package per venue. The pipeline only sees :class:`ExchangeAdapter`."""

from __future__ import annotations

from ..model import Exchange
from ..settings import Settings
from .base import ExchangeAdapter


def create_adapters(settings: Settings) -> dict[Exchange, ExchangeAdapter]:
    """One adapter per supported exchange, configured from settings."""
    adapters: dict[Exchange, ExchangeAdapter] = {}
    from .ascendex import create_adapter as create_ascendex

    adapters[Exchange.ASCENDEX] = create_ascendex(settings)
    try:
        from .bitget import create_adapter as create_bitget
    except ImportError:  # pragma: no cover - until the Bitget package lands
        pass
    else:
        adapters[Exchange.BITGET] = create_bitget(settings)
    return adapters


__all__ = ["ExchangeAdapter", "create_adapters"]
