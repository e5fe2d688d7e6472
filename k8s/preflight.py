"""GPU capacity preflight: will the canary or surge pods of a rollout fit anywhere?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k8s.cluster import ClusterClient, ClusterError
from spec import ReleaseSpec
from spec.quantity import parse_quantity

GPU = "nvidia.com/gpu"


class InsufficientGpus(ClusterError):
    """The new pods of a rollout would not fit on the GPU nodes."""


@dataclass(frozen=True)
class GpuCapacity:
    """GPUs on the nodes a model's pods can use, and how many are taken."""

    nodes: int
    allocatable: int
    used: int

    @property
    def free(self) -> int:
        return self.allocatable - self.used


def surge_pods(spec: ReleaseSpec) -> int:
    """Extra pods a stable rolling update starts at once (maxSurge, rounded up)."""
    surge = spec.rollout.max_surge
    if isinstance(surge, str):
        return -(-int(surge.rstrip("%")) * spec.replicas // 100)
    return surge


def gpu_capacity(cluster: ClusterClient, spec: ReleaseSpec) -> GpuCapacity:
    """Allocatable and requested GPUs on nodes matching the spec's selector and tolerations."""
    nodes = [n for n in cluster.list_objects("Node") if _usable(n, spec)]
    names = {n["metadata"]["name"] for n in nodes}
    allocatable = sum(
        int(parse_quantity(str((n.get("status") or {}).get("allocatable", {}).get(GPU, "0"))))
        for n in nodes
    )
    used = 0
    for pod in cluster.list_objects("Pod"):
        if pod["spec"].get("nodeName") not in names:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        used += _pod_gpus(pod)
    return GpuCapacity(len(nodes), allocatable, used)


def require_gpus(cluster: ClusterClient, spec: ReleaseSpec, pods: int, purpose: str) -> GpuCapacity:
    """Refuse, with the numbers, when `pods` more pods of the spec cannot get their GPUs."""
    capacity = gpu_capacity(cluster, spec)
    needed = pods * spec.resources.gpus
    if needed > capacity.free:
        where = (
            f"nodes labelled nvidia.com/gpu.product={spec.resources.gpu_product}"
            if spec.resources.gpu_product
            else "GPU nodes"
        )
        raise InsufficientGpus(
            f"{purpose} needs {needed} GPU(s) ({pods} pod(s) × {spec.resources.gpus}) but only "
            f"{capacity.free} of the {capacity.allocatable} on {capacity.nodes} {where} are free "
            f"({capacity.used} in use). Free GPUs, lower rollout.canary_replicas or "
            "rollout.max_surge, or use the 'rolling' strategy with max_unavailable 1"
        )
    return capacity


def _usable(node: dict[str, Any], spec: ReleaseSpec) -> bool:
    labels = node["metadata"].get("labels") or {}
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
