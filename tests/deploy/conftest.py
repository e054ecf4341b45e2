"""Shared helpers for the deployment tests (Dockerfile, docker-compose.yml, Helm chart).

Everything here runs offline: the Compose schema is vendored, Helm runs in-process through
helm-python-sdk's bundled libhelm_c (Helm's Go SDK behind a C ABI; no helm binary, no
network), and kubernetes-validate ships the Kubernetes OpenAPI schemas in its wheel.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from connector.exchanges import registry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_TESTS = Path(__file__).resolve().parent
CHART = ROOT / "helm" / "exchange-order-connector"
VALUES_DIR = DEPLOY_TESTS / "values"
RELEASE = "rel"
NAMESPACE = "trading"

#: Every CONNECTOR_* variable the worker understands: core Settings and each venue's settings.
SETTINGS_ENV = registry.setting_names()

#: Variable-name fragments that mark a secret; such variables must never carry inline values.
SECRET_NAME_MARKERS = ("PASSWORD", "SECRET", "PASSPHRASE", "API_KEY", "TOKEN", "PRIVATE_KEY")


@pytest.fixture(scope="session")
def settings_env() -> frozenset[str]:
    return SETTINGS_ENV


# --- Helm rendering, shared by the chart and monitoring tests ---------------------------------


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged into a copy of ``base`` (Helm's own values merge)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest the chart renders with ``values`` (NOTES.txt left out)."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]
