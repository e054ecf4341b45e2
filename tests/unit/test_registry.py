"""The venue registry: descriptors, discovery through CONNECTOR_VENUE_PLUGINS, settings names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.exchanges import registry
from connector.exchanges.bitget import VENUE as BITGET

ROOT = Path(__file__).resolve().parents[2]


def test_registering_the_same_descriptor_twice_is_harmless_and_a_clash_is_an_error() -> None:
    assert registry.register(BITGET) is BITGET
    clash = registry.Venue(
        name="bitget",
        title="Other",
        settings=BITGET.settings,
        credentials=BITGET.credentials,
        create_adapter=BITGET.create_adapter,
    )
    with pytest.raises(ValueError, match="already registered"):
        registry.register(clash)
    with pytest.raises(ValueError, match="lower-case identifier"):
        registry.register(
            registry.Venue(
                name="Bad-Name",
                title="x",
                settings=BITGET.settings,
                credentials=BITGET.credentials,
                create_adapter=BITGET.create_adapter,
            )
        )


def test_venue_settings_are_part_of_the_known_settings() -> None:
    names = registry.setting_names()
    assert {"CONNECTOR_KAFKA_BOOTSTRAP", "CONNECTOR_BITGET_MAX_PAGES"} <= names
    assert "CONNECTOR_ASCENDEX_WS_URL" in names and registry.PLUGINS_ENV in names


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
        check=False,
    )


def test_plugin_modules_are_loaded_from_the_environment() -> None:
    code = "from connector.exchanges import registry; print(','.join(registry.names()))"
    assert _run(code).stdout.strip() == "ascendex,bitget"
    loaded = _run(code, CONNECTOR_VENUE_PLUGINS="tests.toyvenue", PYTHONPATH=str(ROOT))
    assert loaded.stdout.strip() == "ascendex,bitget,toyex"


def test_a_missing_plugin_is_one_configuration_line() -> None:
    code = (
        "from connector.errors import ConfigurationError\n"
        "from connector.exchanges import registry\n"
        "try:\n    registry.venues()\nexcept ConfigurationError as e:\n    print(e)"
    )
    out = _run(code, CONNECTOR_VENUE_PLUGINS="no_such_venue_module").stdout.strip()
    assert (
        out
        == "CONNECTOR_VENUE_PLUGINS: cannot import 'no_such_venue_module' (no_such_venue_module)"
    )
