"""ToyEx signing: hex HMAC-SHA256 of ``timestamp + path + query`` with the secret."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str, path: str, query: str) -> str:
    return hmac.new(
        secret.encode(), f"{timestamp}{path}?{query}".encode(), hashlib.sha256
    ).hexdigest()
