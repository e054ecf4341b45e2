"""Known-answer tests for AscendEX signing.

Expected values were computed outside this code base: the REST one is the worked example printed
in AscendEX's documentation ("Sign a Request"); the WebSocket ones were produced with
``openssl dgst -sha256 -hmac`` (raw key) and ``-macopt hexkey:`` of the base64-decoded secret.
"""

from __future__ import annotations

import pytest

from connector.account import Account
from connector.errors import AuthFailed
from connector.exchanges.ascendex.auth import (
    SignKey,
    rest_headers,
    sign,
    ws_auth_message,
    ws_sign_key,
)
from connector.secrets import Secret

DOC_REST_SECRET = "hV8FgjyJtpvVeAcMAgzgAFQCN36wmbWuN7o3WPcYcYhFd8qvE43gzFGVsFcCqMNk"
DOC_WS_SECRET = "etvbsuZQafiECVdDb29PpwhzhWSf47kDpGxT8Fa7eZMjdGsUAQGHVudpt7S3ZY5w"
TS = 1608133910000


def test_rest_signature_matches_documentation_example() -> None:
    assert sign(DOC_REST_SECRET, TS, "info") == "/pwaAgWZQ1Xd/J4yZ4ReHSPQxd3ORP/YR8TvAttqqYM="


def test_rest_headers_use_raw_secret_and_info_path() -> None:
    headers = rest_headers("CEcrjGyipqt0OflgdQQSRGdrDXdDUY2x", DOC_REST_SECRET, TS, "info")
    assert headers == {
        "x-auth-key": "CEcrjGyipqt0OflgdQQSRGdrDXdDUY2x",
        "x-auth-timestamp": "1608133910000",
        "x-auth-signature": "/pwaAgWZQ1Xd/J4yZ4ReHSPQxd3ORP/YR8TvAttqqYM=",
    }


def test_ws_signature_raw_key() -> None:
    assert (
        sign(DOC_WS_SECRET, TS, "v2/stream", SignKey.RAW)
        == "grBBB5x4G8jnKlMmBtrrAUbWgV8lKPbKhavlNIDVJ5E="
    )


def test_ws_signature_base64_key() -> None:
    assert (
        sign(DOC_WS_SECRET, TS, "v2/stream", SignKey.BASE64)
        == "hUYrgUCdkJop/iSY2/sq/oHhWBo9ZDgLnSEQEdB+ugg="
    )


def test_ws_auth_message_shape() -> None:
    msg = ws_auth_message("2pJkaH37i4wrVAMmFNoASVNCu4INP5F9", DOC_WS_SECRET, TS, "a1", SignKey.RAW)
    assert msg == {
        "op": "auth",
        "id": "a1",
        "t": TS,
        "key": "2pJkaH37i4wrVAMmFNoASVNCu4INP5F9",
        "sig": "grBBB5x4G8jnKlMmBtrrAUbWgV8lKPbKhavlNIDVJ5E=",
    }


def _account(options: dict[str, str], secret: str = DOC_WS_SECRET) -> Account:
    return Account(
        alias="desk",
        exchange="ascendex",
        api_key=Secret("k" * 32),
        api_secret=Secret(secret),
        options=options,
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, SignKey.BASE64),
        ({"ws_sign_key": "raw"}, SignKey.RAW),
        ({"ws_sign_key": "BASE64"}, SignKey.BASE64),
    ],
)
def test_ws_sign_key_option(options: dict[str, str], expected: SignKey) -> None:
    assert ws_sign_key(_account(options)) is expected


def test_bad_ws_sign_key_option_is_auth_failure_naming_the_setting() -> None:
    with pytest.raises(AuthFailed, match="ws_sign_key"):
        ws_sign_key(_account({"ws_sign_key": "hex"}))


def test_base64_mode_with_undecodable_secret_does_not_echo_the_secret() -> None:
    secret = "not*base64*at*all*but*secret!"
    with pytest.raises(AuthFailed) as info:
        sign(secret, TS, "v2/stream", SignKey.BASE64)
    assert secret not in str(info.value)
    # raised "from None": no chained exception can carry the decoder's view of the secret
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
