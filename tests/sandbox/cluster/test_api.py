"""The sandbox's Kubernetes API, through the real `kubernetes` client."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import client, watch

from tests.fixtures.cluster import Kube, deployment


def body_of(error: client.ApiException) -> dict[str, object]:
    return json.loads(error.body)  # type: ignore[no-any-return]


def test_crud_with_resource_version_and_generation(kube: Kube) -> None:
    namespace = kube.namespace("crud")
    created = kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c", "labels": {"tier": "a"}}, "data": {"k": "v"}}
    )
    assert created.metadata.resource_version
    read = kube.core.read_namespaced_config_map("c", namespace)
    read.data["k"] = "w"
    replaced = kube.core.replace_namespaced_config_map("c", namespace, read)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(client.ApiException) as conflict:
        kube.core.replace_namespaced_config_map("c", namespace, read)  # stale resourceVersion
    assert conflict.value.status == 409
    assert "the object has been modified" in str(body_of(conflict.value)["message"])
    with pytest.raises(client.ApiException) as exists:
        kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    assert exists.value.status == 409
    assert body_of(exists.value)["reason"] == "AlreadyExists"
    kube.core.delete_namespaced_config_map("c", namespace)
    with pytest.raises(client.ApiException) as gone:
        kube.core.read_namespaced_config_map("c", namespace)
    assert gone.value.status == 404


def test_generation_counts_spec_changes_only(kube: Kube) -> None:
    namespace = kube.namespace("gen")
    first = kube.apply(namespace, deployment("d", replicas=0))
    assert first.metadata.generation == 1
    labelled = kube.apps.patch_namespaced_deployment(
        "d", namespace, {"metadata": {"labels": {"x": "y"}}}
    )
    assert labelled.metadata.generation == 1
    scaled = kube.apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 2}})
    assert scaled.spec.replicas == 2
    assert kube.apps.read_namespaced_deployment("d", namespace).metadata.generation == 2


def test_server_side_apply_conflicts_with_another_manager(kube: Kube) -> None:
    namespace = kube.namespace("ssa")
    kube.apply(namespace, deployment("d", replicas=0), manager="llm-rollout")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 2}}, field_manager="kubectl-scale"
    )
    with pytest.raises(client.ApiException) as conflict:
        kube.apply(namespace, deployment("d", replicas=0), manager="llm-rollout")
    assert conflict.value.status == 409
    status = body_of(conflict.value)
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-scale" with subresource "scale" '
        "using apps/v1: .spec.replicas"
    )
    forced = kube.apps.patch_namespaced_deployment(
        "d",
        namespace,
        deployment("d", replicas=0),
        field_manager="llm-rollout",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert forced.spec.replicas == 0
    managers = {entry.manager: entry.fields_v1 for entry in forced.metadata.managed_fields}
    assert "f:replicas" in json.dumps(managers["llm-rollout"])


def test_apply_removes_fields_the_manager_stopped_applying(kube: Kube) -> None:
    namespace = kube.namespace("prune")
    with_label = deployment("d", replicas=0)
    with_label["metadata"]["labels"] = {"a": "1", "b": "2"}
    kube.apply(namespace, with_label)
    with_label["metadata"]["labels"] = {"a": "1"}
    assert kube.apply(namespace, with_label).metadata.labels == {"a": "1"}


def test_patch_formats(kube: Kube) -> None:
    namespace = kube.namespace("patch")
    kube.apply(namespace, deployment("d", replicas=0))
    kube.apps.patch_namespaced_deployment(
        "d",
        namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels", "value": {"j": "p"}},
        ],
    )  # JSON patch (a list body)
    merged = kube.apps.patch_namespaced_deployment(
        "d",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "vllm",
                                "image": "registry.sandbox.local/vllm-metrics-emulator:2",
                            }
                        ]
                    }
                }
            }
        },
        _content_type="application/strategic-merge-patch+json",
    )
    container = merged.spec.template.spec.containers[0]
    assert container.image.endswith(":2")
    assert container.readiness_probe is not None  # merged by name, not replaced
    assert merged.metadata.labels == {"j": "p"}


def test_label_and_field_selectors(kube: Kube) -> None:
    namespace = kube.namespace("select")
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        kube.core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"tier": tier}}}
        )

    def names(**kwargs: str) -> list[str]:
        items = kube.core.list_namespaced_config_map(namespace, **kwargs).items
        return [item.metadata.name for item in items]

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier in (db),tier!=web") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]


def test_watch_streams_events(kube: Kube) -> None:
    namespace = kube.namespace("watch")
    seen: list[tuple[str, str]] = []

    def change() -> None:
        time.sleep(0.3)
        kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}})
        kube.core.patch_namespaced_config_map("w", namespace, {"data": {"k": "v"}})
        kube.core.delete_namespaced_config_map("w", namespace)

    threading.Thread(target=change).start()
    stream = watch.Watch()
    for event in stream.stream(kube.core.list_namespaced_config_map, namespace, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            stream.stop()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_objects_need_their_namespace(kube: Kube) -> None:
    with pytest.raises(client.ApiException) as missing:
        kube.core.create_namespaced_config_map("nowhere", {"metadata": {"name": "c"}})
    assert missing.value.status == 404
    assert body_of(missing.value)["message"] == 'namespaces "nowhere" not found'


def test_discovery_lists_every_served_kind(kube: Kube) -> None:
    def get(path: str) -> dict[str, object]:
        request = urllib.request.Request(
            kube.cluster.url + path, headers={"Authorization": "Bearer sandbox"}
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    core = {r["name"] for r in get("/api/v1")["resources"]}  # type: ignore[index, union-attr]
    assert {
        "pods",
        "pods/log",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumes",
        "persistentvolumeclaims",
        "nodes",
        "events",
        "namespaces",
    } <= core
    groups = {g["name"] for g in get("/apis")["groups"]}  # type: ignore[index, union-attr]
    assert {"apps", "autoscaling", "policy", "batch"} <= groups
    apps = {r["name"] for r in get("/apis/apps/v1")["resources"]}  # type: ignore[index, union-attr]
    assert {"deployments", "deployments/status", "deployments/scale", "replicasets"} <= apps
    for path in ("/apis/autoscaling/v2", "/apis/policy/v1", "/apis/batch/v1"):
        assert get(path)["resources"]
