"""What the pipeline needs from an exchange, and nothing more.

An adapter owns its transport (pooled HTTP client, one WebSocket per account...), its auth, its
paging and rate limiting, and its ``parse_*`` functions. It returns a *complete* snapshot of
normalized :class:`~connector.model.Order` or raises a :class:`~connector.errors.ConnectorError`
subclass; it never returns a partial snapshot.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..account import Account
from ..model import FetchResult, OrderQuery


class ExchangeAdapter(Protocol):
    exchange: str

    async def fetch_open_orders(
        self, account: Account, query: OrderQuery, *, deadline: float
    ) -> FetchResult:
        """Fetch every open order for ``query``.

        ``deadline`` is an ``asyncio`` loop time (``loop.time()``) by which the fetch must have
        finished, retries included; past it raise :class:`~connector.errors.ExchangeTimeout`
        (or the last retryable error). Retryable failures (dropped socket, 5xx, throttling) are
        retried inside the adapter; the error finally raised carries ``attempts``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at worker shutdown."""
        ...


@runtime_checkable
class CircuitScoped(Protocol):
    """An adapter whose failure unit is smaller than the venue (optional).

    The pipeline keeps one circuit breaker per (venue, scope) (connector/resilience/breaker.py)
    and asks the adapter which scope a command for ``account`` depends on: e.g. the host of
    the account's group once the venue has looked it up, the API host before. Cheap and
    synchronous (no I/O): it is asked before every fetch and after it. The scope may change
    only by the adapter learning more about the account (a smaller unit); a finite set of
    values (hosts, groups), as it is a metric label. Adapters without it have one scope,
    ``"venue"``.
    """

    def circuit_scope(self, account: Account) -> str: ...
