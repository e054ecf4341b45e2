"""Prometheus metrics, defined once so every module records into the same series."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
