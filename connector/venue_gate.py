"""The gate in front of every venue: one sick venue must not take the others down.

A venue switched off by configuration (``CONNECTOR_<VENUE>_ENABLED=false``) has no adapter, and
its commands are answered at once, VENUE_DISABLED (not retryable). Every fetch passes the
venue's circuit breaker for the scope the adapter names (connector/resilience/breaker.py): while
the circuit is open the command is answered at once, VENUE_UNAVAILABLE (retryable), without
calling the venue, so a dead venue costs a command microseconds instead of its whole timeout.
:meth:`VenueGate.should_schedule` and :meth:`VenueGate.is_open` tell the standing-query
scheduler the same, and :meth:`VenueGate.status` gives ``/status`` the breakers' state.

The pipeline owns one gate (``Pipeline.gate``); the worker asks it, never the breakers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

from .account import Accounts
from .errors import UnknownAccount, VenueDisabled
from .exchanges import registry
from .exchanges.base import CircuitScoped, ExchangeAdapter
from .resilience.breaker import VENUE_SCOPE, CircuitBoard, CircuitBreaker, Permit
from .status import circuit_state

T = TypeVar("T")


class VenueGate:
    """Disabled venues and circuit breakers, for one worker's adapters and accounts."""

    def __init__(
        self,
        adapters: Mapping[str, ExchangeAdapter],
        accounts: Accounts,
        *,
        circuits: CircuitBoard | None = None,
        disabled: Collection[str] | None = None,
    ) -> None:
        """``circuits``: the venues' circuit breakers (default: one board with each enabled
        venue's ``CONNECTOR_<VENUE>_CIRCUIT_*`` policy); ``disabled``: the venues switched off
        by configuration (default: the registry's ``CONNECTOR_<VENUE>_ENABLED=false``)."""
        self.adapters = adapters
        self.accounts = accounts
        self.circuits = (
            circuits if circuits is not None else CircuitBoard(registry.breaker_policies())
        )
        self.disabled = frozenset(disabled if disabled is not None else registry.disabled_names())

    def check_enabled(self, exchange: str) -> None:
        """Called by the pipeline for every valid command: raises VenueDisabled for a venue
        switched off by configuration."""
        if exchange in self.disabled:
            venue = registry.get(exchange)
            switch = f"{venue.env_prefix}ENABLED" if venue is not None else "its ENABLED setting"
            raise VenueDisabled(
                f"exchange {exchange} is disabled by configuration ({switch}=false): this "
                "worker does not serve it"
            )

    async def run(
        self,
        exchange: str,
        adapter: ExchangeAdapter,
        account: Any,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """Called by the pipeline around each fetch: raises VenueUnavailable at once while the
        account's circuit is open (or half-open with its probe running); otherwise runs
        ``call`` and hands its result to the breaker that admitted it."""
        breaker = self.circuits.breaker(exchange, self.scope(adapter, account))
        permit = breaker.allow()
        error: BaseException | None = None
        try:
            return await call()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._settle(exchange, adapter, account, breaker, permit, error)

    @staticmethod
    def scope(adapter: ExchangeAdapter, account: Any) -> str:
        """The failure unit the adapter names for ``account`` (a host, an account group), or
        the whole venue."""
        return adapter.circuit_scope(account) if isinstance(adapter, CircuitScoped) else VENUE_SCOPE

    def should_schedule(self, exchange: str, account: str) -> bool:
        """Whether the standing-query scheduler should publish a command for ``account`` now:
        False for a disabled venue and while the circuit the account depends on is open (its
        command would only be answered VENUE_UNAVAILABLE); True once a probe may go, so the
        scheduled command is the probe. An unknown venue or account is True: the command's
        own FAILED result says what is wrong."""
        if exchange in self.disabled:
            return False
        adapter = self.adapters.get(exchange)
        if adapter is None:
            return True
        try:
            acc = self.accounts.get(exchange, account)
        except UnknownAccount:
            return True
        return self.circuits.breaker(exchange, self.scope(adapter, acc)).would_allow()

    def is_open(self, exchange: str, account: str | None = None) -> bool:
        """Whether commands for ``exchange`` (for ``account``'s scope; any scope when None)
        would be answered VENUE_UNAVAILABLE now. A disabled venue is not "open": see
        :attr:`disabled`."""
        if account is None:
            return self.circuits.is_open(exchange)
        return exchange not in self.disabled and not self.should_schedule(exchange, account)

    def status(self) -> dict[str, Any]:
        """For ``/status``: the disabled venues and every breaker's state, per venue and scope
        (see :func:`connector.status.circuit_state`)."""
        return circuit_state(self.circuits, self.disabled)

    def _settle(
        self,
        exchange: str,
        adapter: ExchangeAdapter,
        account: Any,
        breaker: CircuitBreaker,
        permit: Permit,
        error: BaseException | None,
    ) -> None:
        """Hand the fetch's result to the breaker that admitted it. When the adapter learned a
        smaller scope for the account during the fetch (e.g. the account's group), the fetch
        got past the unit it was admitted for, and its result belongs to the new scope."""
        after = self.scope(adapter, account)
        if after == breaker.scope:
            breaker.record(permit, error)
            return
        breaker.record(permit, None)
        self.circuits.breaker(exchange, after).observe(error)
