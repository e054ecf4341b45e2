"""Shared helpers for the deployment tests (Dockerfile, docker-compose.yml, Helm chart).

Everything here runs offline: the Compose schema is vendored, Helm runs in-process through
helm-python-sdk's bundled libhelm_c (Helm's Go SDK behind a C ABI; no helm binary, no
network), and kubernetes-validate ships the Kubernetes OpenAPI schemas in its wheel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.exchanges import registry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_TESTS = Path(__file__).resolve().parent
CHART = ROOT / "helm" / "exchange-order-connector"
VALUES_DIR = DEPLOY_TESTS / "values"

#: Every CONNECTOR_* variable the worker understands: core Settings and each venue's settings.
SETTINGS_ENV = registry.setting_names()

#: Variable-name fragments that mark a secret; such variables must never carry inline values.
SECRET_NAME_MARKERS = ("PASSWORD", "SECRET", "PASSPHRASE", "API_KEY", "TOKEN", "PRIVATE_KEY")


@pytest.fixture(scope="session")
def settings_env() -> frozenset[str]:
    return SETTINGS_ENV
