"""Deployment semantics in the sandbox cluster, with emulated vLLM pods (fast processes)."""

from __future__ import annotations

import fcntl
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.cluster.cluster import NETWORK_CLAIMS, NodeSpec, claim_network
from sandbox.cluster.controllers import DeploymentController
from sandbox.cluster.objects import scaled_value
from sandbox.cluster.store import ObjectStore
from tests.fixtures.cluster import Kube, deployment, start_kube, wait_for


def progressing(kube: Kube, namespace: str, name: str) -> Any:
    status = kube.apps.read_namespaced_deployment(name, namespace).status
    return next(c for c in status.conditions or [] if c.type == "Progressing")


def rolled_out(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    found = kube.apps.read_namespaced_deployment(name, namespace)
    status = found.status
    return bool(
        status
        and (status.observed_generation or 0) >= found.metadata.generation
        and status.updated_replicas == replicas
        and status.available_replicas == replicas
        and status.replicas == replicas
    )


def serve_through(kube: Kube, namespace: str, service: str) -> int:
    ip = kube.core.read_namespaced_service(service, namespace).spec.cluster_ip
    with urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=5) as response:
        return int(response.status)


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        ("25%", 3, True, 1),
        ("25%", 3, False, 0),
        ("50%", 5, True, 3),
        ("50%", 5, False, 2),
        (2, 10, True, 2),
        ("100%", 4, False, 4),
    ],
)
def test_percentages_round_as_kubernetes_does(
    value: int | str, total: int, round_up: bool, expected: int
) -> None:
    assert scaled_value(value, total, round_up, "25%") == expected


class WriteDuringThePass(ObjectStore):
    """A store where a client's write lands just after the controller lists Deployments."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: Callable[[], None] | None = None

    def list(self, resource: Any, *args: Any, **kwargs: Any) -> tuple[list[Any], int]:
        found = super().list(resource, *args, **kwargs)
        if self.pending and resource.kind == "Deployment":
            write, self.pending = self.pending, None
            write()
        return found


def test_a_spec_change_during_a_controller_pass_is_not_reported_as_rolled_out() -> None:
    # CI once saw a rolling update to an unknown image reported complete: the controller's
    # pass had listed the old spec, the client applied the new one, and the status written at
    # the end claimed the new generation with the old ReplicaSet's counts.
    store = WriteDuringThePass()
    controller = DeploymentController(store)
    deployments, pods = store.resource("deployments.apps"), store.resource("pods")
    store.create(deployments, "default", deployment("emu", replicas=1))
    controller.reconcile()
    for pod in store.list(pods, "default")[0]:  # the kubelet's part: the stable pod is ready
        pod["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        store.replace(pods, "default", pod["metadata"]["name"], pod, subresource="status")
    controller.reconcile()
    controller.reconcile()
    stable = store.get(deployments, "default", "emu")["status"]
    assert (stable["observedGeneration"], stable["updatedReplicas"]) == (1, 1)

    def client_applies_a_new_image() -> None:
        live = store.get(deployments, "default", "emu")
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.sandbox.local/x:2"
        store.replace(deployments, "default", "emu", live)

    store.pending = client_applies_a_new_image
    controller.reconcile()
    raced = store.get(deployments, "default", "emu")
    assert raced["metadata"]["generation"] == 2
    assert raced["status"]["observedGeneration"] == 1  # not a claim about the new spec

    controller.reconcile()
    controller.reconcile()  # the new ReplicaSet's surge pod exists; it can never be ready
    seen = store.get(deployments, "default", "emu")["status"]
    assert seen["observedGeneration"] == 2
    assert (seen["updatedReplicas"], seen["availableReplicas"], seen["replicas"]) == (1, 1, 2)


def test_rolling_update_keeps_every_replica_available(kube: Kube) -> None:
    namespace = kube.namespace("roll")
    kube.apply(namespace, deployment("emu", replicas=3, gpus=1))
    wait_for(lambda: rolled_out(kube, namespace, "emu", 3))
    kube.apply(namespace, deployment("emu", replicas=3, gpus=1, env={"LATENCY_SCALE": "1.3"}))
    lowest, most = 99, 0
    while not rolled_out(kube, namespace, "emu", 3):
        status = kube.apps.read_namespaced_deployment("emu", namespace).status
        lowest = min(lowest, status.available_replicas or 0)
        pods = kube.core.list_namespaced_pod(namespace).items
        most = max(most, len([p for p in pods if not p.metadata.deletion_timestamp]))
    assert lowest >= 3  # maxUnavailable 0
    assert most <= 4  # maxSurge 1
    replicasets = kube.apps.list_namespaced_replica_set(namespace).items
    revisions = sorted(
        (rs.metadata.annotations["deployment.kubernetes.io/revision"], rs.spec.replicas)
        for rs in replicasets
    )
    assert revisions == [("1", 0), ("2", 3)]
    condition = progressing(kube, namespace, "emu")
    assert (condition.status, condition.reason) == ("True", "NewReplicaSetAvailable")


def test_rollback_to_an_earlier_template_reuses_its_replicaset(kube: Kube) -> None:
    namespace = kube.namespace("back")
    first = deployment("emu", replicas=2)
    kube.apply(namespace, first)
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    kube.apply(namespace, deployment("emu", replicas=2, env={"LATENCY_SCALE": "2"}))
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    kube.apply(namespace, first)
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    replicasets = kube.apps.list_namespaced_replica_set(namespace).items
    assert len(replicasets) == 2  # no third ReplicaSet
    live = kube.apps.read_namespaced_deployment("emu", namespace)
    assert live.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


def test_unknown_image_stalls_while_the_old_pods_keep_serving(kube: Kube) -> None:
    namespace = kube.namespace("stall")
    kube.apply(namespace, deployment("emu", replicas=2, progress_deadline=3))
    kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "emu"},
            "spec": {"selector": {"app": "emu"}, "ports": [{"port": 8000, "targetPort": "http"}]},
        },
    )
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    kube.apply(
        namespace,
        deployment("emu", replicas=2, progress_deadline=3, image="registry.example.com/missing:1"),
    )
    wait_for(
        lambda: progressing(kube, namespace, "emu").reason == "ProgressDeadlineExceeded", timeout=30
    )
    condition = progressing(kube, namespace, "emu")
    assert condition.status == "False"
    assert "has timed out progressing" in condition.message
    pods = kube.core.list_namespaced_pod(namespace).items
    waiting = [
        status.state.waiting.reason
        for pod in pods
        for status in pod.status.container_statuses or []
        if status.state.waiting
    ]
    assert waiting and set(waiting) <= {"ErrImagePull", "ImagePullBackOff"}
    assert kube.apps.read_namespaced_deployment("emu", namespace).status.available_replicas == 2
    assert serve_through(kube, namespace, "emu") == 200
    events = kube.core.list_namespaced_event(namespace).items
    assert any(e.reason == "Failed" and "failed to pull image" in e.message for e in events)


def test_a_surge_pod_that_needs_a_gpu_nobody_has_stays_pending(tmp_path: Path) -> None:
    kube = start_kube(tmp_path, (NodeSpec("gpu-node-1", gpus=2), NodeSpec("cpu-node-1")))
    try:
        namespace = kube.namespace("gpu")
        kube.apply(namespace, deployment("emu", replicas=2, gpus=1))
        wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
        kube.apply(namespace, deployment("emu", replicas=2, gpus=1, env={"LATENCY_SCALE": "2"}))

        def pending_pod() -> Any:
            for pod in kube.core.list_namespaced_pod(namespace).items:
                if pod.status.phase == "Pending" and not pod.spec.node_name:
                    return pod
            return None

        pod = wait_for(pending_pod)
        scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert scheduled.reason == "Unschedulable"
        assert "Insufficient nvidia.com/gpu" in scheduled.message
        assert kube.apps.read_namespaced_deployment("emu", namespace).status.available_replicas == 2
        events = kube.core.list_namespaced_event(namespace).items
        assert any(e.reason == "FailedScheduling" for e in events)
    finally:
        kube.cluster.stop()


def test_a_crashing_container_backs_off_and_counts_restarts(kube: Kube) -> None:
    namespace = kube.namespace("crash")
    crashing = {
        "name": "app",
        "image": "registry.sandbox.local/python:3",
        "command": ["python", "-c", "import sys; print('boom'); sys.exit(3)"],
    }
    kube.apply(namespace, deployment("crash", replicas=1, container=crashing))

    def crash_looping() -> Any:
        for pod in kube.core.list_namespaced_pod(namespace).items:
            for status in pod.status.container_statuses or []:
                if status.restart_count >= 2 and status.state.waiting:
                    return status
        return None

    status = wait_for(crash_looping, timeout=30)
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated.exit_code == 3
    pod = kube.core.list_namespaced_pod(namespace).items[0]
    assert "boom" in kube.core.read_namespaced_pod_log(pod.metadata.name, namespace)


def test_deleting_a_pod_stops_its_process(kube: Kube, tmp_path: Path) -> None:
    namespace = kube.namespace("stop")
    marker = tmp_path / "terminated"
    script = (
        "import signal, sys, time, pathlib\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "signal.signal(signal.SIGTERM, lambda *a: (marker.write_text('TERM'), sys.exit(0)))\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    app = {
        "name": "app",
        "image": "registry.sandbox.local/python:3",
        "command": ["python", "-c", script],
    }
    kube.apply(namespace, deployment("app", replicas=1, container=app))
    pod = wait_for(lambda: next(iter(kube.core.list_namespaced_pod(namespace).items), None))
    wait_for(lambda: "up" in kube.core.read_namespaced_pod_log(pod.metadata.name, namespace))
    kube.apps.delete_namespaced_deployment("app", namespace)
    wait_for(marker.exists, timeout=20)
    assert marker.read_text() == "TERM"
    wait_for(lambda: not kube.core.list_namespaced_pod(namespace).items, timeout=20)


def test_a_service_spreads_requests_over_ready_pods(kube: Kube) -> None:
    namespace = kube.namespace("svc")
    kube.apply(namespace, deployment("emu", replicas=2))
    kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "emu"},
            "spec": {"selector": {"app": "emu"}, "ports": [{"port": 8000, "targetPort": "http"}]},
        },
    )
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    ip = wait_for(lambda: kube.core.read_namespaced_service("emu", namespace).spec.cluster_ip)
    for _ in range(4):
        with urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=5) as response:
            assert json.loads(response.read())["data"][0]["id"] == "tiny-llama"
    kube.apps.patch_namespaced_deployment_scale("emu", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not kube.core.list_namespaced_pod(namespace).items, timeout=20)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=5)


def test_no_orphan_processes_after_stop(tmp_path: Path) -> None:
    kube = start_kube(tmp_path)
    namespace = kube.namespace("orphans")
    kube.apply(namespace, deployment("emu", replicas=2))
    wait_for(lambda: rolled_out(kube, namespace, "emu", 2))
    pids = [w.process.pid for w in kube.cluster.kubelet._workers.values() if w.process]
    assert len(pids) == 2
    kube.cluster.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_live_sandboxes_never_share_a_network_and_a_stopped_one_frees_its_own() -> None:
    # several sandboxes at once (the test lanes, a demo) must not hand out the same pod IPs
    claims = [claim_network() for _ in range(20)]
    networks = [network for network, _ in claims]
    assert len(set(networks)) == len(networks), networks
    network, claim = claims.pop()
    lock = NETWORK_CLAIMS / f"{network}.lock"
    with lock.open("a") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: nobody else gets it
    claim.close()
    with lock.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # freed
    for _, held in claims:
        held.close()
