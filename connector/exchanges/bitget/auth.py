"""Bitget request signing (HMAC-SHA256, base64), as documented at /api-doc/common/signature.

Bitget signs ``timestamp + METHOD + requestPath + "?" + queryString + body``. The server checks
the bytes it received, so the query string signed here must be *exactly* the one put on the
wire: :func:`build_query` fixes the parameter order and the percent-encoding, and the HTTP client
sends that very string instead of letting httpx rebuild it from a dict.

Secrets are passed in only at the moment of signing and are never stored on an object with a
repr, so they cannot leak through logs or tracebacks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import quote

from ...secrets import Secret

HEADER_KEY = "ACCESS-KEY"
HEADER_SIGN = "ACCESS-SIGN"
HEADER_PASSPHRASE = "ACCESS-PASSPHRASE"  # noqa: S105 - a header name, not a secret
HEADER_TIMESTAMP = "ACCESS-TIMESTAMP"
HEADER_LOCALE = "locale"
LOCALE = "en-US"


def build_query(params: Sequence[tuple[str, str]]) -> str:
    """Encode parameters in the given order, RFC 3986 style (``%20``, never ``+``).

    Order is the caller's, not sorted: Bitget does not require sorting, and keeping the
    caller's order makes the signed string predictable from the code that builds it.
    """
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


def prehash(timestamp: str, method: str, request_path: str, query: str = "", body: str = "") -> str:
    """The exact string Bitget signs; ``?`` only appears when there is a query string."""
    path = f"{request_path}?{query}" if query else request_path
    return f"{timestamp}{method.upper()}{path}{body}"


def sign(
    secret: Secret | str,
    timestamp: str,
    method: str,
    request_path: str,
    query: str = "",
    body: str = "",
) -> str:
    """base64(HMAC-SHA256(secret, prehash)); accepts a plain str so the simulator can reuse it."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    digest = hmac.new(
        key.encode("utf-8"),
        prehash(timestamp, method, request_path, query, body).encode("utf-8"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(
    *,
    api_key: Secret,
    api_secret: Secret,
    passphrase: Secret,
    timestamp: str,
    method: str,
    request_path: str,
    query: str = "",
    body: str = "",
) -> dict[str, str]:
    """The five authentication headers for one request."""
    return {
        HEADER_KEY: api_key.reveal(),
        HEADER_SIGN: sign(api_secret, timestamp, method, request_path, query, body),
        HEADER_PASSPHRASE: passphrase.reveal(),
        HEADER_TIMESTAMP: timestamp,
        HEADER_LOCALE: LOCALE,
        "Content-Type": "application/json",
    }
