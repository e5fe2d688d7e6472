"""The release lifecycle against the sandbox cluster, with emulated vLLM pods: one Deployment
per release; canary start, promotion by scaling (the canary's pods become stable), abort,
rollback to a retained or a deleted release, retention, the autoscaler moving with the
release, the migration from the two-Deployment layout, and every fault — with the model's
available pods never below desired at any poll."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import (
    ClusterClient,
    ClusterUnavailable,
    FieldOwnershipConflict,
    RolloutStatus,
)
from llm_rollout.k8s.history import ReleaseHistory, UnknownRelease, new_record
from llm_rollout.k8s.labels import legacy_deployment_names
from llm_rollout.k8s.lifecycle import Lifecycle, release_of
from llm_rollout.k8s.preflight import InsufficientGpus
from llm_rollout.k8s.release import Release
from llm_rollout.spec import ReleaseSpec
from sandbox.cluster.faults import ApiFault
from tests.fixtures.cluster import Kube, deployment, wait_for
from tests.k8s.conftest import COMMIT, release


class Invariant:
    """At every poll of a shift: the model's available pods, over all its Deployments (what
    its Service serves from), are never below desired."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.desired = lifecycle.spec.replicas
        self.polls: list[int] = []

    def __call__(self, status: RolloutStatus) -> None:
        available = serving(self.lifecycle)
        self.polls.append(available)
        assert available >= self.desired, (available, status)


def serving(lifecycle: Lifecycle) -> int:
    return sum(
        int((d.get("status") or {}).get("availableReplicas", 0)) for d in lifecycle.workloads()
    )


def replicas(lifecycle: Lifecycle) -> dict[str, int]:
    """Release → desired replicas of its Deployment."""
    return {release_of(d): int(d["spec"]["replicas"]) for d in lifecycle.workloads()}


def pods_of(kube: Kube, namespace: str, release_id: str) -> set[str]:
    pods = kube.core.list_namespaced_pod(
        namespace, label_selector=f"llm-rollout.io/release={release_id}"
    ).items
    return {p.metadata.uid for p in pods if not p.metadata.deletion_timestamp}


def replicasets(kube: Kube, namespace: str, name: str) -> list[str]:
    return sorted(
        rs.metadata.name
        for rs in kube.apps.list_namespaced_replica_set(namespace).items
        if rs.metadata.name.rsplit("-", 1)[0] == name
    )


def installed(lifecycle: Lifecycle) -> Release:
    first = release(lifecycle.spec, 1)
    lifecycle.first_release(first)
    assert lifecycle.wait(lifecycle.workload_name(first.release_id)).phase == "complete"
    return first


def canary_ready(lifecycle: Lifecycle, candidate: Release) -> RolloutStatus:
    lifecycle.start_canary(candidate)
    return lifecycle.wait(lifecycle.workload_name(candidate.release_id), timeout=60)


def test_promotion_scales_the_canary_up_and_keeps_its_loaded_pods(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    second = release(spec, 2)
    canary = canary_ready(lifecycle, second)
    assert canary.phase == "complete" and canary.available == 1
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 1}
    loaded = pods_of(kube, spec.namespace, second.release_id)
    invariant = Invariant(lifecycle)
    status = lifecycle.promote(on_poll=invariant)
    assert status.phase == "complete" and len(invariant.polls) >= 2
    history = lifecycle.history.read()
    assert (history.stable, history.canary) == (second.release_id, None)
    # the canary's pod serves on as stable: one more pod started, not a new set
    after = pods_of(kube, spec.namespace, second.release_id)
    assert loaded < after and len(after) == spec.replicas
    assert replicas(lifecycle) == {first.release_id: 0, second.release_id: 2}
    name = lifecycle.workload_name(second.release_id)
    assert len(replicasets(kube, spec.namespace, name)) == 1
    labels = kube.apps.read_namespaced_deployment(name, spec.namespace).metadata.labels
    assert labels["llm-rollout.io/track"] == "stable"


def test_promotion_needs_no_spare_gpu(lifecycle: Lifecycle, kube: Kube) -> None:
    """Stable and the canary hold 3 of 8 GPUs; another team takes the other 5. Rewriting
    stable's pod template (the two-Deployment design) needed a surge pod's GPU and stalled;
    scaling releases frees a GPU before each new pod needs one."""
    spec = lifecycle.spec
    first = installed(lifecycle)
    second = release(spec, 2)
    assert canary_ready(lifecycle, second).phase == "complete"
    kube.apply(spec.namespace, deployment("another-team", replicas=5, gpus=1))

    def others_running() -> bool:
        status = kube.apps.read_namespaced_deployment("another-team", spec.namespace).status
        return bool(status and status.available_replicas == 5)

    wait_for(others_running, 60, "the other team's pods to take the free GPUs")
    invariant = Invariant(lifecycle)
    assert lifecycle.promote(on_poll=invariant).phase == "complete"
    assert replicas(lifecycle) == {first.release_id: 0, second.release_id: 2}
    other = kube.apps.read_namespaced_deployment("another-team", spec.namespace)
    assert other.status.available_replicas == 5  # nobody else's pods were touched


def test_a_shift_never_holds_more_pods_than_replicas_plus_surge(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    """Pods of the old release still draining hold their GPUs: the new release grows only
    when they are gone, so the model never holds more than replicas + max_surge pods."""
    spec = lifecycle.spec
    installed(lifecycle)
    second = release(spec, 2)
    assert canary_ready(lifecycle, second).phase == "complete"
    held: list[int] = []

    def count(status: RolloutStatus) -> None:
        pods = kube.core.list_namespaced_pod(
            spec.namespace, label_selector="app.kubernetes.io/name=" + spec.name
        ).items
        held.append(sum(1 for p in pods if p.status.phase not in ("Succeeded", "Failed")))

    assert lifecycle.promote(on_poll=count).phase == "complete"
    assert max(held) <= spec.replicas + int(spec.rollout.max_surge), held


def test_abort_stops_the_canary_and_leaves_stable_alone(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    before = pods_of(kube, spec.namespace, first.release_id)
    second = release(spec, 2)
    canary_ready(lifecycle, second)
    lifecycle.abort()
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 0}
    assert pods_of(kube, spec.namespace, first.release_id) == before
    assert lifecycle.history.read().canary is None


def test_rollback_scales_the_retained_release_back_up_without_a_new_replicaset(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    second = release(spec, 2)
    assert lifecycle.roll(second, Invariant(lifecycle)).phase == "complete"  # no canary
    assert replicas(lifecycle) == {first.release_id: 0, second.release_id: 2}
    name = lifecycle.workload_name(first.release_id)
    sets = replicasets(kube, spec.namespace, name)
    assert lifecycle.rollback(first.release_id, Invariant(lifecycle)).phase == "complete"
    assert lifecycle.rollback(first.release_id, Invariant(lifecycle)).phase == "complete"
    assert replicasets(kube, spec.namespace, name) == sets  # scaled, not re-created
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 0}
    assert lifecycle.history.read().stable == first.release_id


def test_a_release_beyond_retention_is_deleted_and_restored_exactly_from_history(
    lifecycle: Lifecycle, kube: Kube, spec: ReleaseSpec
) -> None:
    keeps_one = spec.model_copy(
        update={"rollout": spec.rollout.model_copy(update={"retained_releases": 1})}
    )
    lifecycle = Lifecycle(lifecycle.cluster, keeps_one, poll_seconds=lifecycle.poll_seconds)
    first = installed(lifecycle)
    later = [release(keeps_one, n) for n in (2, 3)]
    for candidate in later:
        assert lifecycle.roll(candidate, Invariant(lifecycle)).phase == "complete"
    # stable and one earlier release kept; the first one's Deployment deleted
    assert replicas(lifecycle) == {later[0].release_id: 0, later[1].release_id: 2}
    assert lifecycle.rollback(first.release_id, Invariant(lifecycle)).phase == "complete"
    restored = kube.apps.read_namespaced_deployment(
        lifecycle.workload_name(first.release_id), keeps_one.namespace
    )
    recorded = lifecycle.history.read().find(first.release_id)
    assert recorded is not None
    template = next(m for m in recorded.manifests if m["kind"] == "Deployment")["spec"]["template"]
    live = kube.api.sanitize_for_serialization(restored.spec.template)
    assert live["spec"]["containers"][0]["image"] == template["spec"]["containers"][0]["image"]
    assert live["metadata"]["annotations"] == template["metadata"]["annotations"]
    assert replicas(lifecycle)[first.release_id] == 2


def test_a_rollback_target_missing_from_history_is_a_clear_error(lifecycle: Lifecycle) -> None:
    first = installed(lifecycle)
    with pytest.raises(UnknownRelease, match=rf"rel-0000000000 .* known: {first.release_id}"):
        lifecycle.rollback("rel-0000000000")


def test_the_autoscaler_scales_only_the_stable_release_and_moves_with_promotion(
    kube: Kube, cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    scaled = ReleaseSpec.model_validate(
        {**spec.model_dump(), "autoscaling": {"min": 2, "max": 4, "target": 5}}
    )
    lifecycle = Lifecycle(cluster, scaled, poll_seconds=0.2)
    first = installed(lifecycle)
    autoscaling = client.AutoscalingV2Api(kube.api)

    def target() -> str:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(scaled.name, scaled.namespace)
        return str(hpa.spec.scale_target_ref.name)

    assert target() == lifecycle.workload_name(first.release_id)
    second = release(scaled, 2)
    canary_ready(lifecycle, second)
    assert target() == lifecycle.workload_name(first.release_id)  # never the canary
    # the HPA had scaled stable to 3: the promoted release takes over at that level
    cluster.scale(lifecycle.workload_name(first.release_id), scaled.namespace, 3)
    wait_for(lambda: serving(lifecycle) == 4)
    assert lifecycle.promote().phase == "complete"
    assert target() == lifecycle.workload_name(second.release_id)
    assert replicas(lifecycle) == {first.release_id: 0, second.release_id: 3}


def test_a_model_installed_with_two_fixed_deployments_is_adopted_without_downtime(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    """A model installed by an earlier llm-rollout: '<model>' (stable, selecting
    `track: stable`) and '<model>-canary' at zero, with its release in the history. The next
    release shifts away from them like from any release, then removes them."""
    spec = lifecycle.spec
    old = release(spec, 1)
    stable_name, canary_name = legacy_deployment_names(spec)
    lifecycle._apply_platform()
    for name, track, count in ((stable_name, "stable", 2), (canary_name, "canary", 0)):
        legacy = manifests.deployment(old, count)
        legacy["metadata"]["name"] = name
        legacy["metadata"]["labels"]["track"] = track
        selector = {"app.kubernetes.io/name": spec.name, "track": track}
        legacy["spec"]["selector"] = {"matchLabels": selector}
        pod_labels = legacy["spec"]["template"]["metadata"]["labels"]
        pod_labels.update(selector)
        pod_labels["app.kubernetes.io/instance"] = name
        pod_labels["llm-rollout.io/release"] = old.release_id
        lifecycle.cluster.apply(legacy)
        if track == "stable":
            lifecycle.history.record(
                new_record(old.release_id, COMMIT, old.image, [legacy], "earlier version")
            )
    lifecycle.history.mark(stable=old.release_id)
    assert lifecycle.wait(stable_name).phase == "complete"
    second = release(spec, 2)
    assert canary_ready(lifecycle, second).phase == "complete"
    invariant = Invariant(lifecycle)
    assert lifecycle.promote(on_poll=invariant).phase == "complete"
    assert min(invariant.polls) >= spec.replicas
    names = {d["metadata"]["name"] for d in lifecycle.workloads()}
    assert names == {lifecycle.workload_name(second.release_id)}  # the old two are gone
    # and the earlier release is still restorable, now as a Deployment of its own
    assert lifecycle.rollback(old.release_id, Invariant(lifecycle)).phase == "complete"
    assert replicas(lifecycle) == {old.release_id: 2, second.release_id: 0}


def test_an_unknown_image_stalls_with_the_reason_and_stable_keeps_serving(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
    status = canary_ready(lifecycle, release(spec, 2, image="registry.example.com/nowhere:1"))
    assert status.phase == "stalled"
    assert status.reason.startswith("ImagePullBackOff")
    stable = lifecycle.cluster.rollout_status(
        lifecycle.workload_name(first.release_id), spec.namespace
    )
    assert stable.phase == "complete" and stable.available == spec.replicas


def test_crash_looping_pods_are_detected(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    crashing = Release(spec, COMMIT, "registry.sandbox.local/python:3")  # no command: exits
    status = canary_ready(lifecycle, crashing)
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
    hungry = Lifecycle(lifecycle.cluster, greedy, poll_seconds=lifecycle.poll_seconds)
    installed(hungry)  # 2 replicas × 4 GPUs: both nodes full
    with pytest.raises(InsufficientGpus, match=r"needs 4 GPU\(s\) .* only 0 of the 8"):
        hungry.start_canary(release(greedy, 2))
    assert hungry.history.read().canary is None


def test_a_shift_waits_for_free_gpus_and_reports_it(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    first = installed(lifecycle)
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
        lifecycle.roll(release(spec, 2))
    # and if the GPUs go anyway (preflight raced), the shift starts no pod that cannot be
    # placed, keeps the old release serving, and says why it stopped
    second = release(spec, 2)
    lifecycle._record(second)
    lifecycle._apply_release(manifests.deployment(second, 0))
    status = lifecycle.shift(second.release_id, Invariant(lifecycle), timeout=3)
    assert status.phase == "stalled"
    assert "no free GPU for the next pod" in status.reason
    assert replicas(lifecycle) == {first.release_id: 2, second.release_id: 0}


def test_a_hand_edit_is_surfaced_not_overwritten(lifecycle: Lifecycle, kube: Kube) -> None:
    spec = lifecycle.spec
    installed(lifecycle)
    second = release(spec, 2)
    canary_ready(lifecycle, second)
    name = lifecycle.workload_name(second.release_id)
    kube.apps.patch_namespaced_deployment_scale(
        name, spec.namespace, {"spec": {"replicas": 3}}, field_manager="kubectl-scale"
    )
    with pytest.raises(
        FieldOwnershipConflict, match=r'\.spec\.replicas is owned by "kubectl-scale"'
    ):
        lifecycle.start_canary(second)
    assert kube.apps.read_namespaced_deployment(name, spec.namespace).spec.replicas == 3


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
    second = release(spec, 2)
    assert lifecycle.roll(second).phase == "complete"  # after six failed PATCHes
    faults.add(ApiFault("status", status=503, times=None))
    with pytest.raises(ClusterUnavailable, match=r"kept failing .* after 5 attempts"):
        lifecycle.cluster.rollout_status(lifecycle.workload_name(second.release_id), spec.namespace)
    faults.clear()


def test_timeouts_are_retried_then_fail_cleanly(kube: Kube, spec: ReleaseSpec) -> None:
    impatient = ClusterClient(kube.api, request_timeout=(1.0, 0.5), backoff_seconds=0.01)
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
    assert lifecycle.roll(second).phase == "complete"
    name = lifecycle.workload_name(second.release_id)
    live = kube.apps.read_namespaced_deployment(name, spec.namespace)
    assert live.metadata.annotations["llm-rollout.io/release"] == second.release_id
    assert len(replicasets(kube, spec.namespace, name)) == 1


def test_bad_good_bad_good_releases_of_one_model_back_to_back(
    lifecycle: Lifecycle, kube: Kube
) -> None:
    """Releases that come back (a rejected one launched again) find their Deployment scaled
    to 0 by the last rollback; under the API server's ownership rules (a /scale write is its
    own manager) starting it again must not be a field conflict."""
    spec = lifecycle.spec
    installed(lifecycle)
    crashing = Release(spec, COMMIT, "registry.sandbox.local/python:3")  # no command: exits
    good = [release(spec, 2), release(spec, 3)]
    bad = [crashing, release(spec, 4, image="registry.example.com/nowhere:1")]
    for attempt in range(2):
        assert canary_ready(lifecycle, bad[attempt]).phase == "stalled"
        if attempt == 0:
            assert lifecycle.rollback(on_poll=Invariant(lifecycle)).phase == "complete"
        else:
            lifecycle.abort()
        assert canary_ready(lifecycle, good[attempt]).phase == "complete"
        assert lifecycle.promote(on_poll=Invariant(lifecycle)).phase == "complete"
        history = lifecycle.history.read()
        assert (history.stable, history.canary) == (good[attempt].release_id, None)
    # the first bad release launched again: its Deployment at 0 comes back as a canary
    assert canary_ready(lifecycle, bad[0]).phase == "stalled"
    lifecycle.abort()
    assert replicas(lifecycle)[good[1].release_id] == spec.replicas
