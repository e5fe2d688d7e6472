"""The router's monitoring as rendered for a model with `routing:`: a real Prometheus applying
the product's relabelling to what Kubernetes discovery reports for a router pod gives its
series the model's name (and no release: no gate query takes them in); the router's rules,
panels and PodMonitor are in the model's monitoring files."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from prometheus_client import start_http_server

from llm_rollout.k8s.labels import HTTP_PORT_NAME
from llm_rollout.k8s.router_manifests import router_deployment, router_name
from llm_rollout.monitoring.artifacts import monitoring_files, operator_schema_problems
from llm_rollout.router.metrics import create_metrics
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.discovery import pod_targets
from sandbox.ports import free_port
from tests.conftest import DEMO_SPEC
from tests.fixtures.prometheus import LocalPrometheus, prometheus

__all__ = ["prometheus"]

ROUTED = ReleaseSpec.model_validate(
    {
        **load_spec(DEMO_SPEC).model_dump(mode="json"),
        "routing": {"image": "registry.sandbox.local/llm-rollout:test", "replicas": 1},
    }
)
PLAIN = load_spec(DEMO_SPEC)


def router_pod(spec: ReleaseSpec, port: int) -> client.V1Pod:
    """A running router pod as the API server returns it: the rendered template's labels."""
    template = router_deployment(spec)["spec"]["template"]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=f"{router_name(spec)}-5d9c7-x2x4q",
            namespace=spec.namespace,
            labels=template["metadata"]["labels"],
        ),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="router",
                    ports=[client.V1ContainerPort(container_port=port, name=HTTP_PORT_NAME)],
                )
            ]
        ),
        status=client.V1PodStatus(pod_ip="127.0.0.1", phase="Running"),
    )


def test_a_router_pod_is_scraped_with_the_models_name_and_no_release(
    prometheus: LocalPrometheus,
) -> None:
    metrics = create_metrics()
    metrics.requests.labels(route="default", backend="rel-1", outcome="ok").inc(3)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        prometheus.set_targets(pod_targets([router_pod(ROUTED, port)]))
        deadline = time.monotonic() + 30
        found: list[dict[str, object]] = []
        while not found and time.monotonic() < deadline:
            found = prometheus.query("llm_rollout_router_requests_total")
            time.sleep(0.5)
    finally:
        server.shutdown()
    assert len(found) == 1, found
    labels = found[0]["metric"]
    assert isinstance(labels, dict)
    assert labels["model"] == ROUTED.name  # not '<model>-router'
    assert labels["namespace"] == ROUTED.namespace and "release" not in labels
    assert labels["pod"].startswith(router_name(ROUTED))


def test_a_model_with_a_router_renders_its_rules_panels_and_pod_monitor() -> None:
    files = monitoring_files(ROUTED)
    groups = [g["name"] for g in yaml.safe_load(files["rules.yml"])["groups"]]
    assert f"llm-rollout-router-{ROUTED.name}" in groups
    rule = yaml.safe_load(files["prometheusrule.yml"])
    assert f"llm-rollout-router-{ROUTED.name}" in [g["name"] for g in rule["spec"]["groups"]]
    panels = json.loads(files["grafana-dashboard.json"])["panels"]
    titles = [p["title"] for p in panels]
    assert "Router: fallbacks by reason" in titles
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids  # Grafana needs unique panel ids
    positions = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(positions) == len(set(positions)), positions  # no panel drawn over another
    monitor = yaml.safe_load(files["podmonitor-router.yml"])
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == (
        router_name(ROUTED)
    )
    assert not operator_schema_problems([monitor])


def test_a_model_without_a_router_renders_none_of_it() -> None:
    files = monitoring_files(PLAIN)
    assert "podmonitor-router.yml" not in files
    assert "router" not in files["rules.yml"]
    assert "Router:" not in files["grafana-dashboard.json"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_rendered_rules_with_the_router_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(monitoring_files(ROUTED)["rules.yml"])
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
