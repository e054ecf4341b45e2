"""Temporary: the two names ``connector/worker.py`` still imports from here (issue 19).

The accounts code now lives in :mod:`connector.secrets` (Secret, redaction),
:mod:`connector.account` (Account, Accounts) and :mod:`connector.accounts_file`
(load_accounts). worker.py is being split into a package on another branch, which keeps its old
import lines; once that lands and its imports point at the modules above, delete this file.
Nothing else may import it.
"""

from __future__ import annotations

from .account import Accounts
from .accounts_file import load_accounts

__all__ = ["Accounts", "load_accounts"]
