"""Field ownership (managedFields) as a real API server keeps it, driven through the real
`kubernetes` client and kubectl. Expected answers are written from the upstream source:
kubernetes-sigs/structured-merge-diff `merge/update.go` (conflicts are the other managers'
fields that an apply modifies or adds; force moves them) and k8s.io/apimachinery
`pkg/util/managedfields/internal/` (`managedfields.go` BuildManagerIdentifier: manager +
operation + apiVersion + subresource; `scalehandler.go`: a /scale write is its own entry
owning spec.replicas; `conflict.go`: the 409 message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.cluster import Kube, deployment
from tests.sandbox.cluster.test_kubectl import kubectl


def body_of(error: client.ApiException) -> dict[str, Any]:
    return json.loads(error.body)  # type: ignore[no-any-return]


def entries(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Deployment's managedFields as plain dicts (no client model classes)."""
    raw = kube.api.call_api(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return json.loads(raw.data)["metadata"]["managedFields"]  # type: ignore[no-any-return]


def entry(found: list[dict[str, Any]], manager: str, **identity: str) -> dict[str, Any] | None:
    return next(
        (
            e
            for e in found
            if e["manager"] == manager and all(e.get(k) == v for k, v in identity.items())
        ),
        None,
    )


def apply(
    kube: Kube, namespace: str, obj: dict[str, Any], manager: str, force: bool = False
) -> Any:
    return kube.apps.patch_namespaced_deployment(
        obj["metadata"]["name"],
        namespace,
        obj,
        field_manager=manager,
        force=force,
        _content_type="application/apply-patch+yaml",
    )


def test_a_scale_write_is_its_own_entry_and_the_next_apply_of_replicas_conflicts(
    kube: Kube,
) -> None:
    namespace = kube.namespace("scale-owner")
    apply(kube, namespace, deployment("d", replicas=1), "llm-rollout")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 0}}, field_manager="llm-rollout"
    )
    found = entries(kube, namespace, "d")
    scale = entry(found, "llm-rollout", operation="Update", subresource="scale")
    assert scale is not None, found
    assert scale["apiVersion"] == "apps/v1"
    assert scale["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    applied = entry(found, "llm-rollout", operation="Apply")
    assert applied is not None and "f:replicas" not in applied["fieldsV1"]["f:spec"]
    # same manager name, other identity (Apply vs Update/scale): a conflict, not a no-op
    with pytest.raises(client.ApiException) as conflict:
        apply(kube, namespace, deployment("d", replicas=1), "llm-rollout")
    status = body_of(conflict.value)
    assert (conflict.value.status, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "llm-rollout" with subresource "scale" '
        "using apps/v1: .spec.replicas"
    )
    assert status["details"]["causes"] == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "llm-rollout" with subresource "scale" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    assert kube.apps.read_namespaced_deployment("d", namespace).spec.replicas == 0


def test_applying_the_value_a_scale_write_set_is_shared_not_a_conflict(kube: Kube) -> None:
    namespace = kube.namespace("scale-shared")
    apply(kube, namespace, deployment("d", replicas=1), "llm-rollout")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 0}}, field_manager="hpa"
    )
    apply(kube, namespace, deployment("d", replicas=0), "llm-rollout")  # equal value: shared
    found = entries(kube, namespace, "d")
    applied = entry(found, "llm-rollout", operation="Apply")
    assert applied is not None and "f:replicas" in applied["fieldsV1"]["f:spec"]
    assert entry(found, "hpa", subresource="scale") is not None
    # a scale write of an unchanged value takes nothing from anyone
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 0}}, field_manager="other"
    )
    assert entry(entries(kube, namespace, "d"), "other") is None


def test_force_apply_takes_replicas_from_the_scale_entry(kube: Kube) -> None:
    namespace = kube.namespace("scale-force")
    apply(kube, namespace, deployment("d", replicas=1), "llm-rollout")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 0}}, field_manager="llm-rollout"
    )
    forced = apply(kube, namespace, deployment("d", replicas=2), "llm-rollout", force=True)
    assert forced.spec.replicas == 2
    found = entries(kube, namespace, "d")
    assert entry(found, "llm-rollout", subresource="scale") is None  # it owned nothing else
    applied = entry(found, "llm-rollout", operation="Apply")
    assert applied is not None and "f:replicas" in applied["fieldsV1"]["f:spec"]
    apply(kube, namespace, deployment("d", replicas=1), "llm-rollout")  # no conflict now


def test_a_status_write_is_recorded_with_subresource_status(kube: Kube) -> None:
    namespace = kube.namespace("status-owner")
    apply(kube, namespace, deployment("d", replicas=0), "llm-rollout")
    kube.apps.patch_namespaced_deployment_status(
        "d", namespace, {"status": {"observedGeneration": 7}}, field_manager="someone"
    )
    status = entry(entries(kube, namespace, "d"), "someone", subresource="status")
    assert status is not None
    assert status["operation"] == "Update"
    assert set(status["fieldsV1"]) == {"f:status"}


def test_containers_env_and_ports_are_owned_item_by_item(kube: Kube) -> None:
    namespace = kube.namespace("keyed")
    apply(kube, namespace, deployment("d", replicas=0, env={"A": "1"}), "llm-rollout")
    applied = entry(entries(kube, namespace, "d"), "llm-rollout", operation="Apply")
    assert applied is not None
    containers = applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    vllm = containers['k:{"name":"vllm"}']
    assert "." in vllm and "f:image" in vllm
    assert 'k:{"name":"A"}' in vllm["f:env"]
    assert 'k:{"containerPort":8000,"protocol":"TCP"}' in vllm["f:ports"]
    # `kubectl set image` owns only that container's image afterwards
    kube.apps.patch_namespaced_deployment(
        "d",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "other:2"}]}}}},
        field_manager="kubectl-set",
    )
    with pytest.raises(client.ApiException) as conflict:
        apply(kube, namespace, deployment("d", replicas=0, env={"A": "1"}), "llm-rollout")
    assert body_of(conflict.value)["details"]["causes"][0]["field"] == (
        '.spec.template.spec.containers[name="vllm"].image'
    )


def test_two_managers_conflicting_are_listed_by_manager(kube: Kube) -> None:
    namespace = kube.namespace("many")
    apply(kube, namespace, deployment("d", replicas=0, env={"A": "1"}), "llm-rollout")
    apply(kube, namespace, {**deployment("d", replicas=0), "spec": {"replicas": 0}}, "x")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 1}}, field_manager="hpa"
    )
    kube.apps.patch_namespaced_deployment(
        "d",
        namespace,
        {"spec": {"progressDeadlineSeconds": 99}},
        field_manager="editor",
    )
    with pytest.raises(client.ApiException) as conflict:
        apply(kube, namespace, deployment("d", replicas=0, env={"A": "1"}), "llm-rollout")
    assert body_of(conflict.value)["message"] == (
        "Apply failed with 2 conflicts: "
        'conflicts with "editor" using apps/v1:\n- .spec.progressDeadlineSeconds\n'
        'conflicts with "hpa" with subresource "scale" using apps/v1:\n- .spec.replicas'
    )


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: emu, namespace: partial}
spec:
  replicas: 0
  selector: {matchLabels: {app: emu}}
  template:
    metadata: {labels: {app: emu}}
    spec:
      containers:
      - name: vllm
        image: registry.sandbox.local/vllm-metrics-emulator:1
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 8000, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
      - name: sidecar
        image: registry.sandbox.local/vllm-metrics-emulator:1
        env: [{name: C, value: "3"}]
"""
PARTIAL = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: emu, namespace: partial}
spec:
  template:
    spec:
      containers:
      - name: vllm
        image: registry.sandbox.local/vllm-metrics-emulator:2
        env: [{name: B, value: "changed"}]
"""


def test_force_conflicts_with_a_partial_container_list_merges_by_name(
    kube: Kube, tmp_path: Path
) -> None:
    kube.namespace("partial")
    (tmp_path / "full.yaml").write_text(MANIFEST)
    (tmp_path / "partial.yaml").write_text(PARTIAL)
    first = kubectl(
        kube, "apply", "--server-side", "--validate=false", "-f", str(tmp_path / "full.yaml")
    )
    assert first.returncode == 0, first.stderr
    plain = kubectl(
        kube,
        "apply",
        "--server-side",
        "--validate=false",
        "--field-manager=hand",
        "-f",
        str(tmp_path / "partial.yaml"),
    )
    assert plain.returncode == 1
    assert 'Apply failed with 2 conflicts: conflicts with "kubectl":' in plain.stderr
    assert '.spec.template.spec.containers[name="vllm"].image' in plain.stderr
    forced = kubectl(
        kube,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--validate=false",
        "--field-manager=hand",
        "-f",
        str(tmp_path / "partial.yaml"),
    )
    assert forced.returncode == 0, forced.stderr
    live = kube.apps.read_namespaced_deployment("emu", "partial")
    vllm, sidecar = live.spec.template.spec.containers
    assert (vllm.name, sidecar.name) == ("vllm", "sidecar")
    assert vllm.image.endswith(":2")
    assert [(e.name, e.value) for e in vllm.env] == [("A", "1"), ("B", "changed")]
    assert [p.container_port for p in vllm.ports] == [8000]
    assert vllm.readiness_probe.http_get.path == "/health"
    assert [(e.name, e.value) for e in sidecar.env] == [("C", "3")]
    found = entries(kube, "partial", "emu")
    kubectl_entry = entry(found, "kubectl", operation="Apply")
    assert kubectl_entry is not None
    vllm_fields = kubectl_entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][
        'k:{"name":"vllm"}'
    ]
    assert "f:image" not in vllm_fields  # moved to "hand" by the force
    assert (
        'k:{"name":"B"}' not in vllm_fields["f:env"]
        or "f:value" not in (vllm_fields["f:env"]['k:{"name":"B"}'])
    )


def test_an_applied_list_item_left_out_of_the_next_apply_is_removed_whole(kube: Kube) -> None:
    # Service ports are a map list keyed by (port, protocol): changing the port re-keys the
    # item, so the old item (no longer owned by anyone) goes away entirely, as
    # structured-merge-diff `typed/remove.go` removes a path set's list items whole; no
    # half item (name and targetPort without its port) may stay behind
    namespace = kube.namespace("ports")

    def service(port: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
            ]},
        }  # fmt: skip

    for port in (8000, 8080):
        kube.core.patch_namespaced_service(
            "web",
            namespace,
            service(port),
            field_manager="tests",
            _content_type="application/apply-patch+yaml",
        )
    ports = kube.core.read_namespaced_service("web", namespace).spec.ports
    assert [(p.name, p.port, p.protocol) for p in ports] == [("http", 8080, "TCP")]
