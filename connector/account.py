"""A configured account (alias, venue, credentials) and the set of them, as plain values.

Commands name accounts by alias only, so credentials live in exactly one place, the accounts
file; :mod:`connector.accounts_file` reads it into the :class:`Accounts` defined here. The models
are apart from the loader so that venue code (which takes an :class:`Account`) does not depend
on the loader, which depends on the venue registry: that was an import cycle.

A leaf module: it imports only other leaves (:mod:`connector.secrets`, :mod:`connector.errors`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownAccount
from .secrets import Secret, register_secrets


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
            hint = self._hint(exchange, alias)
            raise UnknownAccount(f"no {exchange} account with alias {alias!r} is configured{hint}")
        return account

    def _hint(self, exchange: str, alias: str) -> str:
        """What the sender most likely meant: the venue the alias belongs to, or the closest
        aliases of the venue asked for. Aliases are names, not secrets (commands carry them in
        the clear, and the worker's ready line lists them)."""
        other = self._by_alias.get(alias)
        if other is not None:
            return f"; {alias!r} is a {other.exchange} account"
        same = [a.alias for a in self._by_alias.values() if a.exchange == exchange]
        close = difflib.get_close_matches(alias, same, n=3, cutoff=0.6)
        if not close:
            return ""
        return "; did you mean " + " or ".join(repr(name) for name in close) + "?"

    def __iter__(self) -> Any:
        return iter(self._by_alias.values())

    def __len__(self) -> int:
        return len(self._by_alias)
