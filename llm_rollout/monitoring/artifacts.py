"""Every monitoring file for a spec, as `llm-rollout render` writes them into monitoring/,
and the Prometheus Operator's objects (PodMonitor, PrometheusRule) checked against the
operator's own CRD schemas, vendored in monitoring/schemas/ (see its README)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

# a dependency of kubernetes-validate (which validates our Kubernetes objects); no stubs
import jsonschema  # type: ignore[import-untyped]

from llm_rollout.k8s.crd_schema import strict_schema
from llm_rollout.k8s.labels import common_labels
from llm_rollout.k8s.yaml_text import to_yaml
from llm_rollout.monitoring.adapter import adapter_rules, keda_scaled_object
from llm_rollout.monitoring.alertmanager import alertmanager_config
from llm_rollout.monitoring.dashboard import dashboard
from llm_rollout.monitoring.logs import alloy_config
from llm_rollout.monitoring.router_rules import router_rule_group
from llm_rollout.monitoring.rules import rule_groups
from llm_rollout.monitoring.scrape import pod_monitor, router_pod_monitor, scrape_job
from llm_rollout.spec import ReleaseSpec

DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
SCHEMAS = Path(__file__).parent / "schemas"
OPERATOR_API_VERSION = "monitoring.coreos.com/v1"
OPERATOR_KINDS = ("PodMonitor", "PrometheusRule")


def rule_file(spec: ReleaseSpec) -> dict[str, Any]:
    """rules.yml: the model's rule groups, and its router's with `routing:`."""
    groups = rule_groups(spec)
    if spec.routing is not None:
        groups["groups"].append(router_rule_group(spec))
    return groups


def prometheus_rule(spec: ReleaseSpec) -> dict[str, Any]:
    """The rule groups of rules.yml as a monitoring.coreos.com/v1 PrometheusRule."""
    return {
        "apiVersion": OPERATOR_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"llm-rollout-{spec.name}",
            "namespace": spec.namespace,
            "labels": common_labels(spec),
        },
        "spec": rule_file(spec),
    }


@cache
def operator_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the operator's CRD for `kind`, made strict: a field the CRD
    does not define is an error (as `kubectl apply --validate=strict` reports it), not
    silently pruned by the API server."""
    path = SCHEMAS / f"monitoring.coreos.com_v1_{kind.lower()}.json"
    strict: dict[str, Any] = strict_schema(json.loads(path.read_text()))
    return strict


def operator_schema_problems(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Every way the objects break the operator's CRD schemas, 'Kind/name: path: message'."""
    problems = []
    for obj in objects:
        kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
        if obj.get("apiVersion") != OPERATOR_API_VERSION or kind not in OPERATOR_KINDS:
            problems.append(f"{kind}/{name}: not a {OPERATOR_API_VERSION} {OPERATOR_KINDS}")
            continue
        validator = jsonschema.Draft7Validator(operator_schema(kind))
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.path) or "(object)"
            problems.append(f"{kind}/{name}: {path}: {error.message}")
    return problems


def monitoring_files(
    spec: ReleaseSpec, prometheus_url: str = DEFAULT_PROMETHEUS, release_id: str | None = None
) -> dict[str, str]:
    """File name → content (the KEDA ScaledObject only for a given release: it scales that
    release's Deployment)."""
    files = {
        "prometheus-scrape-job.yml": to_yaml({"scrape_configs": [scrape_job(spec)]}),
        "rules.yml": to_yaml(rule_file(spec)),
        "alertmanager.yml": to_yaml(alertmanager_config()),
        "grafana-dashboard.json": json.dumps(dashboard(spec), indent=2),
        "prometheus-adapter-rules.yml": to_yaml(adapter_rules(spec)),
        "alloy.river": alloy_config(spec),
        # for the Prometheus Operator: instead of the scrape job and rules.yml
        "podmonitor.yml": to_yaml(pod_monitor(spec)),
        "prometheusrule.yml": to_yaml(prometheus_rule(spec)),
    }
    router = router_pod_monitor(spec)
    if router is not None:
        files["podmonitor-router.yml"] = to_yaml(router)
    keda = keda_scaled_object(spec, release_id, prometheus_url) if release_id else None
    if keda is not None:
        files["keda-scaledobject.yml"] = to_yaml(keda)
    return files


def write_monitoring(spec: ReleaseSpec, folder: Path, release_id: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in monitoring_files(spec, release_id=release_id).items():
        (folder / name).write_text(content)
        written.append(folder / name)
    return written
