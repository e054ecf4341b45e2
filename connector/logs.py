"""Logging: JSON lines in containers, readable text in a terminal, secrets scrubbed in both.

Every record passes :class:`RedactingFilter`, so even a library that logs a URL or a header
cannot leak a configured credential. Context (``request_id``, ``exchange``, ``account``) travels
as ``extra=`` fields and is rendered by both formats.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .accounts import redact
from .commands import safe_text

CONTEXT_FIELDS = ("request_id", "exchange", "account")


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = safe_text(redact(message)), None
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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = " ".join(
            f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None)
        )
        return f"{text} [{ctx}]" if ctx else text


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
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
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {
            "json": {"()": json_formatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "json" if use_json else "text",
                "filters": ["redact"],
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
