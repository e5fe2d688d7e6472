"""A release's workload: the object whose replicas are the release's serving replicas.

A Deployment when a replica fits one node; a LeaderWorkerSet (kubernetes-sigs/lws) when a
replica is a group of pods on several nodes (k8s.leaderworkerset). Both are named
'<model>-<release id>', carry the same labels and are scaled through their /scale
subresource, so the release lifecycle moves either the same way; what differs — where a
workload's status keeps its serving replicas, which pods are its own — is here.
"""

from __future__ import annotations

from typing import Any

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import leaderworkerset
from llm_rollout.spec import ReleaseSpec

DEPLOYMENT = "Deployment"
LEADER_WORKER_SET = leaderworkerset.KIND
# The label the LWS controller puts on every pod of a set, leader and workers alike
# (kubernetes-sigs/lws api/leaderworkerset/v1 SetNameLabelKey).
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
# The label every pod of one group shares (GroupUniqueHashLabelKey): a replica's pods.
LWS_GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"


def kind_for(spec: ReleaseSpec) -> str:
    """The kind a release of `spec` runs as."""
    return LEADER_WORKER_SET if leaderworkerset.is_multi_node(spec) else DEPLOYMENT


def kinds_for(spec: ReleaseSpec) -> tuple[str, ...]:
    """The kinds the model's releases may run as: Deployments always (a model that grew past
    one node still has its earlier releases as Deployments to shift away from), and
    LeaderWorkerSets once a replica spans nodes (only then may it need the CRD and RBAC)."""
    return (DEPLOYMENT, LEADER_WORKER_SET) if leaderworkerset.is_multi_node(spec) else (DEPLOYMENT,)


def replicas(workload: dict[str, Any]) -> int:
    """The replicas (groups, for a LeaderWorkerSet) the workload is asked to run."""
    return int((workload.get("spec") or {}).get("replicas", 1) or 0)


def available(workload: dict[str, Any]) -> int:
    """Replicas serving now. A LeaderWorkerSet has no availableReplicas: its readyReplicas
    counts groups whose leader and every worker are ready (lws v0.10
    pkg/controllers/leaderworkerset_controller.go, updateConditions)."""
    status = workload.get("status") or {}
    field = "readyReplicas" if workload.get("kind") == LEADER_WORKER_SET else "availableReplicas"
    return int(status.get(field) or 0)


def pod_selector(workload: dict[str, Any]) -> str:
    """A label selector for every pod of the workload: a Deployment's own selector; for a
    LeaderWorkerSet the set's name label, which its workers carry too (they lack the labels
    the model's Service selects)."""
    if workload.get("kind") == LEADER_WORKER_SET:
        return f"{LWS_NAME_LABEL}={workload['metadata']['name']}"
    match = workload["spec"]["selector"].get("matchLabels", {})
    return ",".join(f"{key}={value}" for key, value in match.items())


def scale_target(spec: ReleaseSpec, release_id: str) -> dict[str, str]:
    """What an HPA (or KEDA) scales for the release: any kind with a /scale subresource; the
    LWS CRD has one (its kubebuilder marker: specpath .spec.replicas, statuspath
    .status.replicas, selectorpath .status.hpaPodSelector, the leaders)."""
    api_version = leaderworkerset.API_VERSION if kind_for(spec) == LEADER_WORKER_SET else "apps/v1"
    return {
        "apiVersion": api_version,
        "kind": kind_for(spec),
        "name": names.workload_name(spec, release_id),
    }


def pods_release(workload: dict[str, Any]) -> str | None:
    """The release its pod template runs (a Deployment of the earlier fixed layout ran each
    release in turn: its older pods are not this release's)."""
    spec = workload.get("spec") or {}
    template = (
        (spec.get("leaderWorkerTemplate") or {}).get("leaderTemplate")
        if workload.get("kind") == LEADER_WORKER_SET
        else spec.get("template")
    ) or {}
    return ((template.get("metadata") or {}).get("labels") or {}).get(names.RELEASE)
