"""The release lifecycle against the sandbox cluster, with emulated vLLM pods: canary start,
promote, abort, rollback, and every fault, with available ≥ desired at every poll."""

from __future__ import annotations

from typing import Any

import pytest

from k8s.cluster import ClusterClient, ClusterUnavailable, FieldOwnershipConflict, RolloutStatus
from k8s.history import ReleaseHistory, UnknownRelease
from k8s.lifecycle import Lifecycle
from k8s.preflight import InsufficientGpus
from k8s.release import Release
from sandbox.cluster.faults import ApiFault
from spec import ReleaseSpec
from tests.fixtures.cluster import Kube, wait_for
from tests.k8s.conftest import COMMIT, release


class Invariant:
    """Records every poll of a rollout and checks stable never dips below desired."""

    def __init__(self, desired: int) -> None:
        self.desired = desired
        self.polls: list[RolloutStatus] = []

    def __call__(self, status: RolloutStatus) -> None:
        self.polls.append(status)
        assert status.available >= self.desired, status


def replicasets(kube: Kube, namespace: str, name: str) -> list[Any]:
    return [
        rs
        for rs in kube.apps.list_namespaced_replica_set(namespace).items
        if rs.metadata.name.startswith(f"{name}-") and "canary" not in rs.metadata.name
    ]


def installed(lifecycle: Lifecycle) -> Release:
    first = release(lifecycle.spec, 1)
    lifecycle.first_release(first)
    assert lifecycle.wait(lifecycle.stable_name()).phase == "complete"
    return first


def test_canary_start_promote_keeps_stable_serving(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    second = release(spec, 2)
    lifecycle.start_canary(second)
    canary = lifecycle.wait(lifecycle.canary_name())
    assert canary.phase == "complete" and canary.available == 1
    stable = kube.apps.read_namespaced_deployment(spec.name, spec.namespace)
    assert stable.metadata.annotations["llm-rollout.io/release"] == first.release_id
    invariant = Invariant(spec.replicas)
    status = lifecycle.promote(on_poll=invariant)
    assert status.phase == "complete"
    assert len(invariant.polls) >= 1
    history = lifecycle.history.read()
    assert (history.stable, history.canary) == (second.release_id, None)
    assert (
        kube.apps.read_namespaced_deployment(lifecycle.canary_name(), spec.namespace).spec.replicas
        == 0
    )


def test_abort_stops_the_canary_and_leaves_stable_alone(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    before = replicasets(kube, spec.namespace, spec.name)
    lifecycle.start_canary(release(spec, 2))
    lifecycle.wait(lifecycle.canary_name())
    lifecycle.abort()
    assert (
        kube.apps.read_namespaced_deployment(lifecycle.canary_name(), spec.namespace).spec.replicas
        == 0
    )
    after = replicasets(kube, spec.namespace, spec.name)
    assert [rs.metadata.name for rs in after] == [rs.metadata.name for rs in before]
    assert lifecycle.history.read().canary is None


def test_rollback_reapplies_the_recorded_release_without_a_new_replicaset(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    lifecycle.start_rolling(release(spec, 2))  # a rolling release, not yet marked stable
    assert lifecycle.wait(lifecycle.stable_name()).phase == "complete"
    assert len(replicasets(kube, spec.namespace, spec.name)) == 2
    invariant = Invariant(spec.replicas)
    assert lifecycle.rollback(on_poll=invariant).phase == "complete"
    assert lifecycle.rollback(on_poll=invariant).phase == "complete"  # twice: still no new RS
    assert len(replicasets(kube, spec.namespace, spec.name)) == 2
    live = kube.apps.read_namespaced_deployment(spec.name, spec.namespace)
    assert live.metadata.annotations["llm-rollout.io/release"] == first.release_id


def test_a_rollback_target_missing_from_history_is_a_clear_error(lifecycle: Lifecycle) -> None:
    first = installed(lifecycle)
    with pytest.raises(UnknownRelease, match=rf"rel-0000000000 .* known: {first.release_id}"):
        lifecycle.rollback("rel-0000000000")


def test_an_unknown_image_stalls_with_the_reason_and_stable_keeps_serving(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    lifecycle.start_canary(release(spec, 2, image="registry.example.com/nowhere:1"))
    status = lifecycle.wait(lifecycle.canary_name(), timeout=60)
    assert status.phase == "stalled"
    assert status.reason.startswith("ImagePullBackOff")
    stable = lifecycle.cluster.rollout_status(lifecycle.stable_name(), spec.namespace)
    assert stable.phase == "complete" and stable.available == spec.replicas


def test_crash_looping_pods_are_detected(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    crashing = Release(spec, COMMIT, "registry.sandbox.local/python:3")  # no command: exits
    lifecycle.start_canary(crashing)
    status = lifecycle.wait(lifecycle.canary_name(), timeout=60)
    assert status.phase == "stalled"
    assert status.reason.startswith("CrashLoopBackOff")


def test_preflight_refuses_a_canary_without_free_gpus(
    lifecycle: Lifecycle, spec: ReleaseSpec
) -> None:
    greedy = spec.model_copy(
        update={
            "resources": spec.resources.model_copy(update={"gpus": 4, "gpus_per_node": 4}),
            "serving": spec.serving.model_copy(update={"tensor_parallel_size": 4}),
        }
    )
    hungry = Lifecycle(lifecycle.cluster, greedy)
    hungry.first_release(release(greedy, 1))  # 2 replicas × 4 GPUs: both nodes full
    assert hungry.wait(hungry.stable_name()).phase == "complete"
    with pytest.raises(InsufficientGpus, match=r"needs 4 GPU\(s\) .* only 0 of the 8"):
        hungry.start_canary(release(greedy, 2))
    assert hungry.history.read().canary is None


def test_an_unschedulable_surge_is_reported_as_stalled(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    kube.apply(
        spec.namespace,
        {  # a greedy neighbour takes every free GPU after preflight
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "greedy"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "greedy"}},
                "template": {
                    "metadata": {"labels": {"app": "greedy"}},
                    "spec": {
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [
                            {
                                "name": "c",
                                "image": "registry.sandbox.local/vllm-metrics-emulator:1",
                                "resources": {"limits": {"nvidia.com/gpu": 2}},
                            }
                        ],
                    },
                },
            },
        },
    )

    def greedy_bound() -> bool:
        pods = kube.core.list_namespaced_pod(spec.namespace, label_selector="app=greedy").items
        return len(pods) == 3 and all(p.spec.node_name for p in pods)

    wait_for(greedy_bound)
    with pytest.raises(InsufficientGpus, match=r"needs 1 GPU\(s\) .* only 0 of the 8"):
        lifecycle.start_rolling(release(spec, 2))
    # and if the GPUs go anyway (preflight raced), the stall is reported with the reason
    lifecycle._record(release(spec, 2))
    lifecycle._apply_record(lifecycle.history.read().releases[-1])
    status = lifecycle.wait(lifecycle.stable_name(), timeout=30)
    assert status.phase == "stalled"
    assert status.reason.startswith("Unschedulable: 0/3 nodes are available")
    assert "Insufficient nvidia.com/gpu" in status.reason
    assert status.available == spec.replicas  # the old pods keep serving


def test_a_hand_edit_is_surfaced_not_overwritten(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    kube.apps.patch_namespaced_deployment_scale(
        spec.name, spec.namespace, {"spec": {"replicas": 3}}, field_manager="kubectl-scale"
    )
    with pytest.raises(
        FieldOwnershipConflict, match=r'\.spec\.replicas is owned by "kubectl-scale"'
    ):
        lifecycle.start_rolling(release(spec, 2))
    assert kube.apps.read_namespaced_deployment(spec.name, spec.namespace).spec.replicas == 3


def test_a_stale_resource_version_is_reread_and_retried(
    lifecycle: Lifecycle, cluster: ClusterClient, kube: Kube
) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    history = ReleaseHistory(cluster, spec)
    interfering = {"done": False}
    original = cluster.update_with_retry

    def racing_update(kind: str, name: str, namespace: str, change: Any) -> Any:
        def change_then_race(current: Any) -> Any:
            wanted = change(current)
            if not interfering["done"]:  # someone else writes between our read and write
                interfering["done"] = True
                kube.core.patch_namespaced_config_map(
                    name, namespace, {"metadata": {"labels": {"x": "y"}}}
                )
            return wanted

        return original(kind, name, namespace, change_then_race)

    cluster.update_with_retry = racing_update  # type: ignore[method-assign]
    history.mark(canary=history.read().stable)
    assert interfering["done"]
    assert history.read().canary == history.read().stable


def test_api_errors_are_retried_within_bounds(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    faults = kube.cluster.api.faults
    for status in (500, 503, 429):
        faults.add(ApiFault("status", method="PATCH", status=status, times=2))
    lifecycle.start_rolling(release(spec, 2))  # succeeds after six failures over three applies
    faults.add(ApiFault("status", status=503, times=None))
    with pytest.raises(ClusterUnavailable, match=r"kept failing .* after 5 attempts"):
        lifecycle.cluster.rollout_status(spec.name, spec.namespace)
    faults.clear()
    assert lifecycle.wait(lifecycle.stable_name()).phase == "complete"


def test_timeouts_are_retried_then_fail_cleanly(kube: Kube, spec: ReleaseSpec) -> None:
    impatient = ClusterClient(kube.api, request_timeout=(1.0, 0.5))
    kube.cluster.api.faults.add(ApiFault("slow", method="GET", delay_seconds=1.5, times=1))
    assert impatient.list_objects("Node")  # one timeout, then an answer
    kube.cluster.api.faults.add(ApiFault("slow", method="GET", delay_seconds=1.5, times=None))
    with pytest.raises(ClusterUnavailable, match="cannot reach the Kubernetes API"):
        impatient.list_objects("Node")
    kube.cluster.api.faults.clear()


def test_a_write_whose_response_was_lost_is_reapplied_idempotently(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    kube.cluster.api.faults.add(
        ApiFault("lose_response", method="PATCH", path_contains="/deployments/", times=1)
    )
    second = release(spec, 2)
    lifecycle.start_rolling(second)
    assert lifecycle.wait(lifecycle.stable_name()).phase == "complete"
    live = kube.apps.read_namespaced_deployment(spec.name, spec.namespace)
    assert live.metadata.annotations["llm-rollout.io/release"] == second.release_id
    assert len(replicasets(kube, spec.namespace, spec.name)) == 2


def test_bad_good_bad_good_releases_of_one_model_back_to_back(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    """Every canary after the first finds the canary Deployment scaled to 0 by the last
    promotion or rollback; under the API server's ownership rules (a /scale write is its own
    manager) starting it again must not be a field conflict."""
    spec = lifecycle.spec
    installed(lifecycle)
    crashing = Release(spec, COMMIT, "registry.sandbox.local/python:3")  # no command: exits
    good = [release(spec, 2), release(spec, 3)]
    bad = [crashing, release(spec, 4, image="registry.example.com/nowhere:1")]
    for attempt in range(2):
        lifecycle.start_canary(bad[attempt])
        assert lifecycle.wait(lifecycle.canary_name(), timeout=60).phase == "stalled"
        if attempt == 0:
            assert lifecycle.rollback(on_poll=Invariant(spec.replicas)).phase == "complete"
        else:
            lifecycle.abort()
        lifecycle.start_canary(good[attempt])
        assert lifecycle.wait(lifecycle.canary_name()).phase == "complete"
        assert lifecycle.promote(on_poll=Invariant(spec.replicas)).phase == "complete"
        history = lifecycle.history.read()
        assert (history.stable, history.canary) == (good[attempt].release_id, None)
    canary = kube.apps.read_namespaced_deployment(lifecycle.canary_name(), spec.namespace)
    assert canary.spec.replicas == 0
    stable = kube.apps.read_namespaced_deployment(spec.name, spec.namespace)
    assert stable.metadata.annotations["llm-rollout.io/release"] == good[1].release_id
