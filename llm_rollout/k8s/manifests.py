"""Kubernetes objects for a release, as plain dicts built by typed functions.

The Deployment carries the seed's hard-won lessons: a memory-backed /dev/shm sized by the
spec, a startupProbe long enough for model load, requests = limits sized for loading weights
through host memory, GPU requests = TP × PP with the product's node selector and toleration,
no CUDA_VISIBLE_DEVICES (the device plugin assigns GPUs), weights mounted read-only at the
published commit folder, `maxUnavailable: 0`, and a preStop drain inside a grace period
longer than vLLM's own shutdown timeout (the preStop mechanism chosen by the target
Kubernetes version, k8s.drain). Pods meet the `baseline` Pod Security Standard and all of
`restricted` but running as non-root (k8s.pod_security), spread over nodes, and only labelled
clients and Prometheus may reach them (NetworkPolicy).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import leaderworkerset, pod_security, router_manifests, workloads
from llm_rollout.k8s.drain import DEFAULT_TARGET_VERSION, pre_stop
from llm_rollout.k8s.labels import HTTP_PORT, HTTP_PORT_NAME
from llm_rollout.k8s.release import Release
from llm_rollout.k8s.vllm_args import vllm_args
from llm_rollout.spec import ReleaseSpec

Manifest = dict[str, Any]
STARTUP_PERIOD_SECONDS = 10
# Time for the Service to drop a terminating pod before vLLM stops taking requests.
PRESTOP_DRAIN_SECONDS = 10
# Grace beyond drain + vLLM's shutdown timeout, so the kubelet never SIGKILLs a drain.
GRACE_MARGIN_SECONDS = 15
REVISION_HISTORY = 5
# The pod label that told stable from canary in the two-Deployment layout.
LEGACY_TRACK = "track"


def namespace(spec: ReleaseSpec) -> Manifest:
    """The serving namespace, with Pod Security Admission enforcing `baseline`."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": spec.namespace,
            "labels": {**names.common_labels(spec), **pod_security.namespace_labels()},
        },
    }


def model_config_map(spec: ReleaseSpec, name: str) -> Manifest:
    """An empty ConfigMap of the model's state (history, gate progress, deploy lock)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
    }


def weights_storage(spec: ReleaseSpec) -> list[Manifest]:
    """An NFS PersistentVolume and its ReadOnlyMany claim; nothing for an existing claim."""
    nfs = spec.storage.nfs
    if nfs is None:
        return []
    size = "1Ti"  # NFS ignores it; the API requires one
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": names.volume_name(spec), "labels": names.common_labels(spec)},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": ["nfsvers=4.1", "ro"],
            "nfs": {"server": nfs.server, "path": nfs.path, "readOnly": True},
            "claimRef": {"namespace": spec.namespace, "name": names.claim_name(spec)},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": names.claim_name(spec),
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": names.volume_name(spec),
            "resources": {"requests": {"storage": size}},
        },
    }
    return [volume, claim]


def deployment(
    release: Release, replicas: int, kubernetes_version: str = DEFAULT_TARGET_VERSION
) -> Manifest:
    """The Deployment of `release`, '<model>-<release id>', for clusters of
    `kubernetes_version` or newer. One per release: the canary is this Deployment at
    `canary_replicas`, promotion scales it up (its loaded pods become stable), rollback
    scales the previous release's Deployment back up. Its track (k8s.labels.TRACK) is not
    part of it: the lifecycle sets and moves that label with a patch of its own, so applying
    the release again never fights over it."""
    spec = release.spec
    name = names.workload_name(spec, release.release_id)
    selector = names.selector_labels(spec, release.release_id)
    pod_labels = {
        **names.common_labels(spec),
        **selector,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/version": release.release_id,
        "app.kubernetes.io/component": "inference-server",
    }
    annotations = {
        names.RELEASE: release.release_id,
        names.WEIGHTS_COMMIT: release.weights_commit,
        names.IMAGE: release.image,
        names.MODEL: spec.source.repo,
    }
    rollout = spec.rollout
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": {**names.common_labels(spec), names.RELEASE: release.release_id},
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # Only a change of the release's own pods (a hand edit, a node's eviction) rolls
            # inside this Deployment; releases replace each other by scaling Deployments.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": rollout.max_surge,
                    "maxUnavailable": rollout.max_unavailable,
                },
            },
            "progressDeadlineSeconds": rollout.progress_deadline_seconds,
            "revisionHistoryLimit": REVISION_HISTORY,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": _pod_spec(release, kubernetes_version),
            },
        },
    }


def workload(
    release: Release, replicas: int, kubernetes_version: str = DEFAULT_TARGET_VERSION
) -> Manifest:
    """The object that runs `release`: its Deployment when a replica fits one node, else the
    same Deployment made a LeaderWorkerSet of one group of pods a replica (same name, labels
    and pods, leaders behind the model's Service)."""
    made = deployment(release, replicas, kubernetes_version)
    if not leaderworkerset.is_multi_node(release.spec):
        return made
    return leaderworkerset.leaderworkerset(made, release.spec, names.service_selector(release.spec))


def versioned(recorded: Manifest, spec: ReleaseSpec) -> Manifest:
    """A recorded release's Deployment in the layout of one Deployment per release.

    Releases recorded by earlier versions of llm-rollout were applied as the fixed '<model>'
    Deployment (selecting `track: stable`); the pod template is kept exactly, only the name,
    the selector and the labels that tied it to a track change. A Deployment already in
    this layout (and any LeaderWorkerSet: they came with it) comes back unchanged."""
    if recorded["kind"] == leaderworkerset.KIND:
        return copy.deepcopy(recorded)
    deployment = copy.deepcopy(recorded)
    release_id = deployment["metadata"].get("labels", {}).get(names.RELEASE) or deployment[
        "metadata"
    ].get("annotations", {}).get(names.RELEASE)
    if not release_id:
        raise ValueError("a recorded Deployment without its release label")
    name = names.workload_name(spec, release_id)
    selector = names.selector_labels(spec, release_id)
    metadata = deployment["metadata"]
    metadata["name"] = name
    metadata["labels"] = {
        **{k: v for k, v in metadata.get("labels", {}).items() if k != LEGACY_TRACK},
        names.RELEASE: release_id,
    }
    deployment["spec"]["selector"] = {"matchLabels": selector}
    template = deployment["spec"]["template"]["metadata"]
    template["labels"] = {
        **{k: v for k, v in template.get("labels", {}).items() if k != LEGACY_TRACK},
        **selector,
        "app.kubernetes.io/instance": name,
    }
    return deployment


def _pod_spec(release: Release, kubernetes_version: str) -> Manifest:
    spec = release.spec
    resources = spec.resources
    gpus = str(resources.gpus)
    requests = {"cpu": resources.cpu, "memory": resources.memory, "nvidia.com/gpu": gpus}
    health = {"httpGet": {"path": "/health", "port": HTTP_PORT_NAME}}
    container = {
        "name": "vllm",
        "image": release.image,
        "imagePullPolicy": "IfNotPresent",
        "args": vllm_args(spec, spec.storage.mount_path),
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "HF_HUB_OFFLINE", "value": "1"},  # weights come from the volume only
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "HF_HOME", "value": "/tmp/hf"},  # the weights volume is read-only
            _api_key(spec),
            # the spec's own (spec.rules refuses the names above)
            *({"name": k, "value": v} for k, v in sorted(spec.serving.env.items())),
        ],
        "resources": {"requests": requests, "limits": dict(requests)},
        "volumeMounts": [
            {
                "name": "weights",
                "mountPath": spec.storage.mount_path,
                "readOnly": True,
                "subPath": release.weights_subpath,
            },
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "startupProbe": {
            **health,
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(
                spec.rollout.startup_budget_seconds / STARTUP_PERIOD_SECONDS
            ),
        },
        "readinessProbe": {
            **health,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            **health,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": pre_stop(PRESTOP_DRAIN_SECONDS, kubernetes_version)},
        "securityContext": pod_security.container_security_context(),
    }
    pod: Manifest = {
        "serviceAccountName": "default",
        "automountServiceAccountToken": False,
        "securityContext": pod_security.pod_security_context(),
        "enableServiceLinks": False,  # no *_PORT env vars that could collide with VLLM_*
        "terminationGracePeriodSeconds": PRESTOP_DRAIN_SECONDS
        + spec.serving.shutdown_timeout_seconds
        + GRACE_MARGIN_SECONDS,
        "containers": [container],
        "volumes": [
            {
                "name": "weights",
                "persistentVolumeClaim": {"claimName": names.claim_name(spec), "readOnly": True},
            },
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": resources.shm_size}},
        ],
        "tolerations": [t.model_dump(exclude_none=True) for t in resources.tolerations],
        "topologySpreadConstraints": [_spread_over_nodes(spec)],
    }
    if resources.gpu_product:
        pod["nodeSelector"] = {"nvidia.com/gpu.product": resources.gpu_product}
    return pod


def _api_key(spec: ReleaseSpec) -> Manifest:
    """VLLM_API_KEY from the model's API key Secret, when that Secret exists.

    vLLM requires `Authorization: Bearer <key>` on its API routes (/v1/…; /health and /metrics
    stay open) when `--api-key` or VLLM_API_KEY is set (vllm/envs.py VLLM_API_KEY;
    entrypoints/serve/middleware: "--api-key option from CLI takes precedence over
    VLLM_API_KEY"). An env var keeps the key out of the pod's args, which anyone who can read
    the Deployment sees. `optional`: without the Secret the variable is unset and vLLM serves
    without a key, so no spec field is needed to turn it on."""
    return {
        "name": "VLLM_API_KEY",
        "valueFrom": {
            "secretKeyRef": {
                "name": names.api_key_secret_name(spec),
                "key": names.API_KEY_SECRET_KEY,
                "optional": True,
            }
        },
    }


def _spread_over_nodes(spec: ReleaseSpec) -> Manifest:
    """Prefer putting the model's pods (stable and canary alike) on different nodes: one node
    lost takes one replica, not all. ScheduleAnyway: a GPU pod that fits only beside another
    replica still starts (pod topology spread constraints, kubernetes.io docs)."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": names.service_selector(spec)},
    }


def service(spec: ReleaseSpec) -> Manifest:
    """One Service in front of stable and canary pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": names.service_selector(spec),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": HTTP_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


_NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def network_policy(spec: ReleaseSpec) -> Manifest:
    """Ingress to the model's pods only on the vLLM port, and only from namespaces or pods
    labelled `llm-rollout.io/client: "true"`, from Prometheus' namespace and from the
    spec's `network.client_namespaces` (applied only with `network.restrict_ingress`).

    Namespaces are matched by `kubernetes.io/metadata.name`, which the API server sets on
    every namespace (GA since 1.22). A NetworkPolicy does nothing without a network plugin
    that enforces it (Calico, Cilium, …), see docs/kubernetes.md."""
    client = {names.CLIENT: names.CLIENT_VALUE}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
        "spec": {
            "podSelector": {"matchLabels": names.service_selector(spec)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": client}},
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": client}},
                        *(
                            {"namespaceSelector": {"matchLabels": {_NAMESPACE_NAME: allowed}}}
                            for allowed in (
                                spec.network.prometheus_namespace,
                                *spec.network.client_namespaces,
                            )
                        ),
                    ],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT_NAME}],
                },
                *_ray_from_workers(spec),
            ],
        },
    }


def _ray_from_workers(spec: ReleaseSpec) -> list[Manifest]:
    """For a multi-node model: the leaders also take its workers' Ray traffic (GCS, object
    manager, worker ports: many, some random), so any port from llm-rollout's workers in the
    namespace. The workers themselves are not selected (they lack the Service's labels)."""
    if not leaderworkerset.is_multi_node(spec):
        return []
    workers = {
        "app.kubernetes.io/managed-by": "llm-rollout",
        leaderworkerset.ROLE_LABEL: "worker",
    }
    return [{"from": [{"podSelector": {"matchLabels": workers}}]}]


def autoscaler(spec: ReleaseSpec, release_id: str) -> Manifest | None:
    """An autoscaling/v2 HPA on a per-pod vLLM metric served by prometheus-adapter, scaling
    the stable release's workload (never a canary): it moves to the new release when a
    promotion completes (k8s.lifecycle)."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    target = f"{round(scaling.target * 1000)}m" if scaling.target < 1 else f"{scaling.target:g}"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
        "spec": {
            "scaleTargetRef": workloads.scale_target(spec, release_id),
            "minReplicas": scaling.min,
            "maxReplicas": scaling.max,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": f"vllm_{scaling.metric}"},
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ],
            # new replicas take minutes to load a model: scale down slowly
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        },
    }


def disruption_budget(spec: ReleaseSpec) -> Manifest:
    """At most one of the model's pods voluntarily disrupted (node drains) at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": names.common_labels(spec),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.service_selector(spec)},
        },
    }


NAMESPACED_RULES = [
    (
        "apps",
        ["deployments", "deployments/scale"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    ("apps", ["replicasets"], ["get", "list", "watch"]),
    ("", ["pods", "pods/log", "events"], ["get", "list", "watch"]),
    (
        "",
        ["services", "configmaps", "persistentvolumeclaims"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    (
        "autoscaling",
        ["horizontalpodautoscalers"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    (
        "policy",
        ["poddisruptionbudgets"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
    (
        "networking.k8s.io",
        ["networkpolicies"],
        ["get", "list", "watch", "create", "update", "patch", "delete"],
    ),
]


def access(spec: ReleaseSpec, subject: tuple[str, str] | None = None) -> list[Manifest]:
    """What a Dagster run (and the code server evaluating the gate sensor) needs to release
    this model: a Role limited to the kinds above in the serving namespace, and a ClusterRole
    for the few cluster-scoped needs — its own Namespace and PersistentVolume by name
    (server-side apply patches them), and read-only nodes and pods for the GPU preflight.

    Bound to `subject` (namespace, service account), e.g. Dagster's in its own namespace;
    by default to a ServiceAccount created in the serving namespace."""
    name = names.service_account_name(spec)
    meta = {"name": name, "namespace": spec.namespace, "labels": names.common_labels(spec)}
    subject_namespace, subject_name = subject or (spec.namespace, name)
    subjects = [{"kind": "ServiceAccount", "name": subject_name, "namespace": subject_namespace}]
    cluster_name = f"llm-rollout-{spec.namespace}-{spec.name}"
    by_name = [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [spec.namespace],
            "verbs": ["get", "patch"],
        }
    ]
    creates: list[Manifest] = []
    if spec.storage.nfs is not None:
        by_name.append(
            {
                "apiGroups": [""],
                "resources": ["persistentvolumes"],
                "resourceNames": [names.volume_name(spec)],
                "verbs": ["get", "patch", "update"],
            }
        )
        # The first release creates the PersistentVolume (an apply that creates is also
        # authorized as `create`), and RBAC cannot limit `create` by name: the request has
        # no name yet when it is authorized (Kubernetes RBAC docs, "Referring to resources").
        creates.append({"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create"]})
    objects: list[Manifest] = (
        [] if subject else [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}]
    )
    namespaced = [
        {"apiGroups": [group], "resources": kinds, "verbs": verbs}
        for group, kinds, verbs in NAMESPACED_RULES
    ]
    if leaderworkerset.is_multi_node(spec):
        # its releases are LeaderWorkerSets, scaled through /scale like Deployments; a
        # single-node model gets no rights on a CRD it does not use (nor needs it installed)
        namespaced.append(
            {
                "apiGroups": [leaderworkerset.GROUP],
                "resources": ["leaderworkersets", "leaderworkersets/scale"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        )
    if spec.quality is not None:
        # the quality gate talks to the pods directly, with the key vLLM requires of clients
        namespaced.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [names.api_key_secret_name(spec)],
                "verbs": ["get"],
            }
        )
    objects += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": namespaced,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subjects,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_name, "labels": names.common_labels(spec)},
            "rules": [
                *by_name,
                *creates,
                {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_name, "labels": names.common_labels(spec)},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_name,
            },
            "subjects": subjects,
        },
    ]
    return objects


def platform_objects(spec: ReleaseSpec) -> list[Manifest]:
    """Objects that do not change between releases."""
    return [
        namespace(spec),
        *weights_storage(spec),
        service(spec),
        disruption_budget(spec),
        *([network_policy(spec)] if spec.network.restrict_ingress else []),
        *router_manifests.router_objects(spec),  # none without routing:
    ]


def release_objects(
    release: Release, kubernetes_version: str = DEFAULT_TARGET_VERSION
) -> list[Manifest]:
    """The release's workload (Deployment or LeaderWorkerSet) as stable, at the spec's replicas
    (what the history records; k8s.lifecycle creates it at the replicas each step needs), and
    with a router its Service."""
    spec = release.spec
    replicas = spec.autoscaling.min if spec.autoscaling else spec.replicas
    service = [router_manifests.release_service(spec, release.release_id)] if spec.routing else []
    return [workload(release, replicas, kubernetes_version), *service]


def all_objects(
    release: Release, kubernetes_version: str = DEFAULT_TARGET_VERSION
) -> list[Manifest]:
    """Everything for a GitOps user, the release installed as stable: platform, access, the
    release's Deployment and its autoscaler, for clusters of `kubernetes_version` or newer.
    No canary: a canary is a step of a rollout that the release controller takes. With a
    router, its config sends everything to this release."""
    spec = release.spec
    hpa = autoscaler(spec, release.release_id)
    routed = router_manifests.stable_config(spec, release.release_id) if spec.routing else None
    return [
        *platform_objects(spec),
        *access(spec),
        *release_objects(release, kubernetes_version),
        *([hpa] if hpa else []),
        *([router_manifests.router_config_map(spec, routed)] if routed else []),
    ]
