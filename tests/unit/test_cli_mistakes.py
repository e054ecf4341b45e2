"""Operator mistakes end in one clear stderr line and a non-zero exit, run as a user runs them
(the real ``connector`` process): the line names the setting and never shows a secret."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SECRET = "TOPSECRET-pw-4242"


def run(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other process already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def accounts_file(tmp_path: Path) -> str:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        f"accounts:\n  demo:\n    exchange: ascendex\n    api_key: k-{SECRET}\n"
        f"    api_secret: s-{SECRET}\n"
    )
    path.chmod(0o600)
    return str(path)


def test_missing_tls_ca_file_names_the_setting_and_file() -> None:
    result = run(
        ["worker"],
        CONNECTOR_KAFKA_SECURITY_PROTOCOL="SSL",
        CONNECTOR_KAFKA_SSL_CAFILE="/nonexistent/ca.pem",
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "CONNECTOR_KAFKA_SSL_CAFILE" in line and "/nonexistent/ca.pem" in line


def test_missing_tls_cert_and_key_files_are_both_named() -> None:
    result = run(
        ["worker"],
        CONNECTOR_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
        CONNECTOR_KAFKA_SASL_USERNAME="u",
        CONNECTOR_KAFKA_SASL_PASSWORD=SECRET,
        CONNECTOR_KAFKA_SSL_CERTFILE="/nonexistent/cert.pem",
        CONNECTOR_KAFKA_SSL_KEYFILE="/nonexistent/key.pem",
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "CONNECTOR_KAFKA_SSL_CERTFILE" in line and "CONNECTOR_KAFKA_SSL_KEYFILE" in line


def test_invalid_tls_file_is_one_line(tmp_path: Path, accounts_file: str) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    result = run(
        ["worker"],
        CONNECTOR_ACCOUNTS_FILE=accounts_file,
        CONNECTOR_KAFKA_SECURITY_PROTOCOL="SSL",
        CONNECTOR_KAFKA_SSL_CAFILE=str(bad),
    )
    assert result.returncode == 2
    assert "CONNECTOR_KAFKA_SSL_CAFILE" in one_line(result)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"CONNECTOR_KAFKA_SASL_PASSWORD": SECRET}, "CONNECTOR_KAFKA_SASL_USERNAME"),
        ({"CONNECTOR_KAFKA_SASL_USERNAME": "svc"}, "CONNECTOR_KAFKA_SASL_PASSWORD"),
    ],
)
def test_sasl_without_username_or_password(env: dict[str, str], missing: str) -> None:
    result = run(["worker"], CONNECTOR_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", **env)
    assert result.returncode == 2
    assert missing in one_line(result)


def test_web_port_in_use(listening: int, closed_port: int, accounts_file: str) -> None:
    result = run(
        ["worker"],
        CONNECTOR_ACCOUNTS_FILE=accounts_file,
        CONNECTOR_WEB_HOST="127.0.0.1",
        CONNECTOR_WEB_PORT=str(listening),
        CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}",
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "CONNECTOR_WEB_PORT" in line and str(listening) in line


def test_broker_on_a_port_in_use_fails_instead_of_reporting_ready(listening: int) -> None:
    result = run(["broker"], CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{listening}")
    assert result.returncode == 2
    assert "CONNECTOR_KAFKA_BOOTSTRAP" in one_line(result)
    assert "ready" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["query", "--exchange", "ascendex", "--account", "demo", "--wait"],
        ["query", "--exchange", "bitget", "--account", "demo"],
        ["tail", "results"],
        ["state", "--exchange", "ascendex", "--account", "demo"],
    ],
    ids=["query-wait", "query", "tail", "state"],
)
def test_client_commands_without_a_broker(args: list[str], closed_port: int) -> None:
    result = run(
        [*args, "--connect-timeout", "0.5"],
        CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}",
        CONNECTOR_KAFKA_SASL_PASSWORD=SECRET,
    )
    assert result.returncode == 3
    line = one_line(result)
    assert "CONNECTOR_KAFKA_BOOTSTRAP" in line and str(closed_port) in line
    assert result.stdout == ""


def test_every_bad_variable_is_reported_in_one_line() -> None:
    result = run(
        ["worker"],
        CONNECTOR_WORKER_CONCURRENCY="0",
        CONNECTOR_SCHEMA_REGISTRY_URL="ftp://registry",
        CONNECTOR_BITGET_REST_URL="api.bitget.com",
        CONNECTOR_ASCENDEX_WS_URL="https://ascendex.com",
        CONNECTOR_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        CONNECTOR_KAFKA_SASL_PASSWORD=SECRET,
    )
    assert result.returncode == 2
    line = one_line(result)
    for name in (
        "CONNECTOR_WORKER_CONCURRENCY",
        "CONNECTOR_SCHEMA_REGISTRY_URL",
        "CONNECTOR_BITGET_REST_URL",
        "CONNECTOR_ASCENDEX_WS_URL",
        "CONNECTOR_KAFKA_SASL_USERNAME",
    ):
        assert name in line, name
    assert "api.bitget.com" not in line  # values are not echoed (a URL may carry credentials)


def test_url_with_credentials_is_not_echoed() -> None:
    result = run(["worker"], CONNECTOR_SCHEMA_REGISTRY_URL=f"registry://user:{SECRET}@host")
    assert result.returncode == 2
    assert "CONNECTOR_SCHEMA_REGISTRY_URL" in one_line(result)


def test_misspelt_variable_is_warned_about_with_a_suggestion(closed_port: int) -> None:
    result = run(
        ["tail", "results", "--connect-timeout", "0.2"],
        CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}",
        CONNECTOR_KAFKA_BOOTSTRAPP="elsewhere:9092",
        CONNECTOR_BITGET_PAGE_SIZE="20",  # a venue's own setting: known, no warning
        CONNECTOR_LOG_FORMAT="text",
    )
    warnings = [line for line in result.stderr.splitlines() if "unknown setting" in line]
    assert len(warnings) == 1, result.stderr
    assert "CONNECTOR_KAFKA_BOOTSTRAPP" in warnings[0]
    assert "did you mean CONNECTOR_KAFKA_BOOTSTRAP?" in warnings[0]


def test_log_level_is_case_insensitive(listening: int) -> None:
    result = run(
        ["broker"], CONNECTOR_LOG_LEVEL="debug", CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{listening}"
    )
    assert "CONNECTOR_LOG_LEVEL" not in result.stderr
    assert result.returncode == 2  # got as far as the port check, past the settings


def test_version() -> None:
    from importlib.metadata import version

    result = run(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"connector, version {version('exchange-order-connector')}"


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ("worker", ["CONNECTOR_ACCOUNTS_FILE (unset)", "CONNECTOR_WEB_PORT (6066)",
                    "CONNECTOR_BITGET_REST_URL (https://api.bitget.com)"]),
        ("broker", ["CONNECTOR_KAFKA_BOOTSTRAP (localhost:9092)", "CONNECTOR_TOPIC_STATE"]),
        ("query", ["CONNECTOR_KAFKA_BOOTSTRAP (localhost:9092)",
                   "CONNECTOR_TOPIC_QUERY_ORDERS (query-orders)", "[ascendex|bitget]",
                   "--deadline", "summary"]),
        ("tail", ["CONNECTOR_TOPIC_STATE (open-orders)", "--request-id", "commands"]),
        ("state", ["CONNECTOR_TOPIC_STATE (open-orders)"]),
        ("sandbox", ["VENUE=PORT", "CONNECTOR_LOG_LEVEL (INFO)"]),
    ],
)  # fmt: skip
def test_help_lists_the_variables_each_command_reads(command: str, variables: list[str]) -> None:
    result = run([command, "--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for v in variables:
        assert v in text, v


def test_unknown_exchange_lists_the_choices() -> None:
    result = run(["query", "--exchange", "binance", "--account", "a"])
    assert result.returncode == 2
    assert "ascendex, bitget" in result.stderr


def test_plugin_venue_settings_are_known_and_validated(closed_port: int) -> None:
    """A plugin venue's own variables are not warned about, and are validated with the rest."""
    result = run(
        ["tail", "results", "--connect-timeout", "0.2"],
        CONNECTOR_VENUE_PLUGINS="tests.toyvenue",
        CONNECTOR_TOYEX_REST_URL="http://127.0.0.1:1",
        CONNECTOR_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}",
        CONNECTOR_LOG_FORMAT="text",
    )
    assert "unknown setting" not in result.stderr
    assert result.returncode == 3
    bad = run(
        ["worker"],
        CONNECTOR_VENUE_PLUGINS="tests.toyvenue",
        CONNECTOR_WORKER_CONCURRENCY="-1",
    )
    assert bad.returncode == 2
    line = one_line(bad)
    assert "CONNECTOR_WORKER_CONCURRENCY" in line


def test_unimportable_venue_plugin_is_one_line() -> None:
    result = run(["worker"], CONNECTOR_VENUE_PLUGINS="no_such_venue_module")
    assert result.returncode == 2
    line = one_line(result)
    assert "CONNECTOR_VENUE_PLUGINS" in line and "no_such_venue_module" in line
