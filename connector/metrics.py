"""Prometheus metrics, defined once so every module records into the same series.

Everything is in prometheus_client's default registry: the connector's ``connector_*`` series
and Faust's own sensor metrics (:func:`faust_metrics`), so ``/metrics`` serves both from one
registry. Label values are bounded: venue names come from the venue registry, never from a
command.
"""

from __future__ import annotations

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from .version import __version__

COMMANDS = Counter(
    "connector_commands_total",
    "Commands answered, by exchange and result status",
    ["exchange", "status"],
)
COMMAND_LATENCY = Histogram(
    "connector_command_duration_seconds",
    "Time from command receipt to its QueryResult being acknowledged",
    ["exchange"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EXCHANGE_CALL_LATENCY = Histogram(
    "connector_exchange_call_duration_seconds",
    "Latency of one exchange request (HTTP page or WebSocket request)",
    ["exchange", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDER_EVENTS = Counter(
    "connector_order_events_published_total", "OrderEvents acknowledged by the broker", ["exchange"]
)
COMMANDS_FORWARDED = Counter(
    "connector_commands_forwarded_total",
    "Commands forwarded to the by-account topic because they were not on their account's "
    "partition (unkeyed, another key, or another partitioner)",
)
OFFSET_REFETCHES = Counter(
    "connector_offset_refetches_total",
    "Command partitions fetched again from a record the consumer fetched but never delivered "
    "to the agent (connector/worker/faust_internals.py)",
)
STATE_RECORDS = Counter(
    "connector_state_records_total",
    "Records acknowledged on the open-orders state topic (kind: upsert or tombstone)",
    ["exchange", "kind"],
)
ERRORS = Counter("connector_errors_total", "ErrorEvents published, by code", ["code"])
RATE_LIMIT_WAITS = Counter(
    "connector_rate_limiter_waits_total",
    "Requests that had to wait for the client-side rate limiter",
    ["exchange"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "connector_rate_limiter_wait_seconds_total",
    "Total time spent waiting for the rate limiter",
    ["exchange"],
)
EXCHANGE_RETRIES = Counter(
    "connector_exchange_retries_total",
    "Exchange operations retried by the shared retry policy, by venue and error",
    ["exchange", "error"],
)
METADATA_FETCHES = Counter(
    "connector_exchange_metadata_fetches_total",
    "Shared metadata requests (instrument lists, server time, account lookups); not charged to "
    "any command's exchange_calls",
    ["exchange", "kind"],
)
METADATA_FAILURES = Counter(
    "connector_exchange_metadata_failures_total",
    "Shared metadata requests that failed",
    ["exchange", "kind"],
)
WS_RECONNECTS = Counter(
    "connector_ws_reconnects_total", "WebSocket connections re-opened after a drop", ["exchange"]
)
IN_FLIGHT = Gauge("connector_commands_in_flight", "Commands being processed now")
IN_FLIGHT_BY_VENUE = Gauge(
    "connector_commands_in_flight_by_venue",
    "Commands holding one of their venue's slots now (CONNECTOR_WORKER_VENUE_CONCURRENCY; "
    "connector/worker/lanes.py); exchange 'unknown' for commands naming no configured venue",
    ["exchange"],
)
WAITING_BY_VENUE = Gauge(
    "connector_commands_waiting_by_venue",
    "Commands fetched and waiting for one of their venue's slots (all of them taken)",
    ["exchange"],
)
OUTAGES = Counter(
    "connector_outages_total",
    "Broker or schema registry outages waited out (one per outage, not per retry)",
    ["dependency"],
)

# --- exchange sessions, connection budget and API keys (any venue) -----------------------------
EXCHANGE_SESSIONS_OPEN = Gauge(
    "connector_exchange_sessions_open",
    "Exchange WebSocket sessions open now, by exchange and session group (the venue's unit of "
    "a per-IP session cap, e.g. an account group)",
    ["exchange", "group"],
)
EXCHANGE_SESSION_WAITS = Counter(
    "connector_exchange_session_waits_total",
    "Requests that waited for a session because the configured session cap was reached",
    ["exchange"],
)
EXCHANGE_CONNECT_ATTEMPTS = Counter(
    "connector_exchange_connect_attempts_total",
    "New connections (WebSocket upgrades) attempted, after passing the per-IP connection budget",
    ["exchange"],
)
API_KEY_EXPIRY = Gauge(
    "connector_api_key_expiry_timestamp_seconds",
    "When the account's API key expires (UTC epoch seconds), as the exchange reports it; absent "
    "for keys that never expire",
    ["exchange", "account"],
)

# --- per-venue health (label values: registered venue names only) ------------------------------
EXCHANGE_CLOCK_OFFSET = Gauge(
    "connector_exchange_clock_offset_seconds",
    "The venue's server clock minus the local clock, as last measured (signing uses it)",
    ["exchange"],
)
EXCHANGE_LAST_SUCCESS = Gauge(
    "connector_exchange_last_success_timestamp_seconds",
    "When a command last got a complete snapshot from the venue (UTC epoch seconds); absent "
    "until the first success",
    ["exchange"],
)
EXCHANGE_CONSECUTIVE_FAILURES = Gauge(
    "connector_exchange_consecutive_failures",
    "Commands FAILED by the venue (exchange-side error codes) since its last success",
    ["exchange"],
)

# --- venue circuit breakers (connector/resilience/breaker.py) ---------------------------------
VENUE_CIRCUIT_STATE = Gauge(
    "connector_venue_circuit_state",
    "Circuit of a venue or one of its hosts (scope: 'venue', a host or an account group): "
    "0 closed, 1 half-open (one probe let through), 2 open (commands answered "
    "VENUE_UNAVAILABLE at once)",
    ["exchange", "scope"],
)
VENUE_CIRCUIT_TRANSITIONS = Counter(
    "connector_venue_circuit_transitions_total",
    "Circuit state changes, by the state entered (closed, half_open, open)",
    ["exchange", "scope", "state"],
)

# --- build ---------------------------------------------------------------------------------
BUILD_INFO = Gauge("connector_build_info", "Always 1; the running version as a label", ["version"])


BUILD_INFO.labels(__version__).set(1)


# --- Faust's own sensor metrics ------------------------------------------------------------

_faust_metrics: dict[str, FaustMetrics] = {}


def faust_prefix(app_id: str) -> str:
    """Faust's default metric name prefix: the app id with ``-`` and ``.`` as ``_`` (the Helm
    chart's ``metrics.prometheusRule.faustMetricPrefix`` and the dashboard assume the same)."""
    return app_id.replace("-", "_").replace(".", "_")


def faust_metrics(app_id: str) -> FaustMetrics:
    """Faust's Prometheus sensor metrics (consumer offsets/lag, commit and send latency,
    rebalances) in the default registry beside ours, so ``/metrics`` serves both. Created once
    per prefix: a second app in the same process (tests) reuses them instead of failing with a
    duplicate registration."""
    prefix = faust_prefix(app_id)
    if prefix not in _faust_metrics:
        _faust_metrics[prefix] = FaustMetrics.create(REGISTRY, prefix)
    return _faust_metrics[prefix]


def prometheus_monitor(app_id: str) -> PrometheusMonitor:
    """A Faust sensor recording into :func:`faust_metrics` (set as ``app.monitor``)."""
    return PrometheusMonitor(metrics=faust_metrics(app_id))
