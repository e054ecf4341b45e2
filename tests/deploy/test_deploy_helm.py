"""Helm chart: strict lint, offline render with several values files, Kubernetes schema
validation of every built-in resource, and the facts the deployment depends on.

Helm runs in-process through helm-python-sdk (ctypes over its bundled libhelm_c, i.e. Helm
v4's Go SDK): no helm binary, no cluster, no network. kubernetes-validate ships the
Kubernetes OpenAPI schemas in its wheel.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from .conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    SECRET_NAME_MARKERS,
    SETTINGS_ENV,
    VALUES_DIR,
    by_kind,
    merge,
    render,
)

KUBE_VERSION = "1.30.0"
VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}


def load_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((VALUES_DIR / name).read_text()) or {}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, load_values(name)) for name in VALUES_FILES}


def worker_container(docs) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def config_data(docs) -> dict[str, str]:
    return one(docs, "ConfigMap")["data"]


# --- lint -----------------------------------------------------------------------------------


def test_values_files_cover_the_required_scenarios():
    assert {
        "defaults.yaml",
        "existing-secret.yaml",
        "keda.yaml",
        "hpa.yaml",
        "sasl-tls.yaml",
    } <= set(VALUES_FILES)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_strict(values_file):
    report = helm.lint(
        CHART, load_values(values_file), strict=True, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], problems or report["errors"]


def test_lint_flags_a_broken_chart(tmp_path: Path):
    """The lint test above can fail: a template error is reported as an error message."""
    with helm.Chart.load(CHART) as loaded:
        copy_dir = Path(loaded.save_dir(tmp_path))
    (copy_dir / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    report = helm.lint(copy_dir, load_values("defaults.yaml"), strict=True)
    assert report["errors"]


def test_chart_defaults_alone_fail_with_one_clear_message(chart):
    with pytest.raises(helm.HelmRenderError, match=r"accounts\.existingSecret .* is required"):
        chart.render({}, name=RELEASE, namespace=NAMESPACE)


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "exchange-order-connector"
    assert chart.schema is not None


# --- Kubernetes schema validation -----------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_builtin_resource_validates_against_kubernetes(rendered, values_file):
    docs = rendered[values_file]
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 5
    assert {d["kind"] for d in docs} - CRD_KINDS - {
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } == set()


def test_kubernetes_validation_can_fail(rendered):
    deployment = copy.deepcopy(one(rendered["defaults.yaml"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = (
        "yes"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    deployment = copy.deepcopy(one(rendered["defaults.yaml"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = (
        "/"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_crd_resources_are_well_formed(rendered):
    scaled = one(rendered["keda.yaml"], "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == one(rendered["keda.yaml"], "Deployment")["metadata"]["name"]
    )
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger["metadata"]
    monitor = one(rendered["keda.yaml"], "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {**endpoint, "port": "http", "path": "/metrics"}
    service = one(rendered["keda.yaml"], "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


# --- deployment facts -----------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_restrictive_security_context(rendered, values_file):
    docs = rendered[values_file]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = worker_container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_writable_paths_are_empty_dirs(rendered, values_file):
    docs = rendered[values_file]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in worker_container(docs)["volumeMounts"]}
    data_dir = config_data(docs)["CONNECTOR_DATA_DIR"]
    for path in (data_dir, "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    for path, mount in mounts.items():
        if path not in (data_dir, "/tmp"):
            assert mount.get("readOnly") is True, path


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_probes_and_ports(rendered, values_file):
    docs = rendered[values_file]
    container = worker_container(docs)
    assert container["args"] == ["worker"]
    (port,) = container["ports"]
    assert port["name"] == "http"
    assert str(port["containerPort"]) == config_data(docs)["CONNECTOR_WEB_PORT"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    sa = one(docs, "ServiceAccount")
    assert (
        one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == sa["metadata"]["name"]
    )


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_env_names_are_settings_fields_and_secrets_stay_out_of_the_configmap(rendered, values_file):
    docs = rendered[values_file]
    data = config_data(docs)
    unknown = set(data) - SETTINGS_ENV
    assert not unknown, f"not fields of connector.settings.Settings: {sorted(unknown)}"
    for key in data:
        assert not any(marker in key for marker in SECRET_NAME_MARKERS), key
    container = worker_container(docs)
    for env in container.get("env", []):
        assert env["name"] in SETTINGS_ENV
        assert "value" not in env, f"{env['name']} must come from a Secret"
        assert "secretKeyRef" in env["valueFrom"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": one(docs, "ConfigMap")["metadata"]["name"]}}
    ]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_accounts_file_is_mounted_from_a_secret(rendered, values_file):
    docs = rendered[values_file]
    values = load_values(values_file)
    path = config_data(docs)["CONNECTOR_ACCOUNTS_FILE"]
    mount_dir, _, key = path.rpartition("/")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in worker_container(docs)["volumeMounts"] if m["mountPath"] == mount_dir]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["items"] == [{"key": key, "path": key}]
    existing = values.get("accounts", {}).get("existingSecret")
    if existing:
        assert volume["secret"]["secretName"] == existing
        assert not any(key in s.get("data", {}) for s in by_kind(docs, "Secret"))
    else:
        secret = one(docs, "Secret")
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        content = base64.b64decode(secret["data"][key]).decode()
        assert content == values["accounts"]["content"]


def test_existing_secret_renders_no_chart_secret(rendered):
    for name in ("defaults.yaml", "existing-secret.yaml", "keda.yaml", "hpa.yaml", "sasl-tls.yaml"):
        assert by_kind(rendered[name], "Secret") == [], name
    data = config_data(rendered["existing-secret.yaml"])
    assert data["CONNECTOR_ACCOUNTS_FILE"].endswith("/accounts.toml")
    assert data["CONNECTOR_SCHEMA_REGISTRY_URL"] == "http://schema-registry.kafka:8081"


def test_inline_sasl_password_comes_from_the_chart_secret(rendered):
    docs = rendered["inline-secrets.yaml"]
    secret = one(docs, "Secret")
    (env,) = worker_container(docs)["env"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert env["name"] == "CONNECTOR_KAFKA_SASL_PASSWORD"
    assert ref["name"] == secret["metadata"]["name"]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "not-a-real-password"
    data = config_data(docs)
    assert data["CONNECTOR_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert "not-a-real-password" not in yaml.safe_dump(one(docs, "ConfigMap"))
    assert "not-a-real-password" not in yaml.safe_dump(one(docs, "Deployment"))


def test_sasl_tls_wiring(rendered):
    docs = rendered["sasl-tls.yaml"]
    data = config_data(docs)
    assert data["CONNECTOR_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["CONNECTOR_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert data["CONNECTOR_KAFKA_SASL_USERNAME"] == "exchange-order-connector"
    (env,) = worker_container(docs)["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "kafka-credentials", "key": "sasl-password"}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in worker_container(docs)["volumeMounts"]}
    (tls,) = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    assert tls["secret"]["secretName"] == "kafka-tls"
    files = {item["path"] for item in tls["secret"]["items"]}
    for var, file in (("CAFILE", "ca.crt"), ("CERTFILE", "tls.crt"), ("KEYFILE", "tls.key")):
        assert data[f"CONNECTOR_KAFKA_SSL_{var}"] == f"{mounts['kafka-tls']}/{file}"
        assert file in files
    (trigger,) = one(docs, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    assert trigger["authenticationRef"] == {"name": "kafka-trigger-auth"}


def test_plaintext_renders_no_kafka_credentials(rendered):
    docs = rendered["defaults.yaml"]
    data = config_data(docs)
    assert data["CONNECTOR_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not any(k.startswith(("CONNECTOR_KAFKA_SASL", "CONNECTOR_KAFKA_SSL")) for k in data)
    assert "env" not in worker_container(docs)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_prometheus_scraping(rendered, values_file):
    docs = rendered[values_file]
    values = load_values(values_file)
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    if values.get("metrics", {}).get("podAnnotations", True):
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == config_data(docs)["CONNECTOR_WEB_PORT"]
    else:
        assert "prometheus.io/scrape" not in annotations
        assert by_kind(docs, "ServiceMonitor"), (
            "metrics need either annotations or a ServiceMonitor"
        )


# --- scaling --------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_at_most_one_autoscaler(rendered, values_file):
    docs = rendered[values_file]
    mode = load_values(values_file).get("autoscaling", {}).get("mode", "none")
    hpas, scaled = by_kind(docs, "HorizontalPodAutoscaler"), by_kind(docs, "ScaledObject")
    assert not (hpas and scaled)
    deployment = one(docs, "Deployment")
    partitions = int(config_data(docs)["CONNECTOR_TOPIC_PARTITIONS"])
    if mode == "none":
        assert not hpas and not scaled
        assert 1 <= deployment["spec"]["replicas"] <= partitions
    else:
        # The autoscaler owns the replica count.
        assert "replicas" not in deployment["spec"]
    if mode == "hpa":
        (hpa,) = hpas
        assert not scaled
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["maxReplicas"] <= partitions
    if mode == "keda":
        (so,) = scaled
        assert not hpas
        assert so["spec"]["maxReplicaCount"] <= partitions
        meta = so["spec"]["triggers"][0]["metadata"]
        data = config_data(docs)
        assert meta["topic"] == data["CONNECTOR_TOPIC_QUERY_ORDERS"]
        assert meta["consumerGroup"] == data["CONNECTOR_APP_ID"]
        assert meta["bootstrapServers"] == data["CONNECTOR_KAFKA_BOOTSTRAP"]
        assert meta["allowIdleConsumers"] == "false"


BASE = {"accounts": {"existingSecret": "connector-accounts"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicaCount": 5}, r"replicaCount \(5\) must not exceed topics.partitions \(4\)"),
        ({"autoscaling": {"mode": "hpa", "maxReplicas": 5}}, r"maxReplicas \(5\) must not exceed"),
        (
            {"autoscaling": {"mode": "keda", "maxReplicas": 9}, "topics": {"partitions": 8}},
            r"maxReplicas \(9\) must not exceed topics.partitions \(8\)",
        ),
        (
            {"autoscaling": {"mode": "hpa", "minReplicas": 4, "maxReplicas": 3}},
            r"minReplicas \(4\) must not exceed",
        ),
        (
            {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"username": "u"}}},
            r"needs kafka.sasl.existingSecret",
        ),
        (
            {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"existingSecret": "s"}}},
            r"needs kafka.sasl.username",
        ),
        (
            {
                "kafka": {
                    "securityProtocol": "SASL_SSL",
                    "sasl": {"username": "u", "existingSecret": "s"},
                },
                "autoscaling": {"mode": "keda"},
            },
            r"authenticationRef is required",
        ),
    ],
)
def test_template_guards(chart, override, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, merge(BASE, override))


def test_replicas_up_to_the_partition_count_are_fine(chart):
    docs = render(chart, merge(BASE, {"replicaCount": 4}))
    assert one(docs, "Deployment")["spec"]["replicas"] == 4
    docs = render(chart, merge(BASE, {"autoscaling": {"mode": "keda", "maxReplicas": 4}}))
    assert one(docs, "ScaledObject")["spec"]["maxReplicaCount"] == 4


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"autoscaling": {"mode": "both"}}, "/autoscaling/mode"),
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicaCount": "3"}, "/replicaCount"),
        ({"replicas": 3}, "replicas"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"kafka": {"bootstrap": "kafka"}}, "/kafka/bootstrap"),
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "/kafka/sasl/mechanism"),
        ({"config": {"logLevel": "verbose"}}, "/config/logLevel"),
        ({"config": {"maxAttempts": 0}}, "/config/maxAttempts"),
        ({"config": {"ascendexWsUrl": "https://ascendex.com"}}, "/config/ascendexWsUrl"),
        ({"topics": {"partitions": 0}}, "/topics/partitions"),
        ({"topics": {"queryOrders": "bad topic"}}, "/topics/queryOrders"),
        ({"accounts": {"key": "accounts.json"}}, "/accounts/key"),
        ({"accounts": {"content": "accounts: {}"}}, "/accounts/content"),
        (
            {"schedules": [{"exchange": "bitget", "account": "f", "intervall_s": 30}]},
            "/schedules/0",
        ),
        ({"schedules": [{"exchange": "bitget", "account": "f", "interval_s": 0}]}, "/schedules/0"),
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
        ({"extraVolumeMounts": [{"name": "v"}]}, "/extraVolumeMounts/0"),
        ({"extraConfig": {"KAFKA_BOOTSTRAP": "x:1"}}, "KAFKA_BOOTSTRAP"),
        (
            {"securityContext": {"readOnlyRootFilesystem": False}},
            "/securityContext/readOnlyRootFilesystem",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"web": {"port": 80}}, "/web/port"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"venues": {"ascendex": {"enabled": "no"}}}, "/venues/ascendex/enabled"),
        ({"venues": {"ascendex": {"enable": False}}}, "/venues/ascendex"),
        ({"venues": {"AscendEX": {"enabled": False}}}, "AscendEX"),
    ],
)
def test_schema_rejects_bad_values(chart, override, path):
    values = merge(BASE, override)
    with pytest.raises(helm.HelmValuesError, match=path):
        chart.validate_schema(values)
    # ...and the same values fail an install-style render, before any template runs.
    with pytest.raises(helm.HelmValuesError):
        render(chart, values)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_schema_accepts_every_values_file(chart, values_file):
    chart.validate_schema(load_values(values_file))


# --- rollouts -------------------------------------------------------------------------------


def pod_annotations(docs):
    return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_config_change_rolls_the_pods(chart, rendered):
    before = pod_annotations(rendered["defaults.yaml"])
    after = pod_annotations(
        render(chart, merge(load_values("defaults.yaml"), {"config": {"logLevel": "DEBUG"}}))
    )
    assert before["checksum/config"] != after["checksum/config"]
    assert before["checksum/secret"] == after["checksum/secret"]
    same = pod_annotations(render(chart, load_values("defaults.yaml")))
    assert same == before, "checksums must be deterministic"


def test_secret_change_rolls_the_pods(chart, rendered):
    values = load_values("inline-secrets.yaml")
    before = pod_annotations(rendered["inline-secrets.yaml"])
    after = pod_annotations(
        render(chart, merge(values, {"kafka": {"sasl": {"password": "rotated"}}}))
    )
    assert before["checksum/secret"] != after["checksum/secret"]
    assert before["checksum/config"] == after["checksum/config"]


def test_notes_render(chart):
    notes = chart.render(load_values("keda.yaml"), name=RELEASE, namespace=NAMESPACE)
    (text,) = [v for k, v in notes.items() if k.endswith("NOTES.txt")]
    assert "1..12 (KEDA)" in text
    assert "rollout restart" in text


def test_registry_basic_auth_comes_from_an_existing_secret(chart):
    values = load_values("existing-secret.yaml")
    values["schemaRegistry"]["basicAuth"] = {
        "existingSecret": "registry-credentials",
        "existingSecretKey": "user-info",
    }
    docs = render(chart, values)
    (env,) = worker_container(docs)["env"]
    assert env["name"] == "CONNECTOR_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    assert env["valueFrom"]["secretKeyRef"] == {"name": "registry-credentials", "key": "user-info"}
    assert env["name"] in SETTINGS_ENV
    assert by_kind(docs, "Secret") == []
    assert not any("USER_INFO" in k for k in config_data(docs))
    # Without it, no env block at all (SASL off).
    assert "env" not in worker_container(render(chart, load_values("existing-secret.yaml")))


def test_a_venue_is_switched_off_by_a_value(chart, settings_env):
    """venues.<name>.enabled renders CONNECTOR_<VENUE>_ENABLED, a setting the worker reads."""
    default = config_data(render(chart, BASE))
    assert default["CONNECTOR_ASCENDEX_ENABLED"] == "true"
    assert default["CONNECTOR_BITGET_ENABLED"] == "true"
    off = config_data(render(chart, merge(BASE, {"venues": {"ascendex": {"enabled": False}}})))
    assert off["CONNECTOR_ASCENDEX_ENABLED"] == "false"
    assert off["CONNECTOR_BITGET_ENABLED"] == "true"
    assert {"CONNECTOR_ASCENDEX_ENABLED", "CONNECTOR_BITGET_ENABLED"} <= settings_env


# --- secrets in extraConfig, extra env and volumes, standing queries -------------------------


@pytest.mark.parametrize(
    ("name", "belongs_in"),
    [
        ("CONNECTOR_KAFKA_SASL_PASSWORD", "use kafka.sasl.existingSecret"),
        ("CONNECTOR_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "use schemaRegistry.basicAuth.existingSecret"),
        ("CONNECTOR_BITGET_API_SECRET", "the accounts file, per account (accounts.existingSecret)"),
        ("CONNECTOR_SOME_TOKEN", "use an extraEnv entry instead: {name: CONNECTOR_SOME_TOKEN, valueFrom: {secretKeyRef:"),
    ],
)  # fmt: skip
def test_a_secret_in_extra_config_says_where_it_belongs(chart, name, belongs_in):
    values = merge(BASE, {"extraConfig": {name: "hunter2"}})
    chart.validate_schema(values)  # the schema cannot say where it goes: the template does
    with pytest.raises(helm.HelmRenderError) as info:
        render(chart, values)
    message = str(info.value)
    assert f"extraConfig.{name} looks like a secret" in message
    assert belongs_in in message
    assert "hunter2" not in message


def test_extra_env_volumes_and_mounts_reach_the_worker(chart):
    env = [
        {"name": "CONNECTOR_BITGET_PAGE_SIZE", "value": "50"},
        {"name": "CONNECTOR_X_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "t"}}},
    ]
    volumes = [{"name": "certs", "configMap": {"name": "corp-ca"}}]
    mounts = [{"name": "certs", "mountPath": "/etc/corp-ca", "readOnly": True}]
    docs = render(
        chart,
        merge(BASE, {"extraEnv": env, "extraVolumes": volumes, "extraVolumeMounts": mounts}),
    )
    container = worker_container(docs)
    assert container["env"] == env
    assert container["volumeMounts"][-1] == mounts[0]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][-1] == volumes[0]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    # With SASL on, the chart's own entries come first and the extra ones follow.
    sasl = load_values("sasl-tls.yaml")
    names = [
        e["name"] for e in worker_container(render(chart, merge(sasl, {"extraEnv": env})))["env"]
    ]
    assert names == ["CONNECTOR_KAFKA_SASL_PASSWORD", *(e["name"] for e in env)]


SCHEDULES = [
    {"exchange": "bitget", "account": "follower-1", "product_type": "USDT-FUTURES", "interval_s": 30},
    {"exchange": "ascendex", "account": "desk-a", "symbol": "BTC-PERP", "interval_s": 10,
     "deadline_factor": 0.8},
]  # fmt: skip


def test_schedules_value_mounts_a_schedules_file_the_worker_loads(chart, tmp_path):
    from connector.schedules import load_schedules

    docs = render(chart, merge(BASE, {"schedules": SCHEDULES}))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    main, schedules = sorted(by_kind(docs, "ConfigMap"), key=lambda d: d["metadata"]["name"])
    path = main["data"]["CONNECTOR_SCHEDULES_FILE"]
    mount_dir, _, key = path.rpartition("/")
    assert schedules["metadata"]["name"] == main["metadata"]["name"] + "-schedules"
    (mount,) = [m for m in worker_container(docs)["volumeMounts"] if m["mountPath"] == mount_dir]
    assert mount["readOnly"] is True
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == schedules["metadata"]["name"]
    # What the worker reads there is a valid schedules file with the entries given.
    file = tmp_path / key
    file.write_text(schedules["data"][key])
    loaded = load_schedules(file)
    assert [(s.exchange, s.account, s.interval_s) for s in loaded] == [
        ("bitget", "follower-1", 30), ("ascendex", "desk-a", 10)
    ]  # fmt: skip
    assert loaded[1].symbol == "BTC-PERP" and loaded[1].deadline_factor == 0.8
    # A change to the list rolls the pods; without schedules nothing of it is rendered.
    changed = merge(BASE, {"schedules": [{**SCHEDULES[0], "interval_s": 60}]})
    before = pod_annotations(docs)["checksum/schedules"]
    assert pod_annotations(render(chart, changed))["checksum/schedules"] != before
    plain = render(chart, BASE)
    assert "CONNECTOR_SCHEDULES_FILE" not in config_data(plain)
    assert "checksum/schedules" not in pod_annotations(plain)


def test_schedules_and_a_schedules_file_of_ones_own_are_exclusive(chart):
    values = merge(
        BASE,
        {"schedules": SCHEDULES, "extraConfig": {"CONNECTOR_SCHEDULES_FILE": "/etc/mine.yaml"}},
    )
    with pytest.raises(helm.HelmRenderError, match="set schedules or extraConfig"):
        render(chart, values)


def test_every_topic_name_is_a_chart_value_and_the_notes_list_the_whole_plan(chart):
    """topics.state and topics.commandsByAccount become their settings; NOTES.txt names every
    topic of connector/topicplan.py's plan for those values."""
    from connector.settings import Settings
    from connector.topicplan import topic_plan

    values = merge(load_values("keda.yaml"), {
        "topics": {"state": "risk.open-orders", "commandsByAccount": "risk.by-account"},
        "config": {"appId": "risk-connector"},
    })  # fmt: skip
    data = config_data(render(chart, values))
    assert data["CONNECTOR_TOPIC_STATE"] == "risk.open-orders"
    assert data["CONNECTOR_TOPIC_COMMANDS_BY_ACCOUNT"] == "risk.by-account"
    notes = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    (text,) = [v for k, v in notes.items() if k.endswith("NOTES.txt")]
    fields = {k.removeprefix("CONNECTOR_").lower(): v for k, v in data.items()}
    settings = Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
    for topic in topic_plan(settings):
        assert topic.name in text, topic.name
    default = config_data(render(chart, load_values("keda.yaml")))
    assert default["CONNECTOR_TOPIC_STATE"] == "open-orders"
    assert "CONNECTOR_TOPIC_COMMANDS_BY_ACCOUNT" not in default  # derived from the app id


def test_a_topic_name_in_extra_config_points_at_its_value(chart):
    values = merge(load_values("keda.yaml"), {"extraConfig": {"CONNECTOR_TOPIC_STATE": "x"}})
    with pytest.raises(
        helm.HelmRenderError, match=r"extraConfig.CONNECTOR_TOPIC_STATE: set topics.state"
    ):
        render(chart, values)
