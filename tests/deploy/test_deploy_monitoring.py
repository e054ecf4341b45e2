"""Monitoring in the Helm chart: the Grafana dashboard ConfigMap and the PrometheusRule.

Both are off by default. Rendered here with them on, the ConfigMap is validated against the
Kubernetes schema; the PrometheusRule (a CRD that kubernetes-validate does not know) against a
JSON schema of the fields the Prometheus Operator reads. Every PromQL expression, in the rule and
in each dashboard panel, is parsed with promql-parser, and every metric it names must exist: in
connector/metrics.py or among Faust's Prometheus sensor metrics. Renaming a metric breaks this test.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import promql_parser
import pytest
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from connector import metrics as connector_metrics

from .conftest import CHART, NAMESPACE, RELEASE, by_kind, merge, render

KUBE_VERSION = "1.30.0"
DASHBOARD_FILE = CHART / "dashboards" / "connector-dashboard.json"
BASE = {"accounts": {"existingSecret": "connector-accounts"}}
FAUST_PREFIX = "exchange_order_connector"  # config.appId, Faust's default name_prefix
ON = {
    "metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}},
    "grafana": {"dashboard": {"enabled": True}},
}
#: Labels that the scrape adds to every series (not defined by the metric itself).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}

ALERTS = {
    "ConnectorFailedRatioHigh",
    "ConnectorAuthFailed",
    "ConnectorCommandLatencyHigh",
    "ConnectorConsumerLagGrowing",
    "ConnectorInFlightSaturated",
    "ConnectorVenueFailing",
    "ConnectorVenueCircuitOpen",
}

#: What the Prometheus Operator reads from a PrometheusRule (monitoring.coreos.com/v1).
DURATION = {"type": "string", "pattern": r"^(([0-9]+)(ms|s|m|h|d|w|y))+$"}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace", "labels"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {
                                            "type": "string",
                                            "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                        },
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


# --- the metric catalogue -------------------------------------------------------------------


def exposed(metric: MetricWrapperBase) -> dict[str, set[str]]:
    """Series names a metric exposes, each with its label names."""
    name, kind = metric._name, metric._type
    labels = set(metric._labelnames)
    if kind == "counter":
        return {f"{name}_total": labels, f"{name}_created": labels}
    if kind == "histogram":
        return {
            f"{name}_bucket": labels | {"le"},
            f"{name}_sum": labels,
            f"{name}_count": labels,
            f"{name}_created": labels,
        }
    return {name: labels}


def catalogue() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for value in vars(connector_metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.update(exposed(value))
    for value in FaustMetrics.create(CollectorRegistry(), FAUST_PREFIX):
        names.update(exposed(value))
    return names


METRICS = catalogue()


def test_catalogue_has_the_metrics_the_alerts_need():
    assert "connector_commands_total" in METRICS
    assert METRICS["connector_commands_total"] == {"exchange", "status"}
    assert "connector_command_duration_seconds_bucket" in METRICS
    assert f"{FAUST_PREFIX}_topic_partition_offset_commited" in METRICS


def selectors(expr: str) -> Iterator[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    yield from found


def check_promql(expr: str) -> set[str]:
    """Parse (raises on a syntax error), check names and label matchers; return the names."""
    names = set()
    for sel in selectors(expr):
        name = sel.name
        if name is None:
            (name,) = [m.value for m in sel.matchers.matchers if m.name == "__name__"]
        assert name in METRICS, f"{name} is not a metric of connector/metrics.py or Faust: {expr}"
        for matcher in sel.matchers.matchers:
            if matcher.name != "__name__":
                assert matcher.name in METRICS[name] | TARGET_LABELS, (
                    f"{name} has no label {matcher.name}: {expr}"
                )
        names.add(name)
    return names


def test_check_promql_can_fail():
    with pytest.raises(AssertionError, match="connector_commands_totl"):
        check_promql('sum(rate(connector_commands_totl{status="FAILED"}[5m]))')
    with pytest.raises(AssertionError, match="no label venue"):
        check_promql('sum(rate(connector_commands_total{venue="bitget"}[5m]))')
    with pytest.raises(ValueError):
        check_promql("sum(rate(connector_commands_total[5m])")


# --- rendering ------------------------------------------------------------------------------


def dashboard_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    return cm


def rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (rule,) = by_kind(docs, "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.fixture(scope="module")
def rendered_on(chart) -> list[dict[str, Any]]:
    return render(chart, merge(BASE, ON))


def test_monitoring_is_off_by_default(chart):
    docs = render(chart, BASE)
    assert by_kind(docs, "PrometheusRule") == []
    assert [d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")] == [
        f"{RELEASE}-exchange-order-connector"
    ]


def test_lint_strict_with_monitoring_on():
    report = helm.lint(CHART, merge(BASE, ON), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], problems or report["errors"]


# --- Grafana dashboard ----------------------------------------------------------------------


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables at their defaults."""
    defaults = {
        v["name"]: v["current"].get("value", v.get("query"))
        for v in dashboard["templating"]["list"]
        if v["type"] == "textbox"
    }
    substitutions = {
        "$__rate_interval": "5m",
        "$__interval": "1m",
        "$instance": ".*",
        **{f"${{{k}}}": str(v) for k, v in defaults.items()},
        **{f"${k}": str(v) for k, v in defaults.items()},
    }
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var in sorted(substitutions, key=len, reverse=True):
                expr = expr.replace(var, substitutions[var])
            assert "$" not in expr, f"unknown variable in {panel['title']}: {expr}"
            out.append((panel["title"], expr))
    return out


def test_dashboard_json_is_valid_and_every_expr_names_existing_metrics():
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = dashboard_exprs(dashboard)
    used: set[str] = set()
    for title, expr in exprs:
        try:
            used |= check_promql(expr)
        except ValueError as exc:
            raise AssertionError(f"{title}: {expr}: {exc}") from exc
    # Every metric the connector defines is on the dashboard (a new one should be, too).
    own = {
        name
        for metric in vars(connector_metrics).values()
        if isinstance(metric, MetricWrapperBase)
        for name in exposed(metric)
    }
    bases = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in own}
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    assert bases <= shown, f"not on the dashboard: {sorted(bases - shown)}"
    assert f"{FAUST_PREFIX}_topic_partition_end_offset" in used  # consumer lag


def test_dashboard_configmap_carries_the_file_with_the_sidecar_label(rendered_on):
    cm = dashboard_configmap(rendered_on)
    kubernetes_validate.validate(cm, KUBE_VERSION, strict=True)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE
    (content,) = cm["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD_FILE.read_text())


def test_dashboard_label_namespace_and_folder_are_configurable(chart):
    docs = render(
        chart,
        merge(
            BASE,
            {
                "grafana": {
                    "dashboard": {
                        "enabled": True,
                        "label": "dashboards",
                        "labelValue": "connector",
                        "namespace": "monitoring",
                        "folder": "Trading",
                    }
                }
            },
        ),
    )
    cm = dashboard_configmap(docs)
    kubernetes_validate.validate(cm, KUBE_VERSION, strict=True)
    assert cm["metadata"]["labels"]["dashboards"] == "connector"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Trading"


# --- PrometheusRule -------------------------------------------------------------------------


def test_prometheus_rule_structure(rendered_on):
    (rule,) = by_kind(rendered_on, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert set(rules(rendered_on)) == ALERTS
    for alert in rules(rendered_on).values():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_prometheus_rule_schema_can_fail(rendered_on):
    (rule,) = by_kind(rendered_on, "PrometheusRule")
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PROMETHEUS_RULE_SCHEMA)


def test_every_alert_expression_parses_and_names_existing_metrics(rendered_on):
    needs = {
        "ConnectorFailedRatioHigh": {"connector_errors_total", "connector_commands_total"},
        "ConnectorAuthFailed": {"connector_errors_total"},
        "ConnectorCommandLatencyHigh": {"connector_command_duration_seconds_bucket"},
        "ConnectorConsumerLagGrowing": {
            f"{FAUST_PREFIX}_topic_partition_end_offset",
            f"{FAUST_PREFIX}_topic_partition_offset_commited",
        },
        "ConnectorInFlightSaturated": {"connector_commands_in_flight"},
        "ConnectorVenueFailing": {"connector_commands_total"},
        "ConnectorVenueCircuitOpen": {"connector_venue_circuit_state"},
    }
    for name, alert in rules(rendered_on).items():
        assert check_promql(alert["expr"]) == needs[name], name


def test_thresholds_come_from_values(chart):
    values = merge(
        BASE,
        merge(
            ON,
            {
                "config": {"workerMaxInFlight": 13, "appId": "eoc.prod-1"},
                "topics": {"queryOrders": "risk.query-orders"},
                "metrics": {
                    "prometheusRule": {
                        "selector": 'namespace="trading", job="rel-exchange-order-connector"',
                        "alertLabels": {"team": "risk"},
                        "failedRatio": {"threshold": 0.2, "window": "30m", "for": "15m"},
                        "authFailed": {"window": "5m", "for": "1m"},
                        "commandLatencyP95": {"thresholdSeconds": 2.5},
                        "consumerLag": {"threshold": 500, "window": "20m"},
                        "inFlightSaturated": {"window": "7m"},
                        "venueFailing": {"window": "17m", "for": "3m"},
                        "venueCircuitOpen": {"for": "7m"},
                    }
                },
            },
        ),
    )
    by_name = rules(render(chart, values))
    r = by_name["ConnectorFailedRatioHigh"]
    assert r["expr"].endswith("> 0.2") and "[30m]" in r["expr"] and r["for"] == "15m"
    assert "[5m]" in by_name["ConnectorAuthFailed"]["expr"]
    assert by_name["ConnectorAuthFailed"]["for"] == "1m"
    assert by_name["ConnectorCommandLatencyHigh"]["expr"].endswith("> 2.5")
    lag = by_name["ConnectorConsumerLagGrowing"]["expr"]
    assert "> 500" in lag and "[20m:1m]" in lag and 'topic="risk.query-orders"' in lag
    assert "eoc_prod_1_topic_partition_end_offset" in lag
    sat = by_name["ConnectorInFlightSaturated"]["expr"]
    assert sat.endswith(">= 13") and "[7m]" in sat
    assert "[17m]" in by_name["ConnectorVenueFailing"]["expr"]
    assert by_name["ConnectorVenueFailing"]["for"] == "3m"
    assert by_name["ConnectorVenueCircuitOpen"]["for"] == "7m"
    assert "7m" in by_name["ConnectorVenueCircuitOpen"]["annotations"]["summary"]
    for alert in by_name.values():
        assert alert["labels"]["team"] == "risk"
        # The selector reaches every series the rule reads.
        for sel in selectors(alert["expr"]):
            matchers = {(m.name, m.value) for m in sel.matchers.matchers}
            assert {("namespace", "trading"), ("job", "rel-exchange-order-connector")} <= matchers


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"failedRatio": {"threshold": 2}}, "/metrics/prometheusRule/failedRatio/threshold"),
        ({"failedRatio": {"window": "10 minutes"}}, "/metrics/prometheusRule/failedRatio/window"),
        ({"consumerLag": {"threshold": 0}}, "/metrics/prometheusRule/consumerLag/threshold"),
        ({"selector": "namespace=trading"}, "/metrics/prometheusRule/selector"),
        ({"faustMetricPrefix": "eoc-prod"}, "/metrics/prometheusRule/faustMetricPrefix"),
        ({"venueFailing": {"minutes": 10}}, "/metrics/prometheusRule/venueFailing"),
    ],
)
def test_schema_rejects_bad_thresholds(chart, override, path):
    values = merge(BASE, {"metrics": {"prometheusRule": override}})
    with pytest.raises(helm.HelmValuesError, match=path):
        chart.validate_schema(values)


def test_schema_rejects_unknown_dashboard_keys(chart):
    with pytest.raises(helm.HelmValuesError, match="/grafana/dashboard"):
        chart.validate_schema(merge(BASE, {"grafana": {"dashboard": {"enable": True}}}))


def test_an_open_or_probing_circuit_alerts_and_has_a_panel(rendered_on):
    """The alert fires on any scope's circuit not closed (1 half-open, 2 open: both mean its
    commands are answered VENUE_UNAVAILABLE), per venue and scope; the dashboard shows the
    state and the transitions."""
    expr = rules(rendered_on)["ConnectorVenueCircuitOpen"]["expr"]
    assert "by (exchange, scope)" in expr and expr.endswith("> 0")
    dashboard = json.loads(next(iter(dashboard_configmap(rendered_on)["data"].values())))
    exprs = " ".join(e for _, e in dashboard_exprs(dashboard))
    assert "connector_venue_circuit_state" in exprs
    assert "connector_venue_circuit_transitions_total" in exprs
