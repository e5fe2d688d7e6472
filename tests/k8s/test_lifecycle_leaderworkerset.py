"""The release lifecycle for a model whose replica spans two nodes: every release is a
LeaderWorkerSet (a group of a leader and a worker a replica) and the same flow as for
Deployments runs it — installed as stable, a canary beside it, promoted group by group with
the model's ready groups never below desired and never more than replicas + max_surge groups
holding nodes, rolled back to a retained release or re-created exactly from the history, a
canary whose worker cannot start stalled with the worker's reason. Emulated vLLM pods on a
sandbox of eight 4-GPU nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llm_rollout.cli.release import _status_document
from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient, RolloutStatus
from llm_rollout.k8s.lifecycle import Lifecycle, release_of
from llm_rollout.k8s.preflight import InsufficientGpus
from llm_rollout.k8s.release import Release
from llm_rollout.spec import ReleaseSpec
from sandbox.cluster.cluster import NodeSpec
from tests.conftest import two_nodes_a_replica
from tests.fixtures.cluster import EMULATOR_IMAGE, GPU_TOLERATION, Kube, running_kube
from tests.k8s.conftest import COMMIT

GROUP, VERSION, PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
GROUP_KEY = "leaderworkerset.sigs.k8s.io/group-key"
MISSING_IMAGE = "registry.example.com/nowhere:1"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    """Eight nodes of 4 GPUs: stable's two groups, a canary group and a surge group."""
    nodes = tuple(NodeSpec(f"gpu-node-{n}", gpus=4) for n in range(1, 9))
    with running_kube(tmp_path / "cluster", nodes) as started:
        yield started


@pytest.fixture
def wide(spec: ReleaseSpec) -> ReleaseSpec:
    """The tests' demo spec with two nodes a replica."""
    return two_nodes_a_replica(spec)


@pytest.fixture
def lifecycle(cluster: ClusterClient, wide: ReleaseSpec) -> Lifecycle:
    return Lifecycle(cluster, wide, poll_seconds=0.2)


def release(spec: ReleaseSpec, version: int, image: str | None = None) -> Release:
    return Release(spec, COMMIT, image or EMULATOR_IMAGE.replace(":1", f":{version}"))


def custom(kube: Kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api)


def lws(kube: Kube, spec: ReleaseSpec, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom(kube).get_namespaced_custom_object(
        GROUP, VERSION, spec.namespace, PLURAL, name
    )
    return found


def replicas(lifecycle: Lifecycle) -> dict[str, int]:
    """Release → the groups its LeaderWorkerSet is asked for."""
    return {release_of(w): int(w["spec"]["replicas"]) for w in lifecycle.workloads()}


def groups_holding_nodes(kube: Kube, spec: ReleaseSpec) -> set[str]:
    """Every group with a pod left (running, starting or terminating), any release."""
    pods = kube.core.list_namespaced_pod(spec.namespace, label_selector=GROUP_KEY).items
    return {p.metadata.labels[GROUP_KEY] for p in pods}


def leader_uids(kube: Kube, spec: ReleaseSpec, release_id: str) -> set[str]:
    pods = kube.core.list_namespaced_pod(
        spec.namespace,
        label_selector=f"llm-rollout.io/release={release_id},llm-rollout.io/role=leader",
    ).items
    return {p.metadata.uid for p in pods if not p.metadata.deletion_timestamp}


class GroupInvariant:
    """At every poll of a shift: the model's ready groups (what its Service serves from, the
    leaders of complete groups) never below desired, and no more groups holding nodes than
    replicas + max_surge."""

    def __init__(self, lifecycle: Lifecycle, kube: Kube) -> None:
        self.lifecycle, self.kube = lifecycle, kube
        self.desired = lifecycle.spec.replicas
        self.most = lifecycle.spec.replicas + int(lifecycle.spec.rollout.max_surge)
        self.polls: list[tuple[int, int]] = []

    def __call__(self, status: RolloutStatus) -> None:
        ready = sum(
            int((w.get("status") or {}).get("readyReplicas", 0)) for w in self.lifecycle.workloads()
        )
        holding = len(groups_holding_nodes(self.kube, self.lifecycle.spec))
        self.polls.append((ready, holding))
        assert ready >= self.desired, (ready, status)
        assert holding <= self.most, (holding, status)


def installed(lifecycle: Lifecycle) -> Release:
    first = release(lifecycle.spec, 1)
    lifecycle.first_release(first)
    assert lifecycle.wait(lifecycle.workload_name(first.release_id)).phase == "complete"
    return first


def test_a_release_is_installed_canaried_and_promoted_as_leaderworkersets(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    assert kube.apps.list_namespaced_deployment(spec.namespace).items == []
    stable = lws(kube, spec, lifecycle.workload_name(first.release_id))
    assert stable["metadata"]["labels"]["llm-rollout.io/track"] == "stable"
    assert stable["status"]["readyReplicas"] == spec.replicas == 2

    second = release(spec, 2)
    lifecycle.start_canary(second)
    name = lifecycle.workload_name(second.release_id)
    canary = lifecycle.wait(name, timeout=120)
    assert (canary.phase, canary.desired, canary.available) == ("complete", 1, 1)
    assert lws(kube, spec, name)["metadata"]["labels"]["llm-rollout.io/track"] == "canary"
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 1}
    loaded = leader_uids(kube, spec, second.release_id)

    invariant = GroupInvariant(lifecycle, kube)
    status = lifecycle.promote(on_poll=invariant, timeout=240)
    assert status.phase == "complete", status
    assert len(invariant.polls) >= 2
    history = lifecycle.history.read()
    assert (history.stable, history.canary) == (second.release_id, None)
    assert replicas(lifecycle) == {first.release_id: 0, second.release_id: 2}
    # the canary's group serves on as stable: one more group started, not a new set
    after = leader_uids(kube, spec, second.release_id)
    assert loaded < after and len(after) == 2
    promoted = lws(kube, spec, name)
    assert promoted["metadata"]["labels"]["llm-rollout.io/track"] == "stable"
    idle = lws(kube, spec, lifecycle.workload_name(first.release_id))
    assert idle["metadata"]["labels"]["llm-rollout.io/track"] == "idle"


def test_rollback_scales_a_retained_set_up_and_recreates_one_beyond_retention_from_history(
    cluster: ClusterClient, kube: Kube, wide: ReleaseSpec
) -> None:
    keeps_one = wide.model_copy(
        update={"rollout": wide.rollout.model_copy(update={"retained_releases": 1})}
    )
    lifecycle = Lifecycle(cluster, keeps_one, poll_seconds=0.2)
    first = installed(lifecycle)
    second, third = release(keeps_one, 2), release(keeps_one, 3)
    for candidate in (second, third):
        invariant = GroupInvariant(lifecycle, kube)
        assert lifecycle.roll(candidate, invariant, timeout=240).phase == "complete"
    # stable and one earlier release kept at zero; the first one's set deleted
    assert replicas(lifecycle) == {second.release_id: 0, third.release_id: 2}
    retained = lws(kube, keeps_one, lifecycle.workload_name(second.release_id))

    status = lifecycle.rollback(second.release_id, GroupInvariant(lifecycle, kube), timeout=240)
    assert status.phase == "complete", status
    again = lws(kube, keeps_one, lifecycle.workload_name(second.release_id))
    assert again["metadata"]["uid"] == retained["metadata"]["uid"]  # scaled, not re-created
    assert replicas(lifecycle) == {second.release_id: 2, third.release_id: 0}

    status = lifecycle.rollback(first.release_id, GroupInvariant(lifecycle, kube), timeout=240)
    assert status.phase == "complete", status
    restored = lws(kube, keeps_one, lifecycle.workload_name(first.release_id))
    record = lifecycle.history.read().find(first.release_id)
    assert record is not None
    recorded = next(m for m in record.manifests if m["kind"] == "LeaderWorkerSet")
    assert restored["spec"]["leaderWorkerTemplate"] == recorded["spec"]["leaderWorkerTemplate"]
    assert restored["metadata"]["annotations"] == recorded["metadata"]["annotations"]
    assert replicas(lifecycle)[first.release_id] == 2
    assert lifecycle.history.read().stable == first.release_id


def test_a_canary_whose_worker_cannot_start_stalls_with_the_workers_reason(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    broken = release(spec, 2)
    lifecycle._record(broken)
    canary = manifests.workload(broken, spec.rollout.canary_replicas)
    worker = canary["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    worker["spec"]["containers"][0]["image"] = MISSING_IMAGE  # the leader's image is fine
    lifecycle._apply_release(canary)
    status = lifecycle.wait(lifecycle.workload_name(broken.release_id), timeout=60)
    assert status.phase == "stalled", status
    assert status.reason.startswith("ImagePullBackOff") and MISSING_IMAGE in status.reason
    stable = lifecycle.cluster.rollout_status(
        lifecycle.workload_name(first.release_id), spec.namespace, "LeaderWorkerSet"
    )
    assert stable.phase == "complete" and stable.available == spec.replicas


def test_a_shift_waits_for_a_whole_group_and_says_so(lifecycle: Lifecycle, kube: Kube) -> None:
    """Stable holds four nodes; a neighbour takes one GPU on each of the other four. Twelve
    GPUs are free but no node has four: the new release is not scaled up (its group could
    never be placed whole) and the old one keeps serving."""
    spec = lifecycle.spec
    first = installed(lifecycle)
    taken = {p.spec.node_name for p in kube.core.list_namespaced_pod(spec.namespace).items}
    free_nodes = sorted({n.metadata.name for n in kube.core.list_node().items} - taken)
    assert len(free_nodes) == 4
    for node in free_nodes:
        kube.core.create_namespaced_pod(spec.namespace, neighbour_pod(node))
    second = release(spec, 2)
    with pytest.raises(InsufficientGpus, match=r"1 replica\(s\) of 2 pods × 4 GPU\(s\)"):
        lifecycle.roll(second)
    lifecycle._record(second)
    lifecycle._apply_release(manifests.workload(second, 0))
    status = lifecycle.shift(second.release_id, GroupInvariant(lifecycle, kube), timeout=3)
    assert status.phase == "stalled"
    assert "no free GPUs for the next group (2 nodes × 4 needed)" in status.reason
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 0}


def neighbour_pod(node: str) -> dict[str, Any]:
    """Another team's pod holding one GPU of `node`."""
    return {
        "metadata": {"name": f"neighbour-{node}", "labels": {"app": "neighbour"}},
        "spec": {
            "nodeName": node,
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {
                    "name": "c",
                    "image": EMULATOR_IMAGE,
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }


def test_status_and_history_show_the_leaderworkersets(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    second = release(spec, 2, image=MISSING_IMAGE)
    lifecycle.start_canary(second)
    assert lifecycle.wait(lifecycle.workload_name(second.release_id), timeout=60).done
    document = _status_document(spec, lifecycle.cluster)
    rows = {row["release_id"]: row for row in document["deployments"]}
    assert rows[first.release_id] | {"reason": ""} == {
        "name": lifecycle.workload_name(first.release_id),
        "kind": "LeaderWorkerSet",
        "release_id": first.release_id,
        "track": "stable",
        "available": 2,
        "desired": 2,
        "phase": "complete",
        "reason": "",
    }
    assert rows[second.release_id]["track"] == "canary"
    assert rows[second.release_id]["phase"] == "stalled"
    assert rows[second.release_id]["reason"].startswith("ImagePullBackOff")
    record = lifecycle.history.read().find(first.release_id)
    assert record is not None
    kinds = {m["kind"] for m in record.manifests}
    assert "LeaderWorkerSet" in kinds and "Deployment" not in kinds


def test_a_crash_looping_canary_stalls_at_the_progress_deadline(
    lifecycle: Lifecycle, cluster: ClusterClient, wide: ReleaseSpec
) -> None:
    """A pod that restarts takes its group down and the group is created again, so no pod
    ever shows CrashLoopBackOff; LWS has no progress deadline of its own: the spec's
    applies."""
    installed(lifecycle)
    quick = wide.model_copy(
        update={
            "rollout": wide.rollout.model_copy(
                update={"progress_deadline_seconds": 15, "startup_budget_seconds": 5}
            )
        }
    )
    impatient = Lifecycle(cluster, quick, poll_seconds=0.2)
    crashing = Release(quick, COMMIT, "registry.sandbox.local/python:3")  # exits at once
    impatient.start_canary(crashing)
    status = impatient.wait(impatient.workload_name(crashing.release_id), timeout=90)
    assert status.phase == "stalled", status
    assert status.reason.startswith("ProgressDeadlineExceeded: progressing for")
    assert status.available == 0
