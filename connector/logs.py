"""Logging: JSON lines in containers, readable text in a terminal, secrets scrubbed in both.

Every record passes :class:`RedactingFilter`, so even a library that logs a URL or a header
cannot leak a configured credential. Context (``request_id``, ``exchange``, ``account``) lives in
a context variable set once per command (:func:`bind`), so every line of that command's work,
down inside the exchange adapters, carries it without threading arguments by hand; ``extra=``
fields still win when given. Timestamps are ISO-8601 UTC in both formats, and JSON (no colours,
no control codes) is the default whenever the output is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .commands import safe_text
from .secrets import redact

CONTEXT_FIELDS = ("request_id", "exchange", "account")
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")

_context: ContextVar[dict[str, str]] = ContextVar("connector_log_context", default={})  # noqa: B039


def bind(**fields: object) -> None:
    """Set the log context of the current task (fields that are None or empty are dropped)."""
    _context.set({k: str(v) for k, v in fields.items() if k in CONTEXT_FIELDS and v})


@contextlib.contextmanager
def context(**fields: object) -> Iterator[None]:
    """The log context for the duration of a block (one command's work), restored after."""
    token = _context.set({k: str(v) for k, v in fields.items() if k in CONTEXT_FIELDS and v})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the task's log context onto the record, unless ``extra=`` already set a field."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def iso_utc(created: float) -> str:
    """``2026-11-22T05:01:02.345Z``: ISO-8601, UTC, milliseconds."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        # Colour and cursor codes (a library's coloured message, a terminal spinner) would be
        # garbage in a log file or collector: dropped whatever the output.
        record.msg, record.args = safe_text(redact(_ANSI.sub("", message))), None
        # Context fields come from commands, so a caller can put a credential (or invalid
        # Unicode) there: they get the same treatment as the message.
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, safe_text(redact(value)))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class ThrottleFilter(logging.Filter):
    """Kafka client libraries log every failed reconnect (ten a second while a broker is down).
    Repeats of the same message template from them are dropped for ``window_s``, so an outage
    shows as a few lines, and the worker's own one-line-per-state-change messages stand out."""

    PREFIXES = ("aiokafka", "kafka")

    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.PREFIXES):
            return True
        key = (record.name, str(record.msg))
        last = self._last.get(key)
        if last is not None and record.created - last < self.window_s:
            return False
        self._last[key] = record.created
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = " ".join(
            f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None)
        )
        return f"{text} [{ctx}]" if ctx else text


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_utc(record.created)


def json_formatter() -> logging.Formatter:
    return _JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def logging_config(level: str, fmt: str, stream: Any = None) -> dict[str, Any]:
    """A dictConfig for the worker and the CLI (``fmt``: auto | json | text)."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "redact": {"()": RedactingFilter},
            "throttle": {"()": ThrottleFilter},
        },
        "formatters": {
            "json": {"()": json_formatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "json" if use_json else "text",
                "filters": ["context", "throttle", "redact"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            # aiokafka is chatty at INFO about every rebalance step; keep its warnings.
            "aiokafka": {"level": "WARNING"},
        },
    }


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
