"""Circuit breakers: a venue (or one host of it) that is not there is answered at once.

Without them a dead venue costs every command its whole timeout, retries included, and holds a
worker slot all that time: commands for the healthy venues queue behind it (issue 20, "one sick
part never takes down the rest"). A breaker counts the failures that mean "the venue is not
there" (:func:`counts_as_outage`: connection refused or reset, DNS failure, HTTP 5xx or
maintenance, silence for a whole request timeout; the ``venue_down`` mark of the typed errors in
connector/errors.py). After ``failure_threshold`` of them in a row its circuit **opens**: every
command for it is answered at once with :class:`~connector.errors.VenueUnavailable` (retryable;
the message says since when and when the next probe is). After a cool-down, which doubles on
every failed probe up to ``max_cooldown_s``, the circuit is **half-open**: exactly one command
is let through as the probe while the others are still answered at once. The probe's success
closes the circuit; its failure opens it again for longer.

A failure that says nothing about whether the venue is there (a bad signature, a rejected
request, our own rate limiter's wait running out, a cancelled command) is *neutral*: it neither
counts nor resets the count; a neutral probe hands the probe to the next command.

The scope of a breaker is the venue's failure unit: the venue as a whole, or one host of it
(the host serving an account group, the one API host) when that is smaller, so one sick host
does not stop the others. A :class:`CircuitBoard` keeps one breaker per (venue, scope), reports
every state change once (one log line, ``connector_venue_circuit_state`` and
``connector_venue_circuit_transitions_total``) and gives ``/status`` and the standing-query
scheduler their view.

Everything here is synchronous and takes its clock (UTC epoch seconds) as a parameter, so the
tests drive time by hand. Results are matched to the permit that admitted them: a result from a
call admitted before the last state change (a straggler that started while the circuit was still
closed) is ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .. import metrics
from ..errors import ConnectorError, VenueUnavailable

log = logging.getLogger(__name__)

#: UTC epoch seconds.
Clock = Callable[[], float]

#: The scope of a venue whose failure unit is the venue itself.
VENUE_SCOPE = "venue"


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


#: ``connector_venue_circuit_state`` values: 0 closed, 1 half-open, 2 open.
STATE_VALUES: Mapping[CircuitState, int] = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
}


def counts_as_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` is evidence that the venue is not there (see the module docstring)."""
    return isinstance(exc, ConnectorError) and exc.venue_down


def iso_ms(epoch_s: float) -> str:
    """``2026-07-01T10:00:00.000Z`` for UTC epoch seconds (the log lines' format)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit opens and how long it stays open.

    ``failure_threshold`` consecutive outage failures open it; the first cool-down is
    ``cooldown_s``, doubled after every failed probe, never above ``max_cooldown_s``.
    """

    failure_threshold: int = 5
    cooldown_s: float = 5.0
    max_cooldown_s: float = 300.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0 < self.cooldown_s <= self.max_cooldown_s:
            raise ValueError("need 0 < cooldown_s <= max_cooldown_s")

    def cooldown(self, opened: int) -> float:
        """The cool-down after the ``opened``-th opening in a row (1 = the first)."""
        return float(min(self.max_cooldown_s, self.cooldown_s * 2 ** max(0, opened - 1)))


@dataclass(frozen=True)
class Transition:
    """One state change, as reported to the board's hook."""

    exchange: str
    scope: str
    old: CircuitState
    new: CircuitState
    at_s: float
    failures: int
    since_s: float | None
    next_probe_s: float | None
    reason: str


@dataclass(frozen=True)
class Permit:
    """A call the breaker admitted; hand it back with the call's result to :meth:`record`."""

    probe: bool
    generation: int


class CircuitBreaker:
    """The circuit of one (venue, scope). Not thread-safe on its own: one event loop uses it
    (the board's lock guards creation only)."""

    def __init__(
        self,
        exchange: str,
        scope: str = VENUE_SCOPE,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock = time.time,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.exchange = exchange
        self.scope = scope
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self._failures = 0  # consecutive outage failures (closed), or failed openings in a row
        self._opened = 0  # openings since the circuit was last closed
        self._since: float | None = None  # when the current outage began (first opening)
        self._next_probe: float | None = None
        self._probing = False
        self._generation = 0
        self._last_error: str | None = None

    # --- queries (no side effects) -------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def since_s(self) -> float | None:
        """When the current outage began (the first opening), or None while closed."""
        return self._since

    @property
    def next_probe_s(self) -> float | None:
        """When the next probe may go (open), or None (closed, or a probe is running)."""
        return self._next_probe if self._state is CircuitState.OPEN else None

    def would_allow(self) -> bool:
        """Whether :meth:`allow` would admit a call now (what a scheduler asks before
        publishing a command it would only see refused)."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.HALF_OPEN:
            return not self._probing
        return self._next_probe is not None and self._clock() >= self._next_probe

    def snapshot(self) -> dict[str, Any]:
        """The state for ``/status``: times as UTC epoch milliseconds and ISO-8601."""
        since, probe = self._since, self.next_probe_s
        return {
            "state": self._state.value,
            "consecutive_failures": self._failures if self._state is CircuitState.CLOSED else 0,
            "openings": self._opened,
            "since_ms": None if since is None else int(since * 1000),
            "since": None if since is None else iso_ms(since),
            "next_probe_ms": None if probe is None else int(probe * 1000),
            "next_probe": None if probe is None else iso_ms(probe),
            "probe_in_flight": self._probing,
            "last_error": self._last_error,
        }

    # --- admission and results ------------------------------------------------------------------

    def allow(self) -> Permit:
        """Admit one call, or raise :class:`~connector.errors.VenueUnavailable` at once."""
        if self._state is CircuitState.CLOSED:
            return Permit(probe=False, generation=self._generation)
        now = self._clock()
        if self._state is CircuitState.OPEN and self._next_probe is not None:
            if now >= self._next_probe:
                self._change(CircuitState.HALF_OPEN, now, "cool-down over, probing")
        if self._state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(probe=True, generation=self._generation)
        raise self._refusal(now)

    def record(self, permit: Permit, exc: BaseException | None) -> None:
        """The result of an admitted call: ``None`` for success, else what it raised."""
        if permit.generation != self._generation:
            return  # admitted before the last state change: says nothing about now
        now = self._clock()
        outage = counts_as_outage(exc)
        if outage and isinstance(exc, ConnectorError):
            self._last_error = f"{exc.code.value}: {exc.message}"[:300]
        if self._state is CircuitState.CLOSED:
            if exc is None:
                self._failures = 0
            elif outage:
                self._failures += 1
                if self._failures >= self.policy.failure_threshold:
                    self._open(now, f"{self._failures} consecutive failures")
            return
        if not permit.probe:
            return
        self._probing = False
        if exc is None:
            self._close(now)
        elif outage:
            self._open(now, "probe failed")
        # else: neutral; the next command is the probe

    def observe(self, exc: BaseException | None) -> None:
        """A result of a call this breaker did not admit (the adapter learned a smaller scope
        for the account during the call): counted while the circuit is closed only."""
        if self._state is CircuitState.CLOSED:
            self.record(Permit(probe=False, generation=self._generation), exc)

    # --- transitions ----------------------------------------------------------------------------

    def _refusal(self, now: float) -> VenueUnavailable:
        since = self._since if self._since is not None else now
        where = self.exchange if self.scope == VENUE_SCOPE else f"{self.exchange} ({self.scope})"
        probe = self._next_probe
        if self._state is CircuitState.HALF_OPEN or probe is None:
            when = "a probe is in flight"
            retry_after = None
        else:
            when = f"next probe at {iso_ms(probe)} ({int(probe * 1000)})"
            retry_after = max(0.0, probe - now)
        last = f"; last error: {self._last_error}" if self._last_error else ""
        return VenueUnavailable(
            f"{where} is unavailable since {iso_ms(since)} ({int(since * 1000)}): circuit open "
            f"after repeated failures, answered without calling it; {when}{last}",
            retry_after=retry_after,
        )

    def _open(self, now: float, reason: str) -> None:
        self._opened += 1
        if self._since is None:
            self._since = now
        cooldown = self.policy.cooldown(self._opened)
        self._next_probe = now + cooldown
        self._change(CircuitState.OPEN, now, f"{reason}; cool-down {cooldown:g}s")

    def _close(self, now: float) -> None:
        down_s = now - (self._since if self._since is not None else now)
        self._failures = 0
        self._opened = 0
        self._since = None
        self._next_probe = None
        self._last_error = None
        self._change(CircuitState.CLOSED, now, f"probe succeeded, unavailable for {down_s:.1f}s")

    def _change(self, new: CircuitState, now: float, reason: str) -> None:
        old, self._state = self._state, new
        self._generation += 1
        if new is not CircuitState.HALF_OPEN:
            self._probing = False
        if self._on_transition is not None:
            self._on_transition(
                Transition(
                    self.exchange,
                    self.scope,
                    old,
                    new,
                    now,
                    self._failures,
                    self._since,
                    self.next_probe_s,
                    reason,
                )
            )


class CircuitBoard:
    """One breaker per (venue, scope), created on first use, with one policy per venue.

    Every state change is one log line and two metrics: ``connector_venue_circuit_state``
    (0 closed, 1 half-open, 2 open) and ``connector_venue_circuit_transitions_total`` (by the
    state entered). Label values are bounded: venue names from the registry and the scopes the
    venue's adapter names (its hosts or account groups), never caller input.
    """

    def __init__(
        self,
        policies: Mapping[str, BreakerPolicy] | None = None,
        *,
        default: BreakerPolicy | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._policies = dict(policies or {})
        self._default = default or BreakerPolicy()
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._lock = threading.Lock()

    def breaker(self, exchange: str, scope: str = VENUE_SCOPE) -> CircuitBreaker:
        key = (exchange, scope)
        found = self._breakers.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._breakers.get(key)
            if found is None:
                found = CircuitBreaker(
                    exchange,
                    scope,
                    self._policies.get(exchange, self._default),
                    clock=self._clock,
                    on_transition=_report,
                )
                self._breakers[key] = found
                metrics.VENUE_CIRCUIT_STATE.labels(exchange, scope).set(0)
            return found

    def breakers(self) -> list[CircuitBreaker]:
        return [self._breakers[k] for k in sorted(self._breakers)]

    def is_open(self, exchange: str, scope: str | None = None) -> bool:
        """Whether a call for ``exchange`` (in ``scope``; any scope when None) would be refused
        now."""
        return any(
            not b.would_allow()
            for (ex, sc), b in list(self._breakers.items())
            if ex == exchange and (scope is None or sc == scope)
        )

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per venue, per scope: :meth:`CircuitBreaker.snapshot`."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for b in self.breakers():
            out.setdefault(b.exchange, {})[b.scope] = b.snapshot()
        return out


def _report(t: Transition) -> None:
    metrics.VENUE_CIRCUIT_STATE.labels(t.exchange, t.scope).set(STATE_VALUES[t.new])
    metrics.VENUE_CIRCUIT_TRANSITIONS.labels(t.exchange, t.scope, t.new.value).inc()
    since = "" if t.since_s is None else f"; unavailable since {iso_ms(t.since_s)}"
    probe = "" if t.next_probe_s is None else f"; next probe at {iso_ms(t.next_probe_s)}"
    level = logging.INFO if t.new is CircuitState.CLOSED else logging.WARNING
    log.log(
        level,
        "venue circuit %s %s: %s -> %s (%s)%s%s",
        t.exchange,
        t.scope,
        t.old.value,
        t.new.value,
        t.reason,
        since,
        probe,
        extra={"exchange": t.exchange, "circuit_scope": t.scope, "circuit_state": t.new.value},
    )


__all__ = [
    "VENUE_SCOPE",
    "BreakerPolicy",
    "CircuitBoard",
    "CircuitBreaker",
    "CircuitState",
    "Permit",
    "Transition",
    "counts_as_outage",
    "iso_ms",
]
