"""The kinds the sandbox Kubernetes API serves, with what discovery reports about them."""

from __future__ import annotations

from dataclasses import dataclass

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    """One served resource type."""

    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_status: bool = True  # spec changes bump metadata.generation; status is separate

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified(self) -> str:
        """'deployments.apps', as Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    Resource("", "v1", "pods", "Pod", True, ("po",), ("status", "log"), True),
    Resource("", "v1", "services", "Service", True, ("svc",), ("status",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",), (), False),
    Resource("", "v1", "secrets", "Secret", True, (), (), False),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ("token",), False),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    Resource(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)
    ),
    Resource("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    Resource("", "v1", "events", "Event", True, ("ev",), (), False),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",), (), False),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale")),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        ("status",),
    ),
    Resource(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)
    ),
    Resource("batch", "v1", "jobs", "Job", True, (), ("status",)),
    # stored and served only: the sandbox has no network plugin to enforce it, like a
    # cluster whose CNI ignores NetworkPolicy
    Resource(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), (), False
    ),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), (), False),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), (), False),
    Resource(
        "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), (), False
    ),
    Resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        (),
        (),
        False,
    ),
    Resource("events.k8s.io", "v1", "events", "Event", True, ("ev",), (), False),
    # the LeaderWorkerSet CRD (kubernetes-sigs/lws): multi-node replicas
    Resource(
        "leaderworkerset.x-k8s.io",
        "v1",
        "leaderworkersets",
        "LeaderWorkerSet",
        True,
        ("lws",),
        ("status", "scale"),
    ),
)


def find(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at /api(s)/{group}/{version}/{plural}, if any."""
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(api_version: str, kind: str) -> Resource | None:
    """The resource for an object's apiVersion and kind."""
    for resource in RESOURCES:
        if resource.api_version == api_version and resource.kind == kind:
            return resource
    return None


def group_versions() -> dict[str, list[str]]:
    """Every served API group (not core) and its versions."""
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    return groups


def discovery_list(group: str, version: str) -> dict[str, object]:
    """The APIResourceList for one group version, as kubectl's discovery reads it."""
    entries: list[dict[str, object]] = []
    for resource in RESOURCES:
        if (resource.group, resource.version) != (group, version):
            continue
        entries.append(
            {
                "name": resource.plural,
                "singularName": resource.kind.lower(),
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": VERBS,
                "shortNames": list(resource.short_names),
            }
        )
        for sub in resource.subresources:
            sub_kind = {"scale": "Scale", "token": "TokenRequest"}.get(sub, resource.kind)
            verbs = {"log": ["get"], "token": ["create"]}.get(sub, ["get", "patch", "update"])
            entries.append(
                {
                    "name": f"{resource.plural}/{sub}",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": sub_kind,
                    "verbs": verbs,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }
