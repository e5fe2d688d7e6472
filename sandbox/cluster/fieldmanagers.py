"""Server-side apply's field ownership, as the API server keeps it in `metadata.managedFields`.

The rules follow kubernetes-sigs/structured-merge-diff (`merge/update.go`) and the API server's
field manager (k8s.io/apimachinery `pkg/util/managedfields/internal`):

- A manager is identified by (manager, operation, apiVersion, subresource); the apiVersion is
  left out for `Apply` (internal/managedfields.go `BuildManagerIdentifier`). So "llm-rollout"
  applying and "llm-rollout" writing `/scale` are two different managers.
- Apply: the applied configuration is merged into the live object (maps by key, associative
  lists item by item on their keys, atomic lists replaced whole); the fields another manager
  owns that the merge *modifies or adds* are conflicts (update.go `update`: `managerSet.Set()
  .Intersection(compare.Modified.Union(compare.Added))`), a 409 unless `force`, which moves
  them to the applier. Equal values are not conflicts: the applier becomes a co-owner. Fields
  the applier applied last time and no longer applies are removed unless someone else owns
  them (update.go `prune`).
- Update (POST, PUT, PATCH, and writes to `/scale` and `/status`): always forced; the writer
  takes every field it modified or added, and everyone loses what was removed
  (update.go `Update`).
- `/scale` is recorded on the parent as `{manager, operation: Update, apiVersion: apps/v1,
  subresource: scale}` owning `f:spec.f:replicas`; a parent entry keeps `spec.replicas` only
  if the scale write did not change it (internal/scalehandler.go `ToParent`).
- `/status` writes own only status fields and main-resource writes never own status (the
  strategies' reset fields); identity metadata is never owned (internal/stripmeta.go).
- Conflict messages as internal/conflict.go `NewConflictError` / `printManager` print them.

Paths are tuples of FieldsV1 keys: `("f:spec", "f:template", ..., 'k:{"name":"vllm"}',
"f:image")`. A keyed list item's own path is owned too (`".": {}` in FieldsV1).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

Path = tuple[str, ...]
Identity = tuple[str, str, str, str]  # (manager, operation, apiVersion or "", subresource)
Owners = dict[Identity, set[Path]]

# Never owned (internal/stripmeta.go: apiVersion, kind and the identity metadata).
IGNORED: tuple[Path, ...] = (
    ("f:apiVersion",),
    ("f:kind",),
    ("f:metadata", "f:name"),
    ("f:metadata", "f:namespace"),
    ("f:metadata", "f:uid"),
    ("f:metadata", "f:resourceVersion"),
    ("f:metadata", "f:generation"),
    ("f:metadata", "f:creationTimestamp"),
    ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:deletionTimestamp"),
    ("f:metadata", "f:deletionGracePeriodSeconds"),
    ("f:metadata", "f:selfLink"),
)
STATUS: Path = ("f:status",)
REPLICAS: Path = ("f:spec", "f:replicas")

# Associative lists of the built-in kinds and their keys (the `x-kubernetes-list-map-keys` of
# the Kubernetes OpenAPI schema); every other list is atomic. `protocol` defaults to TCP
# before the key is read, as the API server defaults it.
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "hostAliases": ("ip",),
}
PORT_KEYS = {"containerPort": ("containerPort", "protocol"), "port": ("port", "protocol")}
KEY_DEFAULTS = {"protocol": "TCP"}


class ApplyConflict(Exception):
    """Applied fields are owned by other managers with other values."""

    def __init__(self, conflicts: list[tuple[Identity, Path]]) -> None:
        self.conflicts = conflicts
        self.causes = [
            {
                "type": "FieldManagerConflict",
                "message": f"conflict with {describe(identity)}",
                "field": path_string(path),
            }
            for identity, path in conflicts
        ]
        if len(conflicts) == 1:
            identity, path = conflicts[0]
            message = (
                f"Apply failed with 1 conflict: conflict with {describe(identity)}: "
                f"{path_string(path)}"
            )
        else:
            lines: list[str] = []
            for identity in sorted({identity for identity, _ in conflicts}, key=_identity_json):
                lines.append(f"conflicts with {describe(identity)}:")
                lines += [f"- {path_string(p)}" for i, p in conflicts if i == identity]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
        super().__init__(message)


def describe(identity: Identity) -> str:
    """How the API server names a manager in a conflict (conflict.go `printManager`)."""
    manager, operation, api_version, subresource = identity
    text = json.dumps(manager)
    if subresource:
        text += f" with subresource {json.dumps(subresource)}"
    if operation == "Update":
        text += f" using {api_version}"
    return text


def path_string(path: Path) -> str:
    """A path as structured-merge-diff prints it: `.spec.containers[name="vllm"].image`."""
    text = ""
    for part in path:
        if part.startswith("f:"):
            text += "." + part[2:]
        elif part.startswith("k:"):
            keys = json.loads(part[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif part.startswith("v:"):
            text += f"[={part[2:]}]"
    return text


# -- the field set of an object -----------------------------------------------------------


def list_keys(field: str, items: list[Any]) -> tuple[str, ...] | None:
    """The merge keys of list `field`, or None when it is atomic (or items lack a key)."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    keys = LIST_KEYS.get(field)
    if field == "ports":
        keys = next((k for first, k in PORT_KEYS.items() if first in items[0]), None)
    if keys is None:
        return None
    required = [k for k in keys if k not in KEY_DEFAULTS]
    return keys if all(all(k in item for k in required) for item in items) else None


def item_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    """`k:{"containerPort":8000,"protocol":"TCP"}` (keys sorted, as FieldsV1 writes them)."""
    values = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in sorted(keys)}
    return "k:" + json.dumps(values, separators=(",", ":"))


def field_set(obj: Any, prefix: Path = ()) -> set[Path]:
    """Every owned-able path of an object: leaves, atomic lists, and keyed list items."""
    paths: set[Path] = set()
    if not isinstance(obj, dict):
        return paths
    for key, value in obj.items():
        path = (*prefix, f"f:{key}")
        if path in IGNORED:
            continue
        keys = list_keys(str(key), value) if isinstance(value, list) else None
        if isinstance(value, dict) and value:
            paths |= field_set(value, path)
        elif keys is not None:
            for item in value:
                item_path = (*path, item_key(item, keys))
                paths.add(item_path)
                paths |= field_set(item, item_path)
        else:
            paths.add(path)
    return paths


def get_path(obj: Any, path: Path) -> Any:
    """The value at `path`, or MISSING."""
    current = obj
    for part in path:
        if part.startswith("f:") and isinstance(current, dict) and part[2:] in current:
            current = current[part[2:]]
        elif part.startswith("k:") and isinstance(current, list):
            current = next((item for item in current if _matches(item, part)), MISSING)
            if current is MISSING:
                return MISSING
        else:
            return MISSING
    return current


def _matches(item: Any, key: str) -> bool:
    if not isinstance(item, dict):
        return False
    wanted = json.loads(key[2:])
    return all(item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in wanted.items())


def delete_path(
    obj: dict[str, Any], path: Path, keep: set[Path] | frozenset[Path] = frozenset()
) -> None:
    """Remove a field or a list item, and the maps or lists that removal leaves empty
    (unless a manager owns them: `keep`)."""
    parents: list[Any] = [obj]
    for part in path[:-1]:
        child = get_path(parents[-1], (part,))
        if child is MISSING:
            return
        parents.append(child)
    if not _remove(parents[-1], path[-1]):
        return
    for depth in range(len(path) - 2, -1, -1):
        if parents[depth + 1] not in ({}, []) or path[: depth + 1] in keep:
            return
        _remove(parents[depth], path[depth])


def _remove(container: Any, part: str) -> bool:
    if part.startswith("f:") and isinstance(container, dict) and part[2:] in container:
        del container[part[2:]]
        return True
    if part.startswith("k:") and isinstance(container, list):
        kept = [item for item in container if not _matches(item, part)]
        removed = len(kept) != len(container)
        container[:] = kept
        return removed
    return False


def merge(live: Any, applied: Any, field: str = "") -> Any:
    """Applied values over live ones: maps recursively, keyed lists item by item (new items
    appended), atomic lists and scalars replaced."""
    if isinstance(applied, dict) and isinstance(live, dict):
        result = copy.deepcopy(live)
        for key, value in applied.items():
            result[key] = merge(live.get(key), value, str(key))
        return result
    if isinstance(applied, list) and isinstance(live, list):
        keys = list_keys(field, applied)
        if keys is not None and list_keys(field, live) == keys:
            result_list = copy.deepcopy(live)
            for item in applied:
                key = item_key(item, keys)
                index = next((i for i, r in enumerate(result_list) if _matches(r, key)), None)
                if index is None:
                    result_list.append(copy.deepcopy(item))
                else:
                    result_list[index] = merge(result_list[index], item, "")
            return result_list
    return copy.deepcopy(applied)


def _changes(old: Any, new: Any, paths: set[Path] | None = None) -> tuple[set[Path], set[Path]]:
    """(modified or added, removed) paths from `old` to `new` (structured-merge-diff's
    Compare: an item present on both sides is not itself modified, only its fields)."""
    before, after = field_set(old), field_set(new)
    if paths is not None:
        before, after = before & paths, after & paths
    changed = {
        p
        for p in after
        if p not in before or (not p[-1].startswith("k:") and get_path(old, p) != get_path(new, p))
    }
    return changed, before - after


# -- managedFields ------------------------------------------------------------------------


def owners_of(obj: dict[str, Any]) -> Owners:
    """identity → owned paths, from metadata.managedFields."""
    owners: Owners = {}
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        operation = entry.get("operation", "Update")
        identity = (
            entry.get("manager", ""),
            operation,
            "" if operation == "Apply" else entry.get("apiVersion", ""),
            entry.get("subresource", ""),
        )
        owners[identity] = _decode(entry.get("fieldsV1") or {})
    return owners


def set_owners(
    obj: dict[str, Any], owners: Owners, touched: Identity, before: dict[str, Any] | None
) -> None:
    """Write `owners` to obj's metadata.managedFields; entries other than `touched` keep
    the time they had in `before`."""
    times = {
        _identity_json(identity): entry.get("time")
        for identity, entry in zip(
            owners_of(before or {}),
            (before or {}).get("metadata", {}).get("managedFields") or [],
            strict=False,
        )
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = []
    for identity, paths in owners.items():
        if not paths:
            continue
        manager, operation, api_version, subresource = identity
        entry: dict[str, Any] = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version or obj.get("apiVersion", "v1"),
            "time": now if identity == touched else times.get(_identity_json(identity)) or now,
            "fieldsType": "FieldsV1",
            "fieldsV1": _encode(paths),
        }
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
    obj.setdefault("metadata", {})["managedFields"] = entries


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: it does not exist)."""
    live = copy.deepcopy(live) if live is not None else {}
    owners = owners_of(live)
    me: Identity = (manager, "Apply", "", subresource)
    scope = _scope(subresource)
    new_paths = {p for p in field_set(applied) if scope(p)}
    previous = owners.get(me, set())
    result: dict[str, Any] = merge(live, applied)
    others = set().union(*(paths for who, paths in owners.items() if who != me))
    # shortest first: a list item nobody owns any more goes whole (typed/remove.go) before
    # its fields would be deleted one by one — deleting a key field first (a port) left the
    # rest of the item behind, no longer matching its own key
    for path in sorted(previous - new_paths - others, key=len):
        if not any(other[: len(path)] == path for other in others):
            delete_path(result, path, others | new_paths)
    changed, removed = _changes(live, result)
    conflicts = [
        (who, path)
        for who, paths in owners.items()
        if who != me
        for path in sorted(paths & changed)
    ]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for who, paths in owners.items():
        if who != me:
            owners[who] = paths - changed - removed
    owners[me] = new_paths
    set_owners(result, owners, me, live)
    return result


def record_update(
    old: dict[str, Any] | None, new: dict[str, Any], manager: str, subresource: str = ""
) -> None:
    """After an update by `manager` (on `subresource`, if any), give it the fields it modified
    or added and take them from everyone else (in place on `new`)."""
    owners = owners_of(old or {})
    me: Identity = (manager, "Update", str(new.get("apiVersion", "")), subresource)
    scope = _scope(subresource)
    changed, removed = _changes(old or {}, new)
    changed, removed = {p for p in changed if scope(p)}, {p for p in removed if scope(p)}
    for who, paths in owners.items():
        if who != me:
            owners[who] = paths - changed - removed
    owners[me] = (owners.get(me, set()) - removed) | changed
    set_owners(new, owners, me, old)


def _scope(subresource: str) -> Any:
    """Which paths a write to `subresource` can own (the strategies' reset fields)."""
    if subresource == "status":
        return lambda path: path[:1] == STATUS
    if subresource == "scale":
        return lambda path: path == REPLICAS
    return lambda path: path[:1] != STATUS


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def _identity_json(identity: Identity) -> str:
    return json.dumps(identity)


def _encode(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        if path[-1].startswith("k:"):
            node["."] = {}
    return tree


def _decode(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in tree.items():
        if key == ".":
            paths.add(prefix)
            continue
        path = (*prefix, key)
        paths |= _decode(child, path) if child else {path}
    return paths
