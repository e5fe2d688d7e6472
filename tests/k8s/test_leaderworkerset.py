"""Multi-node replicas as LeaderWorkerSets: rendered from the release's Deployment, valid for
the LWS CRD, and run by the sandbox's LWS controller as groups created, ready, replaced and
rolled together."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.leaderworkerset import (
    MULTI_NODE_SCRIPT,
    NotMultiNode,
    group_size,
    leaderworkerset,
    lws_schema_problems,
)
from llm_rollout.k8s.release import Release
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.cluster.cluster import NodeSpec
from tests.conftest import DEMO_SPEC, two_nodes_a_replica
from tests.fixtures.cluster import EMULATOR_IMAGE, Kube, running_kube, wait_for

GROUP, VERSION, PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
COMMIT = "c" * 40


def two_node_spec(replicas: int = 2) -> ReleaseSpec:
    """The demo model with two nodes a replica."""
    return two_nodes_a_replica(load_spec(DEMO_SPEC), replicas=replicas)


def rendered(spec: ReleaseSpec, image: str = EMULATOR_IMAGE) -> tuple[list[Any], dict[str, Any]]:
    """The release's other objects, and its LeaderWorkerSet: what render writes for a replica
    wider than a node, in place of the Deployment (made from it)."""
    release = Release(spec, COMMIT, image)
    objects = manifests.all_objects(release)
    assert not [o for o in objects if o["kind"] == "Deployment"]
    selector = next(o for o in objects if o["kind"] == "Service")["spec"]["selector"]
    made = leaderworkerset(manifests.deployment(release, spec.replicas), spec, selector)
    assert [o for o in objects if o["kind"] == "LeaderWorkerSet"] == [made]
    others = [o for o in objects if o["kind"] not in ("LeaderWorkerSet", "HorizontalPodAutoscaler")]
    return others, made


def test_a_two_node_replica_renders_a_valid_leaderworkerset() -> None:
    spec = two_node_spec()
    _, lws = rendered(spec, "vllm/vllm-openai:v0.32.0")
    assert lws_schema_problems([lws]) == []
    template = lws["spec"]["leaderWorkerTemplate"]
    assert group_size(spec) == template["size"] == 2
    assert template["restartPolicy"] == "RecreateGroupOnPodRestart"
    (leader,) = template["leaderTemplate"]["spec"]["containers"]
    (worker,) = template["workerTemplate"]["spec"]["containers"]
    command = leader["command"][2]
    assert command.startswith(
        f"bash {MULTI_NODE_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && exec vllm serve"
    )
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 2" in command
    assert "--distributed-executor-backend ray" in command
    assert "args" not in leader and leader["readinessProbe"]
    assert worker["command"][2] == (
        f"bash {MULTI_NODE_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"
    )
    assert not {"ports", "readinessProbe", "startupProbe", "livenessProbe"} & set(worker)
    for container in (leader, worker):  # one node's GPUs a pod
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    # the Service and the metrics see leaders only
    service_keys = {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
    assert service_keys <= set(template["leaderTemplate"]["metadata"]["labels"])
    assert not service_keys & set(template["workerTemplate"]["metadata"]["labels"])


def test_the_schema_refuses_what_the_crd_does_not_define() -> None:
    _, lws = rendered(two_node_spec())
    broken = copy.deepcopy(lws)
    broken["spec"]["leaderWorkerTemplate"]["sise"] = 2
    (problem,) = lws_schema_problems([broken])
    assert "spec.leaderWorkerTemplate" in problem and "'sise' was unexpected" in problem
    # render, plan and the lifecycle validate through schema_problems: the CRD's schema
    (found,) = schema_problems([broken])
    name = lws["metadata"]["name"]
    assert str(found).startswith(f"LeaderWorkerSet/{name} (Kubernetes 1.29.0-1.33.0): ")
    assert "the CRD's schema (LWS v0.10.0): spec.leaderWorkerTemplate" in found.message


def test_a_replica_that_fits_one_node_is_a_deployment() -> None:
    demo = load_spec(DEMO_SPEC)
    deployment = next(
        o
        for o in manifests.all_objects(Release(demo, COMMIT, EMULATOR_IMAGE))
        if o["kind"] == "Deployment"
    )
    with pytest.raises(NotMultiNode, match="fit one node"):
        leaderworkerset(deployment, demo, {})


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    # two replicas of two 4-GPU pods, and room for one surge group during a rolling update
    nodes = tuple(NodeSpec(f"gpu-node-{n}", gpus=4) for n in range(1, 7))
    with running_kube(tmp_path / "cluster", nodes) as started:
        yield started


def custom(kube: Kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api)


def pods(kube: Kube, spec: ReleaseSpec, selector: str = "") -> dict[str, Any]:
    found = kube.core.list_namespaced_pod(spec.namespace, label_selector=selector).items
    return {p.metadata.name: p for p in found if p.metadata.deletion_timestamp is None}


def status(kube: Kube, spec: ReleaseSpec, name: str) -> dict[str, Any]:
    lws = custom(kube).get_namespaced_custom_object(GROUP, VERSION, spec.namespace, PLURAL, name)
    return lws.get("status") or {}


@pytest.fixture
def running(kube: Kube) -> tuple[ReleaseSpec, dict[str, Any]]:
    """A two-replica, two-node-a-replica release installed in the sandbox, all groups ready."""
    spec = two_node_spec()
    others, lws = rendered(spec)
    cluster = ClusterClient(kube.api)
    for obj in others:
        cluster.apply(obj)
    custom(kube).create_namespaced_custom_object(
        GROUP, VERSION, spec.namespace, PLURAL, lws, field_validation="Strict"
    )
    name = lws["metadata"]["name"]
    wait_for(lambda: status(kube, spec, name).get("readyReplicas") == 2, 120, "2 ready groups")
    return spec, lws


def test_the_sandbox_runs_each_replica_as_a_group_on_two_nodes(
    kube: Kube, running: tuple[ReleaseSpec, dict[str, Any]]
) -> None:
    spec, lws = running
    name = lws["metadata"]["name"]
    found = pods(kube, spec)
    assert set(found) == {f"{name}-0", f"{name}-0-1", f"{name}-1", f"{name}-1-1"}
    assert len({p.spec.node_name for p in found.values()}) == 4  # one node a pod
    worker = found[f"{name}-1-1"]
    env = {e.name: e.value for e in worker.spec.containers[0].env}
    assert env["LWS_LEADER_ADDRESS"] == f"{name}-1.{name}.{spec.namespace}"
    assert (env["LWS_GROUP_SIZE"], env["LWS_WORKER_INDEX"]) == ("2", "1")
    assert worker.metadata.labels["leaderworkerset.sigs.k8s.io/group-index"] == "1"
    # the model's Service selects the two leaders only
    service = kube.core.read_namespaced_service(spec.name, spec.namespace)
    selector = ",".join(f"{k}={v}" for k, v in service.spec.selector.items())
    assert set(pods(kube, spec, selector)) == {f"{name}-0", f"{name}-1"}
    conditions = {c["type"]: c for c in status(kube, spec, name)["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Available"]["reason"] == "AllGroupsReady"


def test_a_lost_worker_recreates_its_whole_group(
    kube: Kube, running: tuple[ReleaseSpec, dict[str, Any]]
) -> None:
    spec, lws = running
    name = lws["metadata"]["name"]
    before = {n: p.metadata.uid for n, p in pods(kube, spec).items()}
    kube.core.delete_namespaced_pod(f"{name}-0-1", spec.namespace)

    def group_zero_replaced() -> bool:
        now = pods(kube, spec)
        return (
            f"{name}-0" in now
            and now[f"{name}-0"].metadata.uid != before[f"{name}-0"]
            and f"{name}-0-1" in now
            and status(kube, spec, name).get("readyReplicas") == 2
        )

    wait_for(group_zero_replaced, 120, "group 0 recreated and ready")
    after = pods(kube, spec)
    assert after[f"{name}-1"].metadata.uid == before[f"{name}-1"]  # the other group untouched
    assert after[f"{name}-1-1"].metadata.uid == before[f"{name}-1-1"]


def test_a_new_template_surges_a_group_and_never_drops_below_the_replicas(
    kube: Kube, running: tuple[ReleaseSpec, dict[str, Any]]
) -> None:
    spec, lws = running
    name = lws["metadata"]["name"]
    template = lws["spec"]["leaderWorkerTemplate"]
    for part in ("leaderTemplate", "workerTemplate"):
        template[part]["spec"]["containers"][0]["image"] = EMULATOR_IMAGE.replace(":1", ":2")
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, spec.namespace, PLURAL, name, {"spec": {"leaderWorkerTemplate": template}}
    )
    ready_counts: list[int] = []
    seen: set[str] = set()

    def all_new_and_ready() -> bool:
        current = status(kube, spec, name)
        ready_counts.append(current.get("readyReplicas", 0))
        found = pods(kube, spec)
        seen.update(found)
        conditions = {c["type"]: c["status"] for c in current.get("conditions") or []}
        return (
            set(found) == {f"{name}-0", f"{name}-0-1", f"{name}-1", f"{name}-1-1"}
            and {p.spec.containers[0].image for p in found.values()}
            == {EMULATOR_IMAGE.replace(":1", ":2")}
            and conditions.get("Available") == "True"
            and conditions.get("UpdateInProgress") == "False"
        )

    wait_for(all_new_and_ready, 180, "both groups on the new template, the surge group gone")
    # maxSurge 1, maxUnavailable 0 (the spec's rollout): a new group first, then the old ones
    # replaced one by one, so at least two groups were ready at every poll
    assert f"{name}-2" in seen and f"{name}-2-1" in seen  # the surge group
    assert min(ready_counts) >= 2
    assert set(pods(kube, spec)) == {f"{name}-0", f"{name}-0-1", f"{name}-1", f"{name}-1-1"}


def test_the_sandbox_api_refuses_an_unknown_field_as_an_api_server_does(kube: Kube) -> None:
    spec = two_node_spec()
    _, lws = rendered(spec)
    kube.namespace(spec.namespace)
    lws["spec"]["leaderWorkerTemplate"]["sise"] = 2
    with pytest.raises(client.ApiException) as refused:
        custom(kube).create_namespaced_custom_object(
            GROUP, VERSION, spec.namespace, PLURAL, lws, field_validation="Strict"
        )
    assert refused.value.status == 400
    message = json.loads(refused.value.body)["message"]
    assert 'strict decoding error: unknown field "spec.leaderWorkerTemplate.sise"' in message


def test_the_scale_subresource_sets_groups_and_scaling_down_removes_the_highest(
    kube: Kube, running: tuple[ReleaseSpec, dict[str, Any]]
) -> None:
    """The CRD's /scale (specReplicasPath .spec.replicas, statusReplicasPath .status.replicas,
    labelSelectorPath .status.hpaPodSelector) as the release lifecycle and an HPA use it."""
    spec, lws = running
    name = lws["metadata"]["name"]
    scale = custom(kube).get_namespaced_custom_object_scale(
        GROUP, VERSION, spec.namespace, PLURAL, name
    )
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (2, 2)
    assert scale["status"]["selector"] == (
        f"leaderworkerset.sigs.k8s.io/name={name},leaderworkerset.sigs.k8s.io/worker-index=0"
    )
    ClusterClient(kube.api).scale(name, spec.namespace, 1, "LeaderWorkerSet")

    def one_group_left() -> bool:
        current = custom(kube).get_namespaced_custom_object(
            GROUP, VERSION, spec.namespace, PLURAL, name
        )
        observed = current["status"].get("observedGeneration")
        return (
            set(pods(kube, spec)) == {f"{name}-0", f"{name}-0-1"}
            and observed == current["metadata"]["generation"]
            and current["status"].get("readyReplicas") == 1
        )

    wait_for(one_group_left, 60, "group 1 removed and the status caught up")
    status = ClusterClient(kube.api).rollout_status(name, spec.namespace, "LeaderWorkerSet")
    assert (status.phase, status.desired, status.available) == ("complete", 1, 1)


def test_a_scale_down_removes_groups_that_never_became_ready(kube: Kube) -> None:
    """Outside a rolling update, groups above `replicas` go at once, ready or not (the
    sandbox kept them as if they were a rolling update's surge)."""
    spec = two_node_spec()
    others, lws = rendered(spec, "registry.example.com/nowhere:1")
    cluster = ClusterClient(kube.api)
    for obj in others:
        cluster.apply(obj)
    cluster.apply(lws)
    name = lws["metadata"]["name"]
    wait_for(lambda: len(pods(kube, spec)) == 4, 60, "two groups created")
    cluster.scale(name, spec.namespace, 1, "LeaderWorkerSet")
    wait_for(
        lambda: set(pods(kube, spec)) == {f"{name}-0", f"{name}-0-1"},
        60,
        "the unready group 1 removed",
    )


def test_a_kind_without_a_scale_subresource_has_no_scale(kube: Kube) -> None:
    namespace = kube.namespace("no-scale")
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "plain"}})
    with pytest.raises(client.ApiException) as missing:
        kube.api.call_api(
            f"/api/v1/namespaces/{namespace}/configmaps/plain/scale",
            "GET",
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    assert missing.value.status == 404
