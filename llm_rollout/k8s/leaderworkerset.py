"""Multi-node replicas: a release whose replica needs more GPUs than one node has, rendered as a
LeaderWorkerSet (kubernetes-sigs/lws, leaderworkerset.x-k8s.io/v1) instead of a Deployment.

A replica is a group of `size` pods, one per node: the leader starts a Ray head and, once
every worker has joined, the vLLM API server; the workers join the leader's Ray cluster. This
follows vLLM's own recipe for LWS (kubernetes-sigs/lws docs/examples/vllm/GPU/lws.yaml and
vLLM's examples/online_serving/multi-node-serving.sh, which the official image ships): tensor
parallelism inside a node, pipeline parallelism across nodes (tensor parallelism across
nodes is ~3× slower, the seed's lesson).

The LeaderWorkerSet is made from the release's rendered Deployment, so every choice made
there (probes, volumes, security context, env, tolerations, the node selector) holds for the
leader; workers get the same pod without the HTTP port, the probes and the labels the Service
selects: the Service, the gate's metrics and the PodMonitor see leaders only.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from llm_rollout.k8s.crd_schema import strict_schema
from llm_rollout.k8s.vllm_args import uses_serve_entrypoint
from llm_rollout.spec import ReleaseSpec

Manifest = dict[str, Any]
GROUP = "leaderworkerset.x-k8s.io"
API_VERSION = f"{GROUP}/v1"
KIND = "LeaderWorkerSet"
CRD_RELEASE = "v0.10.0"  # the kubernetes-sigs/lws release whose CRD is vendored (schemas/)
SCHEMA = Path(__file__).parent / "schemas" / "leaderworkerset.x-k8s.io_v1_leaderworkerset.json"
# Shipped in the official vllm/vllm-openai image (vLLM's examples/online_serving/).
MULTI_NODE_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
ROLE_LABEL = "llm-rollout.io/role"
# LWS' exclusive placement: each group alone in one domain of this topology key.
EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"
GPU = "nvidia.com/gpu"


class NotMultiNode(ValueError):
    """The spec's replicas fit one node: render a Deployment."""


def group_size(spec: ReleaseSpec) -> int:
    """Nodes (pods) per replica: the replica's GPUs over the GPUs of one node, rounded up."""
    return math.ceil(spec.resources.gpus / spec.resources.gpus_per_node)


def is_multi_node(spec: ReleaseSpec) -> bool:
    """Whether a replica needs more GPUs than one node has."""
    return group_size(spec) > 1


def leaderworkerset(
    deployment: Manifest,
    spec: ReleaseSpec,
    service_selector: dict[str, str],
    exclusive_topology: str | None = None,
) -> Manifest:
    """The release's `deployment` as a LeaderWorkerSet of `group_size(spec)` pods a replica.

    `service_selector` is what the model's Service selects: leaders keep those labels,
    workers lose them. With `exclusive_topology` (a node label key, e.g. a rack), each group
    has one domain of it to itself.
    """
    if not is_multi_node(spec):
        raise NotMultiNode(
            f"{spec.name}: {spec.resources.gpus} GPU(s) fit one node of "
            f"{spec.resources.gpus_per_node}; a Deployment serves it"
        )
    size = group_size(spec)
    if spec.resources.gpus % size:
        raise ValueError(
            f"{spec.name}: {spec.resources.gpus} GPUs do not split evenly over {size} nodes"
        )
    per_pod = str(spec.resources.gpus // size)
    template = deployment["spec"]["template"]
    leader = _leader(template, spec, per_pod)
    worker = _worker(template, per_pod, service_selector)
    metadata = copy.deepcopy(deployment["metadata"])
    if exclusive_topology:
        metadata.setdefault("annotations", {})[EXCLUSIVE_TOPOLOGY] = exclusive_topology
    rollout = spec.rollout
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "replicas": deployment["spec"]["replicas"],
            "startupPolicy": "LeaderCreated",  # the leader waits for its workers to join
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {
                    "maxSurge": rollout.max_surge,
                    "maxUnavailable": rollout.max_unavailable,
                },
            },
            "leaderWorkerTemplate": {
                "size": size,
                # one pod of a group restarting breaks the Ray cluster: recreate the group
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        },
    }


def serve_command(spec: ReleaseSpec, args: list[str]) -> list[str]:
    """The vLLM server command the image's entrypoint would run with `args`."""
    if uses_serve_entrypoint(spec.serving):
        return ["vllm", "serve", *args]
    return ["python3", "-m", "vllm.entrypoints.openai.api_server", *args]


def _leader(template: Manifest, spec: ReleaseSpec, gpus: str) -> Manifest:
    leader = copy.deepcopy(template)
    leader["metadata"].setdefault("labels", {})[ROLE_LABEL] = "leader"
    container = _vllm_container(leader)
    serve = serve_command(spec, [*container.pop("args"), "--distributed-executor-backend", "ray"])
    # $(LWS_GROUP_SIZE) is expanded by the kubelet (the LWS controller sets the variable)
    container["command"] = [
        "sh",
        "-c",
        f"bash {MULTI_NODE_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && exec "
        + shlex.join(serve),
    ]
    _set_gpus(container, gpus)
    return leader


def _worker(template: Manifest, gpus: str, service_selector: dict[str, str]) -> Manifest:
    worker = copy.deepcopy(template)
    labels = {
        key: value
        for key, value in (worker["metadata"].get("labels") or {}).items()
        if key not in service_selector
    }
    worker["metadata"]["labels"] = {**labels, ROLE_LABEL: "worker"}
    pod = worker["spec"]
    pod.pop("topologySpreadConstraints", None)  # they select the leaders' labels
    container = _vllm_container(worker)
    for field in ("args", "ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(field, None)
    container["name"] = "vllm-worker"
    container["command"] = [
        "sh",
        "-c",
        f"bash {MULTI_NODE_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)",
    ]
    _set_gpus(container, gpus)
    return worker


def _vllm_container(template: Manifest) -> Manifest:
    containers = template["spec"]["containers"]
    found: Manifest = next(c for c in containers if c["name"] == "vllm")
    return found


def _set_gpus(container: Manifest, gpus: str) -> None:
    for part in ("requests", "limits"):
        section = (container.get("resources") or {}).get(part)
        if section is not None and GPU in section:
            section[GPU] = gpus


@cache
def lws_schema() -> dict[str, Any]:
    """The LeaderWorkerSet CRD's openAPIV3Schema (v1, LWS `CRD_RELEASE`), made strict: a field it
    does not define is an error, as strict field validation reports it."""
    strict: dict[str, Any] = strict_schema(json.loads(SCHEMA.read_text()))
    return strict


def lws_schema_problems(objects: Iterable[Manifest]) -> list[str]:
    """Every way the objects break the LeaderWorkerSet schema, 'Kind/name: path: message'."""
    problems = []
    validator = jsonschema.Draft7Validator(lws_schema())
    for obj in objects:
        kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
        if obj.get("apiVersion") != API_VERSION or kind != KIND:
            problems.append(f"{kind}/{name}: not a {API_VERSION} {KIND}")
            continue
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.path) or "(object)"
            problems.append(f"{kind}/{name}: {path}: {error.message}")
    return problems
