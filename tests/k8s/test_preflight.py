"""The GPU preflight against the sandbox cluster: a replica's GPUs must be free on one node
the model's pods may use (product label, taints, Ready and not cordoned)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.preflight import InsufficientGpus, gpu_capacity, require_gpus
from llm_rollout.spec import ReleaseSpec
from sandbox.cluster.cluster import GPU_PRODUCT, NodeSpec
from tests.conftest import MINIMAL_SPEC, merged
from tests.fixtures.cluster import Kube, start_kube

H100 = "NVIDIA-H100-80GB-HBM3"
NODES = (
    NodeSpec("a100-1", gpus=4),
    NodeSpec("a100-2", gpus=4),
    NodeSpec("h100-1", gpus=8, gpu_product=H100),
    NodeSpec("cpu-1"),
)
NAMESPACE = "neighbours"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    started = start_kube(tmp_path / "cluster", NODES)
    try:
        started.namespace(NAMESPACE)
        yield started
    finally:
        started.cluster.stop()


@pytest.fixture
def cluster(kube: Kube) -> ClusterClient:
    return ClusterClient(kube.api)


def spec(gpus: int, product: str = GPU_PRODUCT, **resources: Any) -> ReleaseSpec:
    return ReleaseSpec.model_validate(
        merged(
            MINIMAL_SPEC,
            {
                "serving": {"tensor_parallel_size": gpus},
                "resources": {"gpus": gpus, "gpu_product": product, **resources},
            },
        )
    )


def occupy(kube: Kube, node: str, gpus: int, name: str) -> None:
    """A neighbour's pod holding `gpus` GPUs on `node` (bound directly, as a scheduler would)."""
    kube.core.create_namespaced_pod(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.sandbox.local/python:3",
                        "command": ["sleep", "600"],
                        "resources": {"limits": {"nvidia.com/gpu": gpus}},
                    }
                ],
            },
        },
    )


def test_free_gpus_split_across_nodes_do_not_make_a_replica(
    kube: Kube, cluster: ClusterClient
) -> None:
    occupy(kube, "a100-1", 2, "left")
    occupy(kube, "a100-2", 2, "right")
    four = spec(4, gpus_per_node=4)
    assert gpu_capacity(cluster, four).free == 4  # enough in sum, on no single node
    with pytest.raises(InsufficientGpus) as refused:
        require_gpus(cluster, four, 1, "the canary")
    message = str(refused.value)
    assert "the canary needs 1 pod(s) of 4 GPU(s), each on one node, but only 0 fit" in message
    assert "at most 2 on one node (free per node: a100-1 2, a100-2 2)" in message
    assert "Free 4 GPUs on one node" in message
    # two-GPU replicas fit: one on each node
    assert require_gpus(cluster, spec(2, gpus_per_node=4), 2, "the canary").placeable(2) == 2


def test_only_nodes_of_the_spec_gpu_product_count(kube: Kube, cluster: ClusterClient) -> None:
    occupy(kube, "h100-1", 1, "small")
    with pytest.raises(InsufficientGpus, match=r"needs 8 GPU\(s\) .* only 7 of the 8 on 1 nodes"):
        require_gpus(cluster, spec(8, H100), 1, "the canary")  # 8 A100s free elsewhere


def test_a_taint_the_pods_do_not_tolerate_keeps_its_node_out(
    kube: Kube, cluster: ClusterClient
) -> None:
    kube.core.patch_node(
        "h100-1",
        {"spec": {"taints": [{"key": "dedicated", "value": "training", "effect": "NoSchedule"}]}},
    )
    with pytest.raises(InsufficientGpus, match=r"only 0 of the 0 on 0 nodes"):
        require_gpus(cluster, spec(8, H100), 1, "the canary")
    tolerant = spec(
        8, H100, tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    )
    assert require_gpus(cluster, tolerant, 1, "the canary").free == 8


def test_a_cordoned_node_is_not_counted(kube: Kube, cluster: ClusterClient) -> None:
    kube.core.patch_node("a100-1", {"spec": {"unschedulable": True}})
    with pytest.raises(InsufficientGpus, match=r"only 4 of the 4 on 1 nodes"):
        require_gpus(cluster, spec(4, gpus_per_node=4), 2, "the promotion")


def test_a_replica_wider_than_any_node_says_so(cluster: ClusterClient) -> None:
    # the spec claims 8-GPU nodes; the A100 nodes have 4 each
    with pytest.raises(InsufficientGpus) as refused:
        require_gpus(cluster, spec(8, gpus_per_node=8), 1, "the canary")
    assert "A replica's 8 GPUs exceed every node's allocatable GPUs" in str(refused.value)


def test_a_multi_node_replica_needs_a_node_per_pod(cluster: ClusterClient) -> None:
    # TP 4 × PP 2 on 4-GPU A100 nodes: a replica is two pods of 4 GPUs on two nodes
    wide = ReleaseSpec.model_validate(
        merged(
            MINIMAL_SPEC,
            {
                "serving": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2},
                "resources": {"gpus": 8, "gpus_per_node": 4, "gpu_product": GPU_PRODUCT},
            },
        )
    )
    assert require_gpus(cluster, wide, 1, "the canary").placeable(4) == 2
    with pytest.raises(InsufficientGpus, match=r"needs 16 GPU\(s\) .* only 8 of the 8"):
        require_gpus(cluster, wide, 2, "the promotion")
