"""The connector's exception hierarchy.

Every failure a command can meet is one of these, so the pipeline can turn any of them into an
ErrorEvent + FAILED QueryResult without knowing which exchange raised it. Messages must never
contain secrets: exchange adapters build them from codes and public fields only, and the pipeline
passes them through :func:`connector.accounts.redact` once more before publishing.
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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exchange_code = exchange_code
        if retryable is not None:
            self.retryable = retryable
        self.attempts = attempts
        # Exchange requests made before the failure; adapters stamp it so the FAILED
        # QueryResult's exchange_calls is as truthful as an OK one's.
        self.calls = 0

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


class ExchangeTimeout(ExchangeError):
    code = ErrorCode.TIMEOUT
    retryable = True


class InternalError(ConnectorError):
    code = ErrorCode.INTERNAL
