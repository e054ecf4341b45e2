"""docker-compose.yml: valid per the Compose Specification, and wired the way the worker needs.

The schema is vendored (tests/deploy/compose-spec.json, see README.md there); `docker compose
config` itself cannot run here (no Docker daemon / compose plugin), so interpolation is modelled
below for the ${VAR:-default} forms the file uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import DEPLOY_TESTS, ROOT, SECRET_NAME_MARKERS, SETTINGS_ENV

COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKERS = ("connector", "connector-sandbox")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def interpolate(value: Any) -> Any:
    """Resolve ${VAR:-default} / ${VAR-default} to the default (empty environment)."""
    if isinstance(value, str):
        return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)
    return value


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def dependencies(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def test_validates_against_the_compose_specification(compose):
    schema = json.loads((DEPLOY_TESTS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_is_not_vacuous(compose):
    schema = json.loads((DEPLOY_TESTS / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["depends_on"] = {"kafka-init": {"condition": "when_ready"}}
    broken["services"]["kafka"]["helthcheck"] = {}
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) >= 2


def test_every_dependency_exists_with_a_readiness_condition(services):
    for name, service in services.items():
        for dep, spec in dependencies(service).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
            # A dependency in a profile the dependant may run without must be optional.
            dep_profiles = set(services[dep].get("profiles", []))
            own_profiles = set(service.get("profiles", []))
            if dep_profiles and not dep_profiles & own_profiles:
                assert spec.get("required") is False, f"{name} -> {dep} must be required: false"


def test_kafka_is_pinned_single_node_kraft_with_container_and_host_listeners(services):
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    env = env_of(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:29092"
    assert advertised["EXTERNAL"] == "localhost:9092"
    assert "9092:9092" in kafka["ports"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID must be a base64 UUID"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_topic_init_creates_every_topic_of_the_plan_with_the_workers_settings(services):
    """kafka-init runs `connector topics --create` (connector/topicplan.py: all nine topics)
    with the workers' environment, so it creates exactly the names the workers use."""
    init = services["kafka-init"]
    assert init["image"] == services["connector"]["image"]
    assert dependencies(init) == {"kafka": {"condition": "service_healthy"}}
    assert init["command"][:2] == ["topics", "--create"]
    env = env_of(init)
    for worker in WORKERS:
        worker_env = env_of(services[worker])
        for name in ("CONNECTOR_KAFKA_BOOTSTRAP", "CONNECTOR_APP_ID", "CONNECTOR_TOPIC_PARTITIONS",
                     "CONNECTOR_TOPIC_REPLICATION_FACTOR", "CONNECTOR_TOPIC_QUERY_ORDERS",
                     "CONNECTOR_TOPIC_ORDERS", "CONNECTOR_TOPIC_RESULTS", "CONNECTOR_TOPIC_ERRORS",
                     "CONNECTOR_TOPIC_STATE"):  # fmt: skip
            assert env[name] == worker_env[name], name


@pytest.mark.parametrize("name", WORKERS)
def test_worker_waits_for_kafka_and_topics(services, name):
    deps = dependencies(services[name])
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["kafka-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", WORKERS)
def test_worker_env_names_are_settings_fields(services, name):
    env = env_of(services[name])
    names = {k for k in env if k.startswith("CONNECTOR_")}
    assert names, "no CONNECTOR_* settings"
    unknown = names - SETTINGS_ENV
    assert not unknown, f"not fields of connector.settings.Settings: {sorted(unknown)}"


@pytest.mark.parametrize("name", WORKERS)
def test_worker_is_built_from_the_dockerfile_and_locked_down(services, name):
    worker = services[name]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["build"]["context"] == "."
    assert worker["command"] == ["worker"]
    assert worker["read_only"] is True
    assert "/tmp" in worker["tmpfs"]
    assert env_of(worker)["CONNECTOR_DATA_DIR"].startswith("/tmp/")
    assert worker["cap_drop"] == ["ALL"]


@pytest.mark.parametrize("name", WORKERS)
def test_worker_healthcheck_hits_healthz_on_the_web_port(services, name):
    worker = services[name]
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = " ".join(test[1:])
    port = env_of(worker)["CONNECTOR_WEB_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in command
    assert "curl" not in command
    published = [p for p in worker["ports"] if str(p).endswith(f":{port}")]
    assert published, f"{name} does not publish its web port {port}"


def test_worker_ports_do_not_clash(services):
    host_ports = [str(p).split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_live_worker_mounts_the_accounts_file_read_only(services):
    worker = services["connector"]
    env = env_of(worker)
    (mount,) = [v for v in worker["volumes"] if v["target"] == env["CONNECTOR_ACCOUNTS_FILE"]]
    assert mount["type"] == "bind"
    assert mount["source"] == "./deploy/accounts.yaml"
    assert mount["read_only"] is True
    # A missing file must fail loudly rather than be created as an empty directory.
    assert mount["bind"]["create_host_path"] is False


def test_local_accounts_file_is_gitignored_and_the_example_is_placeholders():
    ignored = (ROOT / "deploy" / ".gitignore").read_text().split()
    assert "accounts.yaml" in ignored
    example = yaml.safe_load((ROOT / "deploy" / "accounts.example.yaml").read_text())
    for alias, account in example["accounts"].items():
        assert account["exchange"] in ("ascendex", "bitget"), alias
        for key in ("api_key", "api_secret", "passphrase"):
            if key in account:
                assert account[key].startswith("REPLACE_WITH_"), (alias, key)


def test_sandbox_profile_is_a_complete_demo(services):
    sandbox_services = {n for n, s in services.items() if "sandbox" in s.get("profiles", [])}
    assert sandbox_services == {"sandbox", "connector-sandbox"}
    sandbox = services["sandbox"]
    cmd = sandbox["command"]
    assert cmd[0] == "sandbox"
    pairs = list(zip(cmd[1::2], cmd[2::2], strict=True))
    opts = dict(pairs)
    ports = dict(v.split("=") for k, v in pairs if k == "--port")
    assert opts["--host"] == "0.0.0.0"
    assert opts["--public-host"] == "sandbox"
    workdir = opts["--workdir"]

    worker = services["connector-sandbox"]
    env = env_of(worker)
    assert env["CONNECTOR_ASCENDEX_REST_URL"] == f"http://sandbox:{ports['ascendex']}"
    assert env["CONNECTOR_ASCENDEX_WS_URL"] == f"ws://sandbox:{ports['ascendex']}"
    assert env["CONNECTOR_BITGET_REST_URL"] == f"http://sandbox:{ports['bitget']}"
    assert env["CONNECTOR_ACCOUNTS_FILE"] == f"{workdir}/accounts.yaml"
    # The accounts file travels through a shared volume: written by the sandbox, read-only here.
    (shared,) = [v for v in sandbox["volumes"] if v.endswith(f":{workdir}")]
    volume = shared.split(":")[0]
    (mount,) = [v for v in worker["volumes"] if v["target"] == workdir]
    assert mount == {"type": "volume", "source": volume, "target": workdir, "read_only": True}
    assert dependencies(worker)["sandbox"]["condition"] == "service_healthy"
    assert "accounts.yaml" in " ".join(sandbox["healthcheck"]["test"])
    # Without a profile nothing talks to an exchange.
    assert "profiles" in services["connector"]


def test_schema_registry_is_optional_and_pinned(services):
    registry = services["schema-registry"]
    assert registry["profiles"] == ["registry"]
    image, _, tag = registry["image"].rpartition(":")
    assert image in (
        "confluentinc/cp-schema-registry",
        "apicurio/apicurio-registry",
        "ghcr.io/aiven-open/karapace",
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), registry["image"]
    assert "healthcheck" in registry
    for name in WORKERS:
        env = env_of(services[name])
        # Pass-through (null): set only when the operator exports it.
        assert env["CONNECTOR_SCHEMA_REGISTRY_URL"] is None


def iter_strings(node: Any, path: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from iter_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from iter_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def looks_like_token(text: str) -> bool:
    """A long run of key-ish characters mixing upper case, lower case and digits."""
    for word in re.findall(r"[A-Za-z0-9+=_]{24,}", text):
        classes = sum(bool(re.search(c, word)) for c in (r"[a-z]", r"[A-Z]", r"[0-9]"))
        if classes == 3:
            return True
    return False


def test_token_heuristic():
    assert looks_like_token("key: bg_8f3KzQ1xT5vW9yB2nM4pL7rD0sA6")
    assert not looks_like_token("/opt/kafka/bin/kafka-broker-api-versions.sh")
    assert not looks_like_token("CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_S")


def test_no_secret_values_inline(compose, services):
    for name, service in services.items():
        for key, value in env_of(service).items():
            if any(marker in key.upper() for marker in SECRET_NAME_MARKERS):
                assert value in (None, ""), f"{name}: {key} has an inline value"
    assert "secrets" not in compose or all(
        "environment" not in s for s in compose["secrets"].values()
    )
    for path, value in iter_strings(compose):
        # Long opaque tokens (API keys, base64 secrets); the Kafka CLUSTER_ID is public.
        if path.endswith("CLUSTER_ID"):
            continue
        assert not looks_like_token(value), f"{path} looks like a secret"
        assert not re.search(r"(?i)(api[_-]?key|secret|passphrase|password)\s*[:=]\s*\S", value), (
            path
        )
