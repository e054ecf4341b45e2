"""/status and the observability additions, without a broker: redaction of every secret
setting, per-venue health gauges, the clock-offset gauge, build info, and Faust's sensor
metrics served from the same registry as ours (no duplicate registration with two apps)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from faust.sensors.prometheus import PrometheusMonitor
from prometheus_client import generate_latest
from pydantic import SecretStr

from connector import metrics
from connector.account import Account, Accounts
from connector.resilience.clock import ServerClock
from connector.secrets import Secret
from connector.settings import Settings
from connector.status import REDACTED, VenueHealth, redacted
from connector.version import __version__
from connector.worker import Connector

KAFKA_PASSWORD = "kafka-pw-5f1e9c"
REGISTRY_SECRET = "registry-secret-77ab31"
API_KEY = "key-acc0unt-9d1b"
API_SECRET = "secret-acc0unt-c2e4"
PASSPHRASE = "pass-acc0unt-3a7f"


def sample(name: str, **labels: str) -> float | None:
    text = generate_latest().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return None


def test_redacted_shows_every_setting_and_no_secret() -> None:
    s = Settings(
        kafka_sasl_password=KAFKA_PASSWORD,
        schema_registry_basic_auth_user_info=SecretStr(f"user:{REGISTRY_SECRET}"),
    )
    out = redacted(s)
    assert set(out) == set(Settings.model_fields)
    assert out["kafka_sasl_password"] == REDACTED
    assert out["schema_registry_basic_auth_user_info"] == REDACTED
    assert out["kafka_sasl_username"] is None  # unset stays visibly unset
    assert out["app_id"] == s.app_id and out["worker_concurrency"] == s.worker_concurrency
    text = json.dumps(out)
    assert KAFKA_PASSWORD not in text and REGISTRY_SECRET not in text


def test_venue_health_counts_only_venue_failures() -> None:
    health = VenueHealth(["toyhealth"])
    assert sample("connector_exchange_consecutive_failures", exchange="toyhealth") == 0
    health.record("toyhealth", False, "EXCHANGE_UNAVAILABLE")
    health.record("toyhealth", False, "TIMEOUT")
    health.record("toyhealth", False, "UNKNOWN_ACCOUNT")  # the caller's problem, not the venue's
    assert sample("connector_exchange_consecutive_failures", exchange="toyhealth") == 2
    assert sample("connector_exchange_last_success_timestamp_seconds", exchange="toyhealth") is None
    health.record("toyhealth", True, None)
    assert sample("connector_exchange_consecutive_failures", exchange="toyhealth") == 0
    assert sample("connector_exchange_last_success_timestamp_seconds", exchange="toyhealth")
    health.record("not-a-venue", False, "TIMEOUT")  # labels stay bounded to the registry
    assert sample("connector_exchange_consecutive_failures", exchange="not-a-venue") is None


async def test_clock_offset_is_a_gauge() -> None:
    async def source(deadline: float) -> int:
        return 0

    clock = ServerClock(source, venue="toyclock")
    clock.set_offset(-1500)
    assert sample("connector_exchange_clock_offset_seconds", exchange="toyclock") == -1.5


def test_build_info_carries_the_version() -> None:
    assert __version__ != ""
    assert sample("connector_build_info", version=__version__) == 1


def accounts() -> Accounts:
    return Accounts(
        [
            Account(
                "acct-one",
                "ascendex",
                Secret(API_KEY),
                Secret(API_SECRET),
                Secret(PASSPHRASE),
            )
        ]
    )


def test_faust_sensor_metrics_share_the_registry(tmp_path: Any) -> None:
    settings = Settings(data_dir=str(tmp_path), app_id="status-test.app")
    first = Connector(settings, Accounts([]), {})
    second = Connector(settings, Accounts([]), {})  # no duplicate-registration error
    assert isinstance(first.app.monitor, PrometheusMonitor)
    assert second.app.monitor._metrics is first.app.monitor._metrics
    text = generate_latest().decode()
    assert "# TYPE status_test_app_total_rebalances gauge" in text
    assert "# TYPE status_test_app_consumer_commit_latency histogram" in text
    assert "# TYPE connector_commands_total counter" in text


async def test_status_document(tmp_path: Any) -> None:
    c = Connector(
        Settings(
            data_dir=str(tmp_path),
            kafka_sasl_password=KAFKA_PASSWORD,
            schema_registry_basic_auth_user_info=SecretStr(f"user:{REGISTRY_SECRET}"),
        ),
        accounts(),
        {"ascendex": object()},  # type: ignore[dict-item]
    )
    metrics.EXCHANGE_SESSIONS_OPEN.labels("ascendex", "g1").set(2)
    metrics.API_KEY_EXPIRY.labels("ascendex", "acct-one").set(1_900_000_000)
    metrics.EXCHANGE_CLOCK_OFFSET.labels("ascendex").set(0.25)
    c.venue_health.record("ascendex", False, "TIMEOUT")
    await asyncio.sleep(0)
    doc = c.health.status()
    assert doc["version"] == __version__
    assert doc["configuration"]["kafka_sasl_password"] == REDACTED
    venue = doc["venues"]["ascendex"]
    assert venue["accounts"] == ["acct-one"]
    # The gauges are process-wide: other tests may have left series for other groups/accounts.
    assert venue["sessions_open"]["g1"] == 2
    assert venue["api_key_expiry_s"]["acct-one"] == 1_900_000_000
    assert venue["clock_offset_s"] == 0.25
    assert venue["consecutive_failures"] == 1
    assert "configuration" in venue  # the venue's own CONNECTOR_<VENUE>_* settings
    text = json.dumps(doc)
    for secret in (KAFKA_PASSWORD, REGISTRY_SECRET, API_KEY, API_SECRET, PASSPHRASE):
        assert secret not in text


def test_one_version_everywhere() -> None:
    """--version, /status and connector_build_info read the one ``__version__``; from an
    installed tree it is the distribution's version."""
    from importlib.metadata import version

    assert __version__ == version("exchange-order-connector")
    assert sample("connector_build_info", version=__version__) == 1
