"""Bitget's rate limit: 5 requests per second per *user ID* on the copy-trading endpoints (the
current doc; the older one said 10), ``CONNECTOR_BITGET_RATE_LIMIT_PER_S``.

The limiter itself is the shared :class:`~connector.resilience.SlidingWindowLimiter`; what is
Bitget's is the key. Accounts sharing a UID must share a limiter, and the UID is not something
the API key reveals, so an account may declare it in ``options: {uid: ...}``; otherwise the key
itself identifies the user. The key is hashed so the registry never holds a credential.
"""

from __future__ import annotations

import hashlib

from ...account import Account


def limiter_key(account: Account) -> str:
    uid = account.options.get("uid")
    if uid:
        return f"uid:{uid}"
    return "key:" + hashlib.sha256(account.api_key.reveal().encode()).hexdigest()[:24]
