"""The connector's exception hierarchy, by cause.

Every failure a command can meet is one of these, so the pipeline can turn any of them into an
ErrorEvent + FAILED QueryResult without knowing which exchange raised it. Messages must never
contain secrets: exchange adapters build them from codes and public fields only, and the pipeline
passes them through :func:`connector.secrets.redact` once more before publishing.

::

    Exception
    ├── ConfigurationError            bad settings / accounts file: fails at start, one line
    └── ConnectorError                code, retryable, exchange_code, attempts, calls, retry_after
        ├── InvalidCommand            INVALID_COMMAND       the caller must fix the command
        ├── UnknownAccount            UNKNOWN_ACCOUNT
        ├── Unsupported               UNSUPPORTED           venue not served / not enabled
        ├── Expired                   EXPIRED               deadline passed before starting
        ├── VenueDisabled             VENUE_DISABLED        venue switched off by configuration
        ├── VenueUnavailable          VENUE_UNAVAILABLE     circuit open: answered without a call
        ├── ExchangeError             anything the exchange said or failed to say
        │   ├── AuthFailed            AUTH_FAILED           credentials, permissions, signature
        │   ├── RateLimited           RATE_LIMITED          throttled (retried until deadline)
        │   ├── ExchangeRejected      EXCHANGE_REJECTED     a clear "no" to this request
        │   ├── ExchangeUnavailable   EXCHANGE_UNAVAILABLE  5xx, maintenance, dropped connection
        │   ├── ExchangeTimeout       TIMEOUT               no answer in time
        │   ├── MalformedResponse     MALFORMED_RESPONSE    an answer we cannot read or trust
        │   ├── SnapshotTooLarge      SNAPSHOT_TOO_LARGE    more pages than the configured cap
        │   └── SnapshotIncomplete    EXCHANGE_REJECTED     the exchange will not show it all
        └── InternalError             INTERNAL              a bug; logged with its traceback

``exchange_code`` is the exchange's own code, or the HTTP status when that is all it said.

``venue_down`` marks the failures that say the venue itself is not there (connection refused or
reset, DNS failure, HTTP 5xx or maintenance, silence for a whole request timeout): what a venue's
circuit breaker counts (connector/resilience/breaker.py). It is True for every retryable
:class:`ExchangeUnavailable` and False otherwise unless the raiser says so: a timeout is only
evidence when the venue was given the full request timeout, never when our own rate limiter,
session cap or the caller's short deadline ran the clock out.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The ErrorEvent ``code`` values of the design contract."""

    INVALID_COMMAND = "INVALID_COMMAND"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNSUPPORTED = "UNSUPPORTED"
    EXPIRED = "EXPIRED"
    AUTH_FAILED = "AUTH_FAILED"
    RATE_LIMITED = "RATE_LIMITED"
    EXCHANGE_REJECTED = "EXCHANGE_REJECTED"
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"
    # Added in 0.2.0 (the Avro enum's default, INTERNAL, is what older readers see).
    MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
    SNAPSHOT_TOO_LARGE = "SNAPSHOT_TOO_LARGE"
    # Added in 0.2.0, appended like the two above (readers on the 0.1.0 schema see INTERNAL).
    VENUE_UNAVAILABLE = "VENUE_UNAVAILABLE"
    VENUE_DISABLED = "VENUE_DISABLED"


class ConnectorError(Exception):
    """Base of every typed failure; carries what the ErrorEvent needs."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        exchange_code: str | None = None,
        retryable: bool | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        venue_down: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exchange_code = exchange_code
        if retryable is not None:
            self.retryable = retryable
        self._venue_down = venue_down
        self.attempts = attempts
        # Seconds the exchange asked us to wait (HTTP Retry-After), honoured by the retry policy.
        self.retry_after = retry_after
        # Exchange requests made before the failure; adapters stamp it so the FAILED
        # QueryResult's exchange_calls is as truthful as an OK one's.
        self.calls = 0

    @property
    def venue_down(self) -> bool:
        """Whether this failure says the venue is not there (see the module docstring)."""
        return bool(self._venue_down)

    def __str__(self) -> str:
        if self.exchange_code:
            return f"{self.code}: {self.message} (exchange code {self.exchange_code})"
        return f"{self.code}: {self.message}"


class ConfigurationError(Exception):
    """Bad settings or accounts file; raised at start-up with one line naming the setting."""


# --- command problems: the caller must fix the command ---------------------------------------


class InvalidCommand(ConnectorError):
    code = ErrorCode.INVALID_COMMAND


class UnknownAccount(ConnectorError):
    code = ErrorCode.UNKNOWN_ACCOUNT


class Unsupported(ConnectorError):
    code = ErrorCode.UNSUPPORTED


class Expired(ConnectorError):
    code = ErrorCode.EXPIRED


# --- venue lifecycle: answered by the connector without calling the venue ---------------------


class VenueDisabled(ConnectorError):
    """The venue is switched off by configuration (``CONNECTOR_<VENUE>_ENABLED=false``).
    Not retryable: the same command fails the same way until an operator turns it back on."""

    code = ErrorCode.VENUE_DISABLED


class VenueUnavailable(ConnectorError):
    """The venue's circuit is open: it failed as "not there" too often in a row, so commands
    are answered at once instead of each waiting out its timeout. Retryable: the message says
    since when and when the next probe is; ``retry_after`` is the seconds until then."""

    code = ErrorCode.VENUE_UNAVAILABLE
    retryable = True


# --- exchange problems -----------------------------------------------------------------------


class ExchangeError(ConnectorError):
    """Anything the exchange said or failed to say."""


class AuthFailed(ExchangeError):
    code = ErrorCode.AUTH_FAILED


class RateLimited(ExchangeError):
    code = ErrorCode.RATE_LIMITED
    retryable = True


class ExchangeRejected(ExchangeError):
    code = ErrorCode.EXCHANGE_REJECTED


class ExchangeUnavailable(ExchangeError):
    code = ErrorCode.EXCHANGE_UNAVAILABLE
    retryable = True

    @property
    def venue_down(self) -> bool:
        """5xx, maintenance, refused or dropped connections: the venue is not there, unless the
        raiser said otherwise or marked it final (our own closed client)."""
        return self.retryable if self._venue_down is None else self._venue_down


class ExchangeTimeout(ExchangeError):
    code = ErrorCode.TIMEOUT
    retryable = True


class MalformedResponse(ExchangeError):
    """The exchange answered with something the connector cannot read or does not expect.

    Not retryable by default: a payload that is malformed now will be malformed on the next
    read. An unreadable *body* (truncated JSON, a proxy page) is raised with ``retryable=True``.
    """

    code = ErrorCode.MALFORMED_RESPONSE


class SnapshotTooLarge(ExchangeError):
    """Paging hit the configured page cap: the snapshot cannot be proven complete."""

    code = ErrorCode.SNAPSHOT_TOO_LARGE


class SnapshotIncomplete(ExchangeError):
    """The exchange refuses to return part of the set (e.g. history older than it keeps) or
    its paging cannot be followed to the end: completeness cannot be proven, so the command
    fails rather than publish a partial snapshot. Not retryable: asking again changes nothing.
    """

    code = ErrorCode.EXCHANGE_REJECTED


class InternalError(ConnectorError):
    code = ErrorCode.INTERNAL
