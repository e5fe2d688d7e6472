"""Server-side apply's field ownership, simplified but faithful where it matters:

- each manager owns a set of leaf field paths (maps are walked; lists are atomic leaves);
- applying a value to a field another manager owns with a *different* value is a conflict
  (409) unless `force`, which transfers ownership; equal values are shared;
- fields a manager applied before and no longer applies are removed, unless someone else
  owns them;
- a plain update (PUT/PATCH) takes ownership of whatever it changed.

Ownership is stored in `metadata.managedFields` in the real FieldsV1 shape
(`{"f:spec": {"f:replicas": {}}}`), so clients that read it see the usual structure.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

Path = tuple[str, ...]
# Identity and server-owned fields are never owned by a manager.
IGNORED: frozenset[Path] = frozenset(
    {
        ("apiVersion",),
        ("kind",),
        ("status",),
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("metadata", "uid"),
        ("metadata", "resourceVersion"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
        ("metadata", "managedFields"),
        ("metadata", "deletionTimestamp"),
        ("metadata", "selfLink"),
    }
)


class ApplyConflict(Exception):
    """Applied fields are owned by other managers with other values."""

    def __init__(self, conflicts: list[tuple[str, Path]], api_version: str) -> None:
        self.conflicts = conflicts
        lines = [
            f'conflict with "{manager}" using {api_version}: .{".".join(path)}'
            for manager, path in conflicts
        ]
        count = len(conflicts)
        super().__init__(
            f"Apply failed with {count} conflict{'s' if count != 1 else ''}: " + "\n".join(lines)
        )


def leaf_paths(obj: Any, prefix: Path = ()) -> set[Path]:
    """Every leaf path in a JSON object (lists and scalars are leaves)."""
    if isinstance(obj, dict) and obj:
        paths: set[Path] = set()
        for key, value in obj.items():
            path = (*prefix, str(key))
            if any(path[: len(ignored)] == ignored for ignored in IGNORED):
                continue
            paths |= leaf_paths(value, path)
        return paths
    return {prefix} if prefix else set()


def get_path(obj: Any, path: Path) -> Any:
    current = obj
    for part in path:
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def delete_path(obj: dict[str, Any], path: Path) -> None:
    """Remove a leaf and any maps it leaves empty."""
    parents = [obj]
    for part in path[:-1]:
        child = parents[-1].get(part)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 2, -1, -1):
        if parents[depth + 1] == {}:
            parents[depth].pop(path[depth], None)


def merge(live: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """Applied values over live ones, maps recursively, lists replaced whole."""
    result = copy.deepcopy(live)
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def owned_by(obj: dict[str, Any]) -> dict[str, tuple[str, set[Path]]]:
    """manager → (operation, owned paths), from metadata.managedFields."""
    owners: dict[str, tuple[str, set[Path]]] = {}
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("subresource"):
            continue
        owners[entry["manager"]] = (entry.get("operation", "Update"), _decode(entry["fieldsV1"]))
    return owners


def set_owners(obj: dict[str, Any], owners: dict[str, tuple[str, set[Path]]]) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj.setdefault("metadata", {})["managedFields"] = [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": obj.get("apiVersion", "v1"),
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": _encode(paths),
        }
        for manager, (operation, paths) in sorted(owners.items())
        if paths
    ]


def apply(
    live: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live` (None: it does not exist)."""
    live = copy.deepcopy(live) if live is not None else {}
    owners = owned_by(live)
    new_paths = leaf_paths(applied)
    conflicts: list[tuple[str, Path]] = []
    for other, (_, paths) in owners.items():
        if other == manager:
            continue
        for path in sorted(new_paths & paths):
            if get_path(live, path) != get_path(applied, path):
                conflicts.append((other, path))
    if conflicts and not force:
        raise ApplyConflict(conflicts, str(applied.get("apiVersion", "")))
    for other, path in conflicts:
        owners[other][1].discard(path)
    previous = owners.get(manager, ("Apply", set()))[1]
    result = merge(live, applied)
    others = set().union(*(paths for m, (_, paths) in owners.items() if m != manager))
    for path in previous - new_paths - others:
        delete_path(result, path)
    owners[manager] = ("Apply", new_paths)
    set_owners(result, owners)
    return result


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str) -> None:
    """After a plain update, give `manager` the fields it changed (in place on `new`)."""
    owners = owned_by(old or {})
    before, after = leaf_paths(old or {}), leaf_paths(new)
    changed = {p for p in after if get_path(old or {}, p) != get_path(new, p)}
    removed = before - after
    for other, (_, paths) in owners.items():
        if other != manager:
            paths -= changed | removed
    operation, mine = owners.get(manager, ("Update", set()))
    owners[manager] = (operation if operation == "Apply" else "Update", (mine | changed) - removed)
    set_owners(new, owners)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _encode(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def _decode(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in tree.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        paths |= _decode(child, path) if child else {path}
    return paths
