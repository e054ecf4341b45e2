"""Configuration: bad settings fail at start with one line naming the setting; secrets stay hidden."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connector.accounts_file import load_accounts
from connector.errors import ConfigurationError, UnknownAccount
from connector.exchanges.ascendex.config import AscendexSettings
from connector.exchanges.bitget.config import BitgetSettings
from connector.logs import RedactingFilter, TextFormatter
from connector.secrets import redact
from connector.settings_env import load_settings

YAML = """
accounts:
  desk:
    exchange: ascendex
    api_key: AK-1234567890
    api_secret: AS-very-secret-0987
  follower:
    exchange: Bitget
    api_key: BK-1234567890
    api_secret: BS-very-secret-0987
    passphrase: BP-pass-5555
"""

TOML = """
[accounts.desk]
exchange = "ascendex"
api_key = "AK-toml-123456"
api_secret = "AS-toml-654321"
options = { ws_sign_key = "base64" }
"""


def test_yaml_and_toml_accounts(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    accounts = load_accounts(tmp_path / "a.yaml")
    assert len(accounts) == 2
    assert accounts.get("bitget", "follower").passphrase is not None
    with pytest.raises(UnknownAccount):
        accounts.get("bitget", "desk")  # alias exists, but on another exchange
    (tmp_path / "a.toml").write_text(TOML)
    desk = load_accounts(tmp_path / "a.toml").get("ascendex", "desk")
    assert desk.options == {"ws_sign_key": "base64"}


def test_secrets_never_print(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    account = load_accounts(tmp_path / "a.yaml").get("bitget", "follower")
    for text in (repr(account), str(account.api_secret), repr(account.passphrase), f"{account}"):
        assert "very-secret" not in text and "BP-pass" not in text
    assert redact("sig for BS-very-secret-0987 and BP-pass-5555") == "sig for *** and ***"


def test_log_lines_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    load_accounts(tmp_path / "a.yaml")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "key %s", ("AS-very-secret-0987",), None
    )
    RedactingFilter().filter(record)
    assert "very-secret" not in TextFormatter().format(record)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("accounts:\n  a:\n    exchange: kraken\n    api_key: k\n    api_secret: s\n", "exchange must be one of"),
        ("accounts:\n  a:\n    exchange: bitget\n    api_key: k\n    api_secret: s\n", "passphrase is required"),
        ("accounts:\n  a:\n    exchange: ascendex\n    api_key: k\n", "api_secret is required"),
        ("accounts: [1, 2\n", "not valid YAML/TOML"),
        ("[]", "must map account aliases"),
    ],
)  # fmt: skip
def test_bad_accounts_file_is_one_clear_line(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=match) as info:
        load_accounts(path)
    assert str(info.value).startswith("CONNECTOR_ACCOUNTS_FILE")
    assert "\n" not in str(info.value)


def test_missing_accounts_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_accounts(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CONNECTOR_KAFKA_BOOTSTRAP", "no-port-here"),
        ("CONNECTOR_WORKER_CONCURRENCY", "0"),
        ("CONNECTOR_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("CONNECTOR_REQUEST_TIMEOUT_S", "soon"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith(var + ":")
    assert "\n" not in str(info.value)


def test_defaults_are_the_real_exchanges(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "CONNECTOR_ASCENDEX_REST_URL",
        "CONNECTOR_BITGET_REST_URL",
        "CONNECTOR_KAFKA_BOOTSTRAP",
    ):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert AscendexSettings().rest_url == "https://ascendex.com"
    assert BitgetSettings().rest_url == "https://api.bitget.com"
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.topics == {
        "query-orders": "query-orders", "orders": "orders",
        "order-query-results": "order-query-results", "order-errors": "order-errors",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "exchange: bitget\n    api_key: k-123456\n    api_secret: s-123456\n"
            "    pasphrase: p-123456",
            "account 'acc': pasphrase is not a field of a bitget account",
        ),
        (
            "exchange: ascendex\n    api_key: k-123456\n    api_secret: s-123456\n"
            "    options: {ws_sign_key: rwa}",
            "account 'acc': options.ws_sign_key:",
        ),
        (
            "exchange: bitget\n    api_key: k-123456\n    api_secret: s-123456",
            "account 'acc': passphrase is required",
        ),
    ],
)
def test_accounts_entries_are_validated_by_the_venue_model(
    tmp_path: Path, entry: str, expected: str
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(f"accounts:\n  acc:\n    {entry}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError) as info:
        load_accounts(path)
    message = str(info.value)
    assert message.startswith("CONNECTOR_ACCOUNTS_FILE: ") and expected in message
    assert "\n" not in message
    for value in ("k-123456", "s-123456", "p-123456", "rwa"):
        assert value not in message


def test_duplicate_alias_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    entry = "exchange: ascendex\n    api_key: k-123456\n    api_secret: s-123456\n"
    path.write_text(f"accounts:\n  desk:\n    {entry}  desk:\n    {entry}")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="'desk' is given twice"):
        load_accounts(path)


def test_world_readable_accounts_file_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("desk:\n  exchange: ascendex\n  api_key: k-123456\n  api_secret: s-123456\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="connector.accounts"):
        load_accounts(path)
    assert "readable by group or others" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="connector.accounts"):
        load_accounts(path)
    assert caplog.text == ""


def test_every_mistake_in_the_accounts_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(
        "accounts:\n"
        "  a:\n    exchange: bitget\n    api_key: k-123456\n    api_secret: s-123456\n"
        "    pasphrase: p-123456\n"
        "  b:\n    exchange: kraken\n"
        "  c:\n    exchange: ascendex\n    api_key: k-123456\n"
        "  ok:\n    exchange: ascendex\n    api_key: k-123456\n    api_secret: s-123456\n"
        "  d: just-a-string\n"
        "  e:\n    exchange: ascendex\n    api_secret: s-123456\n    colour: blue\n"
    )
    path.chmod(0o600)
    with pytest.raises(ConfigurationError) as info:
        load_accounts(path)
    assert str(info.value) == (
        "CONNECTOR_ACCOUNTS_FILE: "
        "account 'a': pasphrase is not a field of a bitget account (did you mean passphrase?); "
        "account 'b': exchange must be one of ascendex, bitget; "
        "account 'c': api_secret is required; "
        "account 'd' must be a mapping; "
        "account 'e': colour is not a field of a ascendex account; "
        "account 'e': api_key is required"
    )


def test_placeholder_credentials_are_warned_about_once_per_account(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.yaml"
    example = Path(__file__).parents[2] / "deploy" / "accounts.example.yaml"
    path.write_text(
        example.read_text()
        + "  real:\n    exchange: ascendex\n    api_key: AK-1234567890\n"
        + "    api_secret: AS-very-secret-0987\n"
    )
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="connector.accounts"):
        accounts = load_accounts(path)
    assert len(accounts) == 3  # a warning, not an error: the worker still starts
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "CONNECTOR_ACCOUNTS_FILE: account 'desk-a' has placeholder credentials (api_key, "
        "api_secret): the venue will reject them until they are replaced with the account's "
        "real ones",
        "CONNECTOR_ACCOUNTS_FILE: account 'follower-1' has placeholder credentials (api_key, "
        "api_secret, passphrase): the venue will reject them until they are replaced with the "
        "account's real ones",
    ]
