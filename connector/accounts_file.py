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
``SecretStr``), so a misspelt field fails at start; every mistake in the file is reported in the
one ConfigurationError line, not only the first. A duplicate alias fails too; a file that others
can read, and an account still holding the example file's ``REPLACE_WITH_...`` placeholders, log
a warning.

A top-level mapping without the ``accounts:`` wrapper is accepted too.

The loader is apart from the models (:mod:`connector.account`) because it needs the venue
registry (each venue's credentials model), and venue code needs the models.
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

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
    accounts: list[Account] = []
    problems: list[str] = []
    disabled = registry.disabled_names()
    for alias, entry in data.items():
        if isinstance(entry, dict) and str(entry.get("exchange", "")).lower() in disabled:
            # A switched-off venue's accounts are not read at all (its commands are answered
            # VENUE_DISABLED before any account lookup): a desk can keep them in the file.
            log.info("%s: account %r skipped: its venue is disabled", setting, str(alias))
            continue
        account, wrong = _parse_entry(str(alias), entry)
        problems += wrong
        if account is not None:
            accounts.append(account)
    if problems:  # every mistake at once: fixing a file one error per restart is slow
        raise ConfigurationError(f"{setting}: " + "; ".join(problems))
    return Accounts(accounts)


#: How the example accounts file (deploy/accounts.example.yaml) marks a value to fill in.
PLACEHOLDER = "REPLACE_WITH_"


def _parse_entry(alias: str, entry: Any) -> tuple[Account | None, list[str]]:
    """Validate one entry with its venue's credentials model: the account, or what is wrong
    with it (each problem names the alias and the field, never a value: it may be a secret)."""
    where = f"account {alias!r}"
    if not isinstance(entry, dict):
        return None, [f"{where} must be a mapping"]
    name = str(entry.get("exchange", "")).lower()
    venue = registry.get(name) if name else None
    if venue is None:
        known = ", ".join(registry.names())
        return None, [f"{where}: exchange must be one of {known}"]
    try:
        creds = venue.credentials.model_validate({**entry, "exchange": name})
    except ValidationError as exc:
        return None, [f"{where}: {problem}" for problem in _field_problems(exc, name)]
    secrets = [Secret(s.get_secret_value()) for s in creds.secrets()]
    empty = [
        f"{where}: {field_name} is required"
        for field_name, secret in zip(("api_key", "api_secret"), secrets, strict=False)
        if not secret
    ]
    if empty:
        return None, empty
    placeholders = [
        field_name
        for field_name, value in creds
        if isinstance(value, SecretStr)
        and value.get_secret_value().strip().upper().startswith(PLACEHOLDER)
    ]
    if placeholders:
        log.warning(
            "%s: %s has placeholder credentials (%s): the venue will reject them until they are "
            "replaced with the account's real ones",
            SETTING,
            where,
            ", ".join(placeholders),
        )
    passphrase = getattr(creds, "passphrase", None)
    account = Account(
        alias=alias,
        exchange=name,
        api_key=secrets[0],
        api_secret=secrets[1],
        passphrase=Secret(passphrase.get_secret_value()) if passphrase is not None else None,
        options=creds.option_values(),
    )
    return account, []


def _field_problems(exc: ValidationError, venue: str) -> list[str]:
    """One phrase per field the venue's model rejected. A misspelt field also makes the real
    one missing: that is one mistake, named once, with the spelling that was meant."""
    errors = exc.errors()
    missing = [_field(e) for e in errors if e["type"] == "missing"]
    problems: list[str] = []
    meant: set[str] = set()
    for err in errors:
        field_name = _field(err)
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field_name, [m for m in missing if m not in meant], 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            meant.update(close)
            problems.append(f"{field_name} is not a field of a {venue} account{hint}")
    for err in errors:
        field_name = _field(err)
        if err["type"] == "missing" and field_name not in meant:
            problems.append(f"{field_name} is required")
        elif err["type"] not in ("missing", "extra_forbidden"):
            problems.append(f"{field_name}: {err['msg']}")
    return problems


def _field(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "entry"
