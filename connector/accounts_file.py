"""Loading the accounts file: alias -> exchange credentials, read once at start.

Commands name accounts by alias only, so credentials live in exactly one place: this file (or
the Secret it is mounted from). Every secret loaded here is also registered with
:func:`connector.secrets.redact` (by :class:`~connector.account.Accounts`), the last line of
defence that scrubs secrets from anything the connector writes out.

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

The loader is apart from the models (:mod:`connector.account`) because it needs the venue
registry (each venue's credentials model), and venue code needs the models.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .account import Account, Accounts
from .errors import ConfigurationError
from .exchanges import registry
from .secrets import Secret

# The logger keeps its name from before the loader had a module of its own: operators filter
# the JSON logs by it.
log = logging.getLogger("connector.accounts")


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
    disabled = registry.disabled_names()
    for alias, entry in data.items():
        if isinstance(entry, dict) and str(entry.get("exchange", "")).lower() in disabled:
            # A switched-off venue's accounts are not read at all (its commands are answered
            # VENUE_DISABLED before any account lookup): a desk can keep them in the file.
            log.info("%s: account %r skipped: its venue is disabled", setting, str(alias))
            continue
        accounts.append(_parse_entry(str(alias), entry, setting))
    return Accounts(accounts)


def _parse_entry(alias: str, entry: Any, setting: str) -> Account:
    """Validate one entry with its venue's credentials model. Errors name the alias and the
    field, never a value (the value may be a secret)."""
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
