"""Exchange adapters, one package per venue, found through :mod:`.registry`.

The pipeline only sees :class:`ExchangeAdapter` and venue names; nothing outside a venue's own
package knows which venues exist.
"""

from __future__ import annotations

from .base import ExchangeAdapter
from .registry import create_adapters

__all__ = ["ExchangeAdapter", "create_adapters"]
