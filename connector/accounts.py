"""Accounts file: alias -> exchange credentials, loaded once at start.

Commands name accounts by alias only, so credentials live in exactly one place: this file (or
the Secret it is mounted from). Every secret loaded here is also registered with :func:`redact`,
the last line of defence that scrubs secrets from anything the connector writes out.

File format (YAML or TOML, chosen by extension)::

    accounts:
      desk-a:
        exchange: ascendex
        api_key: ...
        api_secret: ...
        options: {ws_sign_key: raw}   # exchange-specific, optional
      follower-1:
        exchange: bitget
        api_key: ...
        api_secret: ...
        passphrase: ...

A top-level mapping without the ``accounts:`` wrapper is accepted too.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigurationError, UnknownAccount
from .model import Exchange


class Secret:
    """A credential that refuses to print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Account:
    alias: str
    exchange: Exchange
    api_key: Secret
    api_secret: Secret
    passphrase: Secret | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Account(alias={self.alias!r}, exchange={self.exchange.value!r})"


class Accounts:
    """The configured accounts, looked up by (exchange, alias)."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self._by_alias = {a.alias: a for a in accounts}
        for a in self._by_alias.values():
            register_secrets(a.api_key, a.api_secret, a.passphrase)

    def get(self, exchange: Exchange, alias: str) -> Account:
        account = self._by_alias.get(alias)
        if account is None or account.exchange != exchange:
            # Same message for both cases: do not reveal which aliases exist on other exchanges.
            raise UnknownAccount(f"no {exchange.value} account with alias {alias!r} is configured")
        return account

    def __iter__(self) -> Any:
        return iter(self._by_alias.values())

    def __len__(self) -> int:
        return len(self._by_alias)


def load_accounts(path: str | Path) -> Accounts:
    """Load and validate the accounts file; any problem is one ConfigurationError line."""
    p = Path(path)
    setting = "CONNECTOR_ACCOUNTS_FILE"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read {p}: {exc.strerror}") from None
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        # Parser messages can quote file content (a secret); report only the position.
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else getattr(exc, "lineno", "?")
        raise ConfigurationError(f"{setting}: {p} is not valid YAML/TOML (line {line})") from None
    if isinstance(data, dict) and isinstance(data.get("accounts"), dict):
        data = data["accounts"]
    if not isinstance(data, dict) or not data:
        raise ConfigurationError(f"{setting}: {p} must map account aliases to credentials")
    accounts = []
    for alias, entry in data.items():
        accounts.append(_parse_entry(str(alias), entry, setting))
    return Accounts(accounts)


def _parse_entry(alias: str, entry: Any, setting: str) -> Account:
    where = f"{setting}: account {alias!r}"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a mapping")
    try:
        exchange = Exchange(str(entry.get("exchange", "")).lower())
    except ValueError:
        known = ", ".join(e.value for e in Exchange)
        raise ConfigurationError(f"{where}: exchange must be one of {known}") from None
    for required in ("api_key", "api_secret"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise ConfigurationError(f"{where}: {required} is required")
    passphrase = entry.get("passphrase")
    if exchange is Exchange.BITGET and not passphrase:
        raise ConfigurationError(f"{where}: passphrase is required for bitget")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where}: options must be a mapping")
    return Account(
        alias=alias,
        exchange=exchange,
        api_key=Secret(entry["api_key"]),
        api_secret=Secret(entry["api_secret"]),
        passphrase=Secret(str(passphrase)) if passphrase else None,
        options={str(k): str(v) for k, v in options.items()},
    )


# --- redaction ----------------------------------------------------------------------------

_secrets: set[str] = set()
# Longest first, so a secret containing another is replaced whole. Rebuilt on registration
# (start-up) rather than sorted on every log line.
_ordered: tuple[tuple[str, bytes], ...] = ()
_lock = threading.Lock()
REDACTED = "***"


def register_secrets(*secrets: Secret | None) -> None:
    """Remember secret values so :func:`redact` can scrub them from any output."""
    global _ordered
    with _lock:
        for s in secrets:
            # Very short values would redact ordinary text; real credentials are long.
            if s is not None and len(s.reveal()) >= 4:
                _secrets.add(s.reveal())
        _ordered = tuple((s, s.encode()) for s in sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Replace every registered secret value in ``text``."""
    for s, _ in _ordered:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def redact_bytes(data: bytes) -> bytes:
    for _, b in _ordered:
        if b in data:
            data = data.replace(b, REDACTED.encode())
    return data
