"""AscendEX request signing.

Both transports sign ``f"{timestamp}+{path}"`` with HMAC-SHA256 and send the base64 digest. The
REST prehash path for account info is ``info``; the WebSocket one is ``v2/stream``.

Which *key* the HMAC uses is where public sources disagree. The REST documentation's worked
example (ts ``1608133910000``, path ``info``) reproduces only with the secret's UTF-8 bytes, so
REST always signs with the raw secret. For the WebSocket, AscendEX's own shell example uses the raw
secret while its Python WebSocket example, AscendEX's own futures v2 demo client and ccxt pro
base64-decode it first, and ccxt pro's users report live sessions authenticating that way. The
WebSocket therefore signs with the base64-decoded secret by default; an account can switch to the
raw secret with ``Account.options["ws_sign_key"] = "raw"`` (see the README's AscendEX notes).

Nothing in this module ever formats a secret into a string that leaves it: errors name the
setting, never its value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum

from ...account import Account
from ...errors import AuthFailed

REST_INFO_PATH = "info"
WS_STREAM_PATH = "v2/stream"
WS_SIGN_KEY_OPTION = "ws_sign_key"


class SignKey(StrEnum):
    """How the API secret becomes the HMAC key."""

    RAW = "raw"
    BASE64 = "base64"


def hmac_key(secret: str, mode: SignKey) -> bytes:
    """The HMAC key bytes for ``secret``; a secret that is not base64 cannot use BASE64 mode."""
    if mode is SignKey.RAW:
        return secret.encode("utf-8")
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        # The secret itself must not appear in the message, nor in a chained exception.
        raise AuthFailed(
            f"api secret is not valid base64, so {WS_SIGN_KEY_OPTION}=base64 cannot be used",
            retryable=False,
        ) from None


def sign(secret: str, timestamp_ms: int, path: str, mode: SignKey = SignKey.RAW) -> str:
    """base64(HMAC-SHA256(key, f"{timestamp}+{path}")), AscendEX's one signature scheme."""
    message = f"{timestamp_ms}+{path}".encode()
    digest = hmac.new(hmac_key(secret, mode), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_headers(api_key: str, secret: str, timestamp_ms: int, path: str) -> dict[str, str]:
    """Headers of a signed REST request (REST always signs with the raw secret, see module doc)."""
    return {
        "x-auth-key": api_key,
        "x-auth-timestamp": str(timestamp_ms),
        "x-auth-signature": sign(secret, timestamp_ms, path, SignKey.RAW),
    }


def ws_auth_message(
    api_key: str, secret: str, timestamp_ms: int, request_id: str, mode: SignKey
) -> dict[str, object]:
    """The ``op: auth`` frame; callers must never log it (it carries the key and a signature)."""
    return {
        "op": "auth",
        "id": request_id,
        "t": timestamp_ms,
        "key": api_key,
        "sig": sign(secret, timestamp_ms, WS_STREAM_PATH, mode),
    }


def ws_sign_key(account: Account) -> SignKey:
    """The account's WebSocket signing mode; an unknown value fails the command, not the worker."""
    return parse_sign_key(account.options, account.alias)


def parse_sign_key(options: Mapping[str, str], alias: str) -> SignKey:
    value = str(options.get(WS_SIGN_KEY_OPTION, SignKey.BASE64.value)).strip().lower()
    try:
        return SignKey(value)
    except ValueError:
        allowed = ", ".join(m.value for m in SignKey)
        raise AuthFailed(
            f"account {alias!r}: options.{WS_SIGN_KEY_OPTION} must be one of {allowed}",
            retryable=False,
        ) from None
