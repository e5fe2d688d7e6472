"""What applying a release's objects would change in the cluster, before anything is applied.

Each object goes to the API server as a server-side apply with `dryRun=All`: the server
merges it into the live object exactly as a real apply would (defaults, admission, field
ownership, schema) and answers with the result without persisting it. The difference between
the live object and that answer is the change, field by field — the approach of
`kubectl diff --server-side` (k8s.io/kubectl/pkg/cmd/diff/diff.go, DryRunVerifier + apply).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_rollout.k8s.cluster import KINDS, ClusterClient, FieldOwnershipConflict, NotFound

Obj = dict[str, Any]
Action = Literal["create", "change", "unchanged", "conflict"]

# Fields the API server writes on every object and a diff of intent should not show.
SERVER_METADATA = frozenset(
    {"managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"}
)


@dataclass(frozen=True)
class FieldChange:
    """One field the apply would set: its path, the live value and the applied one
    (None where the field is absent)."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ObjectPlan:
    """What applying one object would do; `changes` lists the fields of a change, `conflicts`
    the (manager, field) pairs another manager owns, `note` why the server was not asked."""

    kind: str
    name: str
    namespace: str | None
    action: Action
    changes: tuple[FieldChange, ...] = ()
    conflicts: tuple[tuple[str, str], ...] = ()
    note: str = ""

    @property
    def ref(self) -> str:
        """'Kind/namespace/name', or 'Kind/name' for a cluster-scoped object."""
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "action": self.action,
            "changes": [change.to_json() for change in self.changes],
            "conflicts": [{"manager": m, "field": f} for m, f in self.conflicts],
            "note": self.note,
        }


@dataclass(frozen=True)
class Plan:
    """Every object's plan, in the order the objects would be applied."""

    objects: tuple[ObjectPlan, ...] = field(default_factory=tuple)

    def count(self, action: Action) -> int:
        return sum(1 for obj in self.objects if obj.action == action)

    def to_json(self) -> dict[str, Any]:
        actions: tuple[Action, ...] = ("create", "change", "unchanged", "conflict")
        return {
            "objects": [obj.to_json() for obj in self.objects],
            "summary": {action: self.count(action) for action in actions},
        }


def plan_objects(cluster: ClusterClient, objects: Sequence[Obj]) -> Plan:
    """Dry-run apply each object and compare the server's answer with the live object.
    Objects in a namespace that does not exist yet are created with it; the server cannot
    dry-run them (it would answer 404), so they are planned as created without its check."""
    new_namespaces = {
        obj["metadata"]["name"]
        for obj in objects
        if obj["kind"] == "Namespace" and cluster.find("Namespace", obj["metadata"]["name"]) is None
    }
    return Plan(tuple(_plan_one(cluster, obj, new_namespaces) for obj in objects))


def _plan_one(cluster: ClusterClient, obj: Obj, new_namespaces: set[str]) -> ObjectPlan:
    kind, name = obj["kind"], obj["metadata"]["name"]
    namespaced = KINDS[kind][2] if kind in KINDS else True
    namespace = obj["metadata"].get("namespace") if namespaced else None
    if namespace in new_namespaces:
        return ObjectPlan(kind, name, namespace, "create", note=f"with namespace {namespace}")
    live = cluster.find(kind, name, namespace)
    try:
        applied = cluster.apply(obj, dry_run=True)
    except FieldOwnershipConflict as conflict:
        return ObjectPlan(kind, name, namespace, "conflict", conflicts=tuple(conflict.conflicts))
    except NotFound as missing:  # e.g. a namespace that neither exists nor is in the plan
        return ObjectPlan(kind, name, namespace, "create", note=str(missing))
    if live is None:
        return ObjectPlan(kind, name, namespace, "create")
    changes = tuple(field_changes(_intent(live), _intent(applied)))
    return ObjectPlan(kind, name, namespace, "change" if changes else "unchanged", changes)


def _intent(obj: Obj) -> Obj:
    """The object without status and the metadata the server maintains."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k not in SERVER_METADATA}
    return {k: v for k, v in obj.items() if k != "status"} | {"metadata": metadata}


def field_changes(before: Any, after: Any, path: str = "") -> Iterator[FieldChange]:
    """The leaves that differ between two JSON values, with dotted paths; list items are
    named by their `name` field where every item has one (`containers[vllm].image`)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            child = f"{path}.{key}" if path else str(key)
            yield from field_changes(before.get(key), after.get(key), child)
        return
    if isinstance(before, list) and isinstance(after, list):
        named_before, named_after = _by_name(before), _by_name(after)
        if named_before is not None and named_after is not None:
            for key in sorted(named_before.keys() | named_after.keys()):
                yield from field_changes(
                    named_before.get(key), named_after.get(key), f"{path}[{key}]"
                )
            return
        if len(before) == len(after):
            for index, (old, new) in enumerate(zip(before, after, strict=True)):
                yield from field_changes(old, new, f"{path}[{index}]")
            return
    if before != after:
        yield FieldChange(path, before, after)


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """The items keyed by their `name`, or None unless every item is an object with a
    distinct name."""
    if not all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
        return None
    named = {item["name"]: item for item in items}
    return named if len(named) == len(items) else None
