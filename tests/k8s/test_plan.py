"""`k8s.plan`: what applying a release would change, from the sandbox API server's
server-side dry run, driven by the real `kubernetes` client."""

from __future__ import annotations

import pytest

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.plan import FieldChange, field_changes, plan_objects
from llm_rollout.k8s.release import Release
from llm_rollout.spec import ReleaseSpec
from tests.fixtures.cluster import EMULATOR_IMAGE

COMMIT, NEXT_COMMIT = "c" * 40, "d" * 40


def objects_of(spec: ReleaseSpec, commit: str = COMMIT) -> list[dict]:
    return manifests.all_objects(Release(spec, commit, EMULATOR_IMAGE))


def install(cluster: ClusterClient, objects: list[dict]) -> None:
    for obj in objects:
        cluster.apply(obj)


def test_on_an_empty_cluster_everything_is_created_and_nothing_is_applied(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    objects = objects_of(spec)
    plan = plan_objects(cluster, objects)
    assert [o.action for o in plan.objects] == ["create"] * len(objects)
    assert [(o.kind, o.name) for o in plan.objects] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    # the objects inside the new namespace are created with it
    assert all("with namespace" in o.note for o in plan.objects if o.namespace)
    assert cluster.find("Namespace", spec.namespace) is None
    assert plan.to_json()["summary"]["create"] == len(objects)


def test_the_installed_release_plans_as_unchanged(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    # server defaults (clusterIP, strategy fields, terminationMessagePath…) are not changes
    install(cluster, objects_of(spec))
    plan = plan_objects(cluster, objects_of(spec))
    assert {o.ref: o.action for o in plan.objects if o.action != "unchanged"} == {}


def test_a_new_release_changes_or_creates_only_its_deployments(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    install(cluster, objects_of(spec))
    plan = plan_objects(cluster, objects_of(spec, NEXT_COMMIT))
    moved = [o for o in plan.objects if o.action != "unchanged"]
    assert moved, "a new weights commit must change something"
    assert {o.kind for o in moved} <= {"Deployment", "HorizontalPodAutoscaler"}
    assert next(o for o in plan.objects if o.kind == "Service").action == "unchanged"
    for obj in (o for o in moved if o.action == "change"):
        # where a Deployment changes in place, the diff shows the new commit going in
        assert any(NEXT_COMMIT in str(change.after) for change in obj.changes), obj.changes


def test_a_changed_field_is_shown_with_its_path_and_nothing_is_persisted(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    install(cluster, objects_of(spec))
    live = cluster.get("Service", manifests.service(spec)["metadata"]["name"], spec.namespace)
    changed = manifests.service(spec)
    changed["metadata"]["labels"]["team"] = "inference"
    changed["spec"]["sessionAffinity"] = "ClientIP"
    (service,) = plan_objects(cluster, [changed]).objects
    assert service.action == "change"
    affinity = next(c for c in service.changes if c.path == "spec.sessionAffinity")
    assert (affinity.before, affinity.after) == (live["spec"].get("sessionAffinity"), "ClientIP")
    assert FieldChange("metadata.labels.team", None, "inference") in service.changes
    after = cluster.get("Service", live["metadata"]["name"], spec.namespace)
    assert after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


def test_a_field_someone_else_owns_is_a_conflict(cluster: ClusterClient, spec: ReleaseSpec) -> None:
    install(cluster, objects_of(spec))
    ours = manifests.service(spec)
    label = next(iter(ours["metadata"]["labels"]))
    by_hand = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**ours["metadata"], "labels": {label: "edited-by-hand"}},
    }
    ClusterClient(cluster.api, field_manager="kubectl-edit").apply(by_hand, force=True)
    (service,) = plan_objects(cluster, [manifests.service(spec)]).objects
    assert service.action == "conflict"
    assert any(manager == "kubectl-edit" for manager, _ in service.conflicts)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, [FieldChange("a", 1, 2)]),
        ({}, {"a": {"b": 1}}, [FieldChange("a", None, {"b": 1})]),
        (
            {"c": [{"name": "vllm", "image": "x"}]},
            {"c": [{"name": "vllm", "image": "y"}]},
            [FieldChange("c[vllm].image", "x", "y")],
        ),
        ({"args": ["a", "b"]}, {"args": ["a", "c"]}, [FieldChange("args[1]", "b", "c")]),
        ({"args": ["a"]}, {"args": ["a", "c"]}, [FieldChange("args", ["a"], ["a", "c"])]),
    ],
)
def test_field_changes_name_the_leaves_that_differ(
    before: dict, after: dict, expected: list[FieldChange]
) -> None:
    assert list(field_changes(before, after)) == expected


def test_a_changed_port_shows_as_the_ports_field_of_its_named_item(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    install(cluster, objects_of(spec))
    changed = manifests.service(spec)
    name = changed["spec"]["ports"][0]["name"]
    before = changed["spec"]["ports"][0]["port"]
    changed["spec"]["ports"][0]["port"] = before + 1
    (service,) = plan_objects(cluster, [changed]).objects
    assert FieldChange(f"spec.ports[{name}].port", before, before + 1) in service.changes


def test_a_multi_node_release_plans_its_leaderworkerset_and_then_as_unchanged(
    cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    wide = spec.model_copy(
        update={
            "serving": spec.serving.model_copy(
                update={"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
            ),
            "resources": spec.resources.model_copy(update={"gpus": 8, "gpus_per_node": 4}),
        }
    )
    objects = objects_of(wide)
    plan = plan_objects(cluster, objects)
    assert ("LeaderWorkerSet", "create") in {(o.kind, o.action) for o in plan.objects}
    assert "Deployment" not in {o.kind for o in plan.objects}
    install(cluster, objects)
    again = plan_objects(cluster, objects_of(wide))
    assert {o.ref: o.action for o in again.objects if o.action != "unchanged"} == {}
