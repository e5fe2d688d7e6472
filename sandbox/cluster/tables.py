"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, with the columns and cells of the API
server's printers (kubernetes/pkg/printers/internalversion/printers.go: the
`*ColumnDefinitions` in `AddHandlers`, `printDeployment`, `printReplicaSet`, `printPod`,
`printService`, `printConfigMap`, `printNode`, `printNamespace`), and the default table
(`NAME`, `CREATED AT`) of k8s.io/apiserver/pkg/registry/rest/table.go for every other kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.cluster.objects import Obj, now, parse_time
from sandbox.cluster.resources import Resource
from sandbox.cluster.store import ApiError

Cell = str | int
NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


@dataclass(frozen=True)
class Column:
    """A TableColumnDefinition."""

    name: str
    type: str = "string"
    priority: int = 0  # 1: only with -o wide
    description: str = ""
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = Column("Name", format="name", description=NAME_DOC)
AGE = Column("Age", description=AGE_DOC)
TEMPLATE_COLUMNS = (
    Column("Containers", priority=1, description="Names of each container in the template."),
    Column(
        "Images", priority=1, description="Images referenced by each container in the template."
    ),
    Column("Selector", priority=1, description="Label selector for pods."),
)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as the AGE column prints it."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: Obj, at: datetime | None = None) -> str:
    """translateTimestampSince: "<unknown>" without a creationTimestamp."""
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration(((at or now()) - parse_time(created)).total_seconds())


def _containers(template_spec: Obj) -> tuple[str, str]:
    """layoutContainerCells: names and images, comma separated."""
    containers = template_spec.get("containers") or []
    names = ",".join(c.get("name", "") for c in containers)
    images = ",".join(c.get("image", "") for c in containers)
    return names, images


def _selector(selector: Obj | None) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    if not selector:
        return ""
    parts: list[tuple[str, str]] = [
        (key, f"{key}={value}") for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(sorted(expression.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(operator, key)
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts))


def _labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _deployment(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _replicaset(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(obj),
        names,
        images,
        _selector(spec.get("selector")),
    ]


def _pod(obj: Obj) -> list[Cell]:
    """printPod, for pods without init containers (the sandbox runs none)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    restarts, ready, running = 0, 0, False
    last_restart: str | None = None
    for container in reversed(status.get("containerStatuses") or []):
        restarts += int(container.get("restartCount") or 0)
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and "running" in state:
            running = True
            ready += 1
    if reason == "Completed" and running:
        conditions = status.get("conditions") or []
        is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        reason = "Running" if is_ready else "NotReady"
    if "deletionTimestamp" in obj["metadata"] and status.get("phase") not in (
        "Succeeded",
        "Failed",
    ):
        reason = "Terminating"
    restarts_cell: Cell = restarts
    if restarts and last_restart:
        ago = human_duration((now() - parse_time(last_restart)).total_seconds())
        restarts_cell = f"{restarts} ({ago} ago)"
    return [
        obj["metadata"]["name"],
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts_cell,
        age(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _service(obj: Obj) -> list[Cell]:
    spec = obj.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol", "TCP")
        if port.get("nodePort"):
            ports.append(f"{port['port']}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port['port']}/{protocol}")
    external = ",".join(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        external = spec.get("externalName", "")
    elif kind == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        addresses = [i.get("ip") or i.get("hostname", "") for i in ingress]
        external = ",".join(addresses + (spec.get("externalIPs") or [])) or "<pending>"
    return [
        obj["metadata"]["name"],
        kind,
        spec.get("clusterIP") or "<none>",
        external or "<none>",
        ",".join(ports) or "<none>",
        age(obj),
        _labels(spec.get("selector")),
    ]


def _configmap(obj: Obj) -> list[Cell]:
    data = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [obj["metadata"]["name"], data, age(obj)]


def _node(obj: Obj) -> list[Cell]:
    status = obj.get("status") or {}
    ready = next(
        (c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    state = {"True": "Ready", None: "Unknown"}.get(ready, "NotReady")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        k[len(prefix) :] for k in obj["metadata"].get("labels") or {} if k.startswith(prefix)
    )
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        obj["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        age(obj),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _namespace(obj: Obj) -> list[Cell]:
    return [obj["metadata"]["name"], (obj.get("status") or {}).get("phase", "Active"), age(obj)]


Printer = tuple[tuple[Column, ...], Callable[[Obj], list[Cell]]]
PRINTERS: dict[str, Printer] = {
    "deployments.apps": (
        (
            NAME,
            Column("Ready", description="Number of the pod with ready state"),
            Column(
                "Up-to-date",
                description="Total number of non-terminated pods targeted by "
                "this deployment that have the desired template spec.",
            ),
            Column(
                "Available",
                description="Total number of available pods (ready for at least "
                "minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            *TEMPLATE_COLUMNS,
        ),
        _deployment,
    ),
    "replicasets.apps": (
        (
            NAME,
            Column("Desired", "integer", description="Replicas is the number of desired pods."),
            Column(
                "Current",
                "integer",
                description="Replicas is the most recently observed "
                "number of non-terminating pods.",
            ),
            Column(
                "Ready",
                "integer",
                description="The number of non-terminating pods "
                "targeted by this ReplicaSet with a Ready Condition.",
            ),
            AGE,
            *TEMPLATE_COLUMNS,
        ),
        _replicaset,
    ),
    "pods": (
        (
            NAME,
            Column(
                "Ready",
                description="The aggregate readiness state of this pod for accepting traffic.",
            ),
            Column("Status", description="The aggregate status of the containers in this pod."),
            Column(
                "Restarts",
                description="The number of times the containers in this pod have "
                "been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            Column("IP", priority=1, description="IP address allocated to the pod."),
            Column("Node", priority=1, description="Name of the node the pod is scheduled on."),
            Column("Nominated Node", priority=1, description="Nominated node name."),
            Column("Readiness Gates", priority=1, description="Pod readiness gates."),
        ),
        _pod,
    ),
    "services": (
        (
            NAME,
            Column("Type", description="Type of the Service."),
            Column("Cluster-IP", description="ClusterIP of the Service."),
            Column("External-IP", description="External IPs of the Service."),
            Column("Port(s)", description="The ports exposed by this service."),
            AGE,
            Column(
                "Selector",
                priority=1,
                description="Route service traffic to pods with "
                "label keys and values matching this selector.",
            ),
        ),
        _service,
    ),
    "configmaps": (
        (NAME, Column("Data", "integer", description="Data contains the configuration data."), AGE),
        _configmap,
    ),
    "nodes": (
        (
            NAME,
            Column("Status", description="The status of the node"),
            Column("Roles", description="The roles of the node"),
            AGE,
            Column("Version", description="Kubelet Version reported by the node."),
            Column(
                "Internal-IP", priority=1, description="List of addresses reachable to the node."
            ),
            Column(
                "External-IP", priority=1, description="List of addresses reachable to the node."
            ),
            Column("OS-Image", priority=1, description="OS Image reported by the node."),
            Column(
                "Kernel-Version", priority=1, description="Kernel Version reported by the node."
            ),
            Column(
                "Container-Runtime",
                priority=1,
                description="ContainerRuntime Version reported by the node.",
            ),
        ),
        _node,
    ),
    "namespaces": (
        (NAME, Column("Status", description="The status of the namespace"), AGE),
        _namespace,
    ),
}
# rest.NewDefaultTableConvertor (k8s.io/apiserver/pkg/registry/rest/table.go)
DEFAULT_PRINTER: Printer = (
    (NAME, Column("Created At", "date", description=AGE_DOC)),
    lambda obj: [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")],
)


def wants_table(accept: str | None) -> str | None:
    """The Table version ("v1" or "v1beta1") the Accept header asks for first, if any."""
    for media_range in (accept or "").split(","):
        params = dict(
            part.strip().split("=", 1) for part in media_range.split(";")[1:] if "=" in part
        )
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            version = params.get("v", "v1")
            if version in ("v1", "v1beta1"):
                return version
    return None


def table(
    resource: Resource,
    objects: list[Obj],
    resource_version: str,
    version: str = "v1",
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """The Table of `objects`; each row carries the object as PartialObjectMetadata (the
    default `includeObject=Metadata`), the whole object, or nothing (`None`)."""
    if include_object not in ("None", "Metadata", "Object"):
        raise ApiError(
            400,
            "BadRequest",
            f'includeObject: Unsupported value: "{include_object}": supported values: '
            '"Metadata", "None", "Object"',
        )
    columns, printer = PRINTERS.get(resource.qualified, DEFAULT_PRINTER)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj)[: len(columns)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }
