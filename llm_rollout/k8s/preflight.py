"""GPU capacity preflight: will the canary or surge pods of a rollout fit, each on one node?

A replica is one pod and its GPUs must all be on one node (the scheduler never splits a pod),
so free GPUs are counted per node, on the nodes the pods may use: the GPU product label
(nodeSelector), taints the pods tolerate, nodes that are Ready and not cordoned (kube-scheduler's
NodeUnschedulable plugin and the node.kubernetes.io/not-ready taint keep pods off them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.k8s.leaderworkerset import group_size
from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.quantity import parse_quantity

GPU = "nvidia.com/gpu"


class InsufficientGpus(ClusterError):
    """The new pods of a rollout would not fit on the GPU nodes."""


@dataclass(frozen=True)
class GpuCapacity:
    """GPUs on the nodes a model's pods can use, and how many are taken, node by node."""

    nodes: int
    allocatable: int
    used: int
    free_by_node: tuple[tuple[str, int], ...] = ()
    largest_node: int = 0  # the most GPUs one of these nodes has

    @property
    def free(self) -> int:
        """Free GPUs summed over the nodes (not all usable by one pod: see `placeable`)."""
        return self.allocatable - self.used

    def placeable(self, gpus_per_pod: int) -> int:
        """How many pods of `gpus_per_pod` GPUs the free GPUs hold, each on one node."""
        if gpus_per_pod <= 0:
            return 0
        return sum(free // gpus_per_pod for _, free in self.free_by_node)


def surge_pods(spec: ReleaseSpec) -> int:
    """Extra pods a stable rolling update starts at once (maxSurge, rounded up)."""
    surge = spec.rollout.max_surge
    if isinstance(surge, str):
        return -(-int(surge.rstrip("%")) * spec.replicas // 100)
    return surge


def gpu_capacity(cluster: ClusterClient, spec: ReleaseSpec) -> GpuCapacity:
    """Allocatable and requested GPUs on nodes matching the spec's selector and tolerations."""
    nodes = [n for n in cluster.list_objects("Node") if _usable(n, spec)]
    allocatable = {
        n["metadata"]["name"]: int(
            parse_quantity(str((n.get("status") or {}).get("allocatable", {}).get(GPU, "0")))
        )
        for n in nodes
    }
    used = dict.fromkeys(allocatable, 0)
    for pod in cluster.list_objects("Pod"):
        node = pod["spec"].get("nodeName")
        if node not in used:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        used[node] += _pod_gpus(pod)
    free = tuple((name, max(0, allocatable[name] - used[name])) for name in sorted(allocatable))
    return GpuCapacity(
        len(nodes),
        sum(allocatable.values()),
        sum(used.values()),
        free,
        max(allocatable.values(), default=0),
    )


def require_gpus(cluster: ClusterClient, spec: ReleaseSpec, pods: int, purpose: str) -> GpuCapacity:
    """Refuse, with the numbers, when `pods` more replicas of the spec cannot get their GPUs:
    each pod of a replica on one node (a multi-node replica is `group_size` pods, one node's
    GPUs each)."""
    capacity = gpu_capacity(cluster, spec)
    size = group_size(spec)
    per_pod = spec.resources.gpus // size
    needed = pods * spec.resources.gpus
    where = (
        f"nodes labelled nvidia.com/gpu.product={spec.resources.gpu_product}"
        if spec.resources.gpu_product
        else "GPU nodes"
    )
    if needed > capacity.free:
        raise InsufficientGpus(
            f"{purpose} needs {needed} GPU(s) ({pods} pod(s) × {spec.resources.gpus}) but only "
            f"{capacity.free} of the {capacity.allocatable} on {capacity.nodes} {where} are free "
            f"({capacity.used} in use). Free GPUs, lower rollout.canary_replicas or "
            "rollout.max_surge, or use the 'rolling' strategy with max_unavailable 1"
        )
    placeable = placeable_replicas(capacity, spec)
    if placeable < pods:
        largest = max((free for _, free in capacity.free_by_node), default=0)
        per_node = ", ".join(f"{name} {free}" for name, free in capacity.free_by_node)
        advice = (
            f"a replica's {per_pod} GPUs exceed every node's allocatable GPUs: use fewer GPUs "
            "per replica (more memory per GPU, quantized weights) or nodes with more GPUs"
            if per_pod > capacity.largest_node
            else f"free {per_pod} GPUs on one node (drain or move a smaller workload), lower "
            "rollout.canary_replicas or rollout.max_surge, or use the 'rolling' strategy with "
            "max_unavailable 1"
        )
        shape = (
            f"{pods} pod(s) of {per_pod} GPU(s), each on one node"
            if size == 1
            else f"{pods} replica(s) of {size} pods × {per_pod} GPU(s), each pod on one node"
        )
        raise InsufficientGpus(
            f"{purpose} needs {shape}, but only {placeable} fit: {capacity.free} GPUs are free "
            f"on {capacity.nodes} {where}, at most {largest} on one node (free per node: "
            f"{per_node}). {advice[0].upper()}{advice[1:]}"
        )
    return capacity


def placeable_replicas(capacity: GpuCapacity, spec: ReleaseSpec) -> int:
    """How many more replicas of the spec the free GPUs hold, counted whole: each pod on one
    node, and a multi-node replica only with all its `group_size` pods placed."""
    size = group_size(spec)
    return capacity.placeable(spec.resources.gpus // size) // size


def _usable(node: dict[str, Any], spec: ReleaseSpec) -> bool:
    labels = node["metadata"].get("labels") or {}
    if (node.get("spec") or {}).get("unschedulable"):  # cordoned
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return False
    if (
        spec.resources.gpu_product
        and labels.get("nvidia.com/gpu.product") != spec.resources.gpu_product
    ):
        return False
    tolerations = [t.model_dump() for t in spec.resources.tolerations]
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in tolerations):
            return False
    return True


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value") == taint.get(
        "value"
    )


def _pod_gpus(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod["spec"].get("containers") or []:
        resources = container.get("resources") or {}
        wanted = (resources.get("requests") or {}).get(GPU) or (resources.get("limits") or {}).get(
            GPU
        )
        total += int(parse_quantity(str(wanted))) if wanted else 0
    return total
