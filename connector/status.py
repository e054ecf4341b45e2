"""What ``GET /status`` shows, and the per-venue health it reports.

The status page is for an operator asking "what is this worker running, with which settings,
and how are its venues doing?". It must never show a secret, so configuration goes through
:func:`redacted` (every ``SecretStr`` and every setting whose name says password, secret,
token, key or user info becomes ``"***"`` when set), accounts are shown as aliases only, and the
per-venue state is read back from the Prometheus gauges — the same numbers ``/metrics`` serves,
with one source of truth.

:class:`VenueHealth` keeps two of those gauges: the last successful snapshot per venue and the
failures since. Only exchange-side error codes count as a venue failure; a bad command or an
unknown account says nothing about the venue (nor do VENUE_UNAVAILABLE and VENUE_DISABLED: the
connector answered those without asking the venue).

:func:`circuit_state` is the venues' lifecycle for the same page: which venues are disabled by
configuration and, per venue and scope, the circuit breaker's state (connector/resilience/
breaker.py), with since when a venue is unavailable and when its next probe is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel, SecretBytes, SecretStr

from . import metrics
from .errors import ErrorCode
from .resilience.breaker import CircuitBoard
from .version import __version__

REDACTED = "***"

#: Setting names that hold a secret even when typed as a plain string.
_SECRET_WORDS = ("password", "secret", "token", "user_info", "userinfo", "api_key", "passphrase")

#: Error codes that mean the venue failed us (not the caller, not the connector).
VENUE_FAILURE_CODES = frozenset(
    {
        ErrorCode.AUTH_FAILED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.EXCHANGE_REJECTED,
        ErrorCode.EXCHANGE_UNAVAILABLE,
        ErrorCode.TIMEOUT,
        ErrorCode.MALFORMED_RESPONSE,
        ErrorCode.SNAPSHOT_TOO_LARGE,
    }
)


def is_secret_setting(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redacted(model: BaseModel) -> dict[str, Any]:
    """Every field of a settings model, secrets replaced by ``"***"`` (``None`` stays ``None``,
    so an operator can still see whether it is set)."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is None:
            out[name] = None
        elif isinstance(value, SecretStr | SecretBytes) or is_secret_setting(name):
            out[name] = REDACTED
        elif isinstance(value, str | int | float | bool):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class VenueHealth:
    """Last success and consecutive failures per venue, kept in the Prometheus gauges."""

    def __init__(self, venues: Iterable[str]) -> None:
        self.venues = frozenset(venues)
        self._failures = dict.fromkeys(self.venues, 0)
        for venue in self.venues:
            metrics.EXCHANGE_CONSECUTIVE_FAILURES.labels(venue).set(0)

    def record(self, exchange: str, ok: bool, code: str | None) -> None:
        if exchange not in self.venues:
            return
        if ok:
            self._failures[exchange] = 0
            metrics.EXCHANGE_LAST_SUCCESS.labels(exchange).set(time.time())
        elif code in VENUE_FAILURE_CODES:
            self._failures[exchange] += 1
        else:
            return
        metrics.EXCHANGE_CONSECUTIVE_FAILURES.labels(exchange).set(self._failures[exchange])


def _samples(metric: MetricWrapperBase) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in metric.collect() for s in family.samples]


def venue_state(venues: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per venue: sessions open (by group), clock offset, key expiry (by account), last
    success, consecutive failures — read from the gauges."""
    state: dict[str, dict[str, Any]] = {
        v: {
            "sessions_open": {},
            "clock_offset_s": None,
            "api_key_expiry_s": {},
            "last_success_s": None,
            "consecutive_failures": 0,
        }
        for v in sorted(venues)
    }
    for labels, value in _samples(metrics.EXCHANGE_SESSIONS_OPEN):
        if labels["exchange"] in state:
            state[labels["exchange"]]["sessions_open"][labels["group"]] = int(value)
    for labels, value in _samples(metrics.API_KEY_EXPIRY):
        if labels["exchange"] in state:
            state[labels["exchange"]]["api_key_expiry_s"][labels["account"]] = value
    singles = {
        "clock_offset_s": metrics.EXCHANGE_CLOCK_OFFSET,
        "last_success_s": metrics.EXCHANGE_LAST_SUCCESS,
        "consecutive_failures": metrics.EXCHANGE_CONSECUTIVE_FAILURES,
    }
    for field, metric in singles.items():
        for labels, value in _samples(metric):
            if labels["exchange"] in state:
                state[labels["exchange"]][field] = (
                    int(value) if field == "consecutive_failures" else value
                )
    return state


def circuit_state(board: CircuitBoard, disabled: Iterable[str] = ()) -> dict[str, Any]:
    """The venues' lifecycle for ``/status``: ``disabled`` (venues switched off by
    configuration, sorted) and ``circuits``: per venue, per scope (``venue``, a host, an
    account group), the breaker's ``state`` (closed, half_open, open), ``since``/``since_ms``
    (when the outage began), ``next_probe``/``next_probe_ms``, ``consecutive_failures``,
    ``openings``, ``probe_in_flight`` and ``last_error`` (times ISO-8601 UTC and epoch ms).
    Its keys are :func:`status_document`'s ``disabled`` and ``circuits`` parameters."""
    return {"disabled": sorted(disabled), "circuits": board.snapshot()}


def status_document(
    *,
    settings: BaseModel,
    venues: Iterable[str],
    venue_settings: Mapping[str, BaseModel],
    aliases: Mapping[str, Iterable[str]],
    circuits: Mapping[str, Mapping[str, Any]] | None = None,
    disabled: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The ``/status`` body: version, redacted configuration (core and per venue), account
    aliases per venue and per-venue state; with ``circuits`` (from :func:`circuit_state`),
    each venue's circuits, and with ``disabled``, the venues switched off by configuration
    (``disabled_venues``)."""
    names = sorted(venues)
    per_venue = venue_state(names)
    doc: dict[str, Any] = {
        "version": __version__,
        "configuration": redacted(settings),
        "venues": {
            venue: {
                "configuration": (
                    redacted(venue_settings[venue]) if venue in venue_settings else {}
                ),
                "accounts": sorted(aliases.get(venue, ())),
                **per_venue[venue],
                **({} if circuits is None else {"circuits": dict(circuits.get(venue, {}))}),
            }
            for venue in names
        },
    }
    if disabled is not None:
        doc["disabled_venues"] = sorted(disabled)
    return doc
