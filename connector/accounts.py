"""Accounts file: alias -> exchange credentials, loaded once at start.

Commands name accounts by alias only, so credentials live in exactly one place: this file (or
the Secret it is mounted from). Every secret loaded here is also registered with :func:`redact`,
the last line of defence that scrubs secrets from anything the connector writes out.

File format (YAML or TOML, chosen by extension)::

    accounts:
      desk-a:
        exchange: <venue name>
        api_key: ...
        api_secret: ...
        passphrase: ...               # where the venue requires one
        options: {...}                # venue-specific, optional

Each entry is validated by its venue's credentials model (``extra="forbid"``, secrets as
``SecretStr``), so a misspelt field fails at start. A duplicate alias fails too, and a file that
others can read logs a warning.

A top-level mapping without the ``accounts:`` wrapper is accepted too.
"""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ahocorasick_rs import AhoCorasick, BytesAhoCorasick, Implementation
from pydantic import ValidationError

from .errors import ConfigurationError, UnknownAccount

log = logging.getLogger(__name__)


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
    """A configured account. ``exchange`` is a registered venue name; ``options`` are the
    venue's validated accounts-file options, as strings."""

    alias: str
    exchange: str
    api_key: Secret
    api_secret: Secret
    passphrase: Secret | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Account(alias={self.alias!r}, exchange={self.exchange!r})"


class Accounts:
    """The configured accounts, looked up by (exchange, alias)."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self._by_alias = {a.alias: a for a in accounts}
        for a in self._by_alias.values():
            register_secrets(a.api_key, a.api_secret, a.passphrase)

    def get(self, exchange: str, alias: str) -> Account:
        account = self._by_alias.get(alias)
        if account is None or account.exchange != exchange:
            # Same message for both cases: do not reveal which aliases exist on other exchanges.
            raise UnknownAccount(f"no {exchange} account with alias {alias!r} is configured")
        return account

    def __iter__(self) -> Any:
        return iter(self._by_alias.values())

    def __len__(self) -> int:
        return len(self._by_alias)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain YAML
    keeps the last one, which would silently drop an account)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise ConfigurationError(
                f"{SETTING}: {key!r} is given twice (line {key_node.start_mark.line + 1})"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)

SETTING = "CONNECTOR_ACCOUNTS_FILE"


def load_accounts(path: str | Path) -> Accounts:
    """Load and validate the accounts file; any problem is one ConfigurationError line."""
    p = Path(path)
    setting = SETTING
    try:
        text = p.read_text(encoding="utf-8")
        mode = p.stat().st_mode
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read {p}: {exc.strerror}") from None
    if mode & 0o077:
        log.warning(
            "%s: %s is readable by group or others (mode %o); chmod 600 it",
            setting,
            p,
            mode & 0o777,
        )
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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
    """Validate one entry with its venue's credentials model. Errors name the alias and the
    field, never a value (the value may be a secret)."""
    from .exchanges import registry

    where = f"{setting}: account {alias!r}"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a mapping")
    name = str(entry.get("exchange", "")).lower()
    venue = registry.get(name) if name else None
    if venue is None:
        known = ", ".join(registry.names())
        raise ConfigurationError(f"{where}: exchange must be one of {known}")
    try:
        creds = venue.credentials.model_validate({**entry, "exchange": name})
    except ValidationError as exc:
        # A misspelt field also makes the real one missing; name the misspelling first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        field_name = ".".join(str(p) for p in err["loc"]) or "entry"
        if err["type"] == "missing":
            raise ConfigurationError(f"{where}: {field_name} is required") from None
        if err["type"] == "extra_forbidden":
            raise ConfigurationError(
                f"{where}: {field_name} is not a field of a {name} account"
            ) from None
        raise ConfigurationError(f"{where}: {field_name}: {err['msg']}") from None
    secrets = [Secret(s.get_secret_value()) for s in creds.secrets()]
    for field_name, secret in zip(("api_key", "api_secret"), secrets, strict=False):
        if not secret:
            raise ConfigurationError(f"{where}: {field_name} is required")
    passphrase = getattr(creds, "passphrase", None)
    return Account(
        alias=alias,
        exchange=name,
        api_key=secrets[0],
        api_secret=secrets[1],
        passphrase=Secret(passphrase.get_secret_value()) if passphrase is not None else None,
        options=creds.option_values(),
    )


# --- redaction ----------------------------------------------------------------------------

_secrets: set[str] = set()
# Longest first, so a secret containing another is replaced whole. Rebuilt on registration
# (start-up) rather than sorted on every log line.
_ordered: tuple[tuple[str, bytes], ...] = ()
_automaton: AhoCorasick | None = None  # over _secrets; None while there are none
_bytes_automaton: BytesAhoCorasick | None = None  # the same over their UTF-8 bytes
# Whether every secret reads the same inside a JSON string: none holds a character JSON escapes
# (quote, backslash, control characters). See :func:`secrets_survive_json`.
_json_safe = True
_lock = threading.Lock()
REDACTED = "***"


def register_secrets(*secrets: Secret | None) -> None:
    """Remember secret values so :func:`redact` can scrub them from any output."""
    global _ordered, _automaton, _bytes_automaton, _json_safe
    with _lock:
        for s in secrets:
            # Very short values would redact ordinary text; real credentials are long.
            if s is not None and len(s.reveal()) >= 4:
                _secrets.add(s.reveal())
        _ordered = tuple((s, s.encode()) for s in sorted(_secrets, key=len, reverse=True))
        _automaton = (
            AhoCorasick(list(_secrets), implementation=Implementation.DFA) if _secrets else None
        )
        _bytes_automaton = (
            BytesAhoCorasick([b for _, b in _ordered], implementation=Implementation.DFA)
            if _secrets
            else None
        )
        _json_safe = not any(_JSON_ESCAPED.search(s) for s in _secrets)


def redact(text: str) -> str:
    """Replace every registered secret value in ``text``."""
    for s, _ in _ordered:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def secrets_survive_json() -> bool:
    """True when no secret holds a character a JSON encoder escapes (``"``, ``\\``, U+0000 to
    U+001F). JSON escaping maps each character on its own, so then any string holding a secret
    still holds it verbatim once JSON-encoded, and :func:`contains_secret` may scan the JSON
    of a whole record at once (connector/pipeline.py)."""
    return _json_safe


def contains_secret(text: str) -> bool:
    """Whether :func:`redact` would change ``text``: one Aho-Corasick pass (Rust, ahocorasick-rs)
    over ``text`` for all secrets at once. A worker with many accounts holds many secrets and
    every outgoing record is checked; one ``in`` per secret was the worker's top cost (py-spy,
    ``make bench``), ten times this. Any occurrence yields at least one match."""
    automaton = _automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(text))


def contains_secret_utf8(data: bytes) -> bool:
    """:func:`contains_secret` for UTF-8 ``data``, without decoding it (a third cheaper per
    character). The same answer as on the decoded text: a secret's UTF-8 starts with a lead
    byte, so its bytes can only match at a character boundary of valid UTF-8."""
    automaton = _bytes_automaton
    return automaton is not None and bool(automaton.find_matches_as_indexes(data))


def redact_bytes(data: bytes) -> bytes:
    for _, b in _ordered:
        if b in data:
            data = data.replace(b, REDACTED.encode())
    return data
