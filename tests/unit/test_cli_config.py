"""The command line fails fast, with one line naming the setting, on bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CONNECTOR_WORKER_CONCURRENCY": "0"}, "CONNECTOR_WORKER_CONCURRENCY"),
        ({"CONNECTOR_KAFKA_BOOTSTRAP": "nohost"}, "CONNECTOR_KAFKA_BOOTSTRAP"),
        ({}, "CONNECTOR_ACCOUNTS_FILE"),
        ({"CONNECTOR_ACCOUNTS_FILE": "/nonexistent/accounts.yaml"}, "CONNECTOR_ACCOUNTS_FILE"),
    ],
)
def test_worker_refuses_bad_configuration_in_one_line(env: dict[str, str], setting: str) -> None:
    result = run(["worker"], **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], result.stderr


def test_bad_secret_file_does_not_echo_its_content(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "accounts:\n  a:\n    exchange: ascendex\n    api_key: TOPSECRETKEY123\n    api_secret: [unclosed\n"
    )
    result = run(["worker"], CONNECTOR_ACCOUNTS_FILE=str(path))
    assert result.returncode == 2
    assert "TOPSECRETKEY123" not in result.stderr + result.stdout


def test_help_lists_every_command() -> None:
    result = run(["--help"])
    for command in ("worker", "broker", "sandbox", "query", "tail"):
        assert command in result.stdout
