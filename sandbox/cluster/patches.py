"""The patch formats of the Kubernetes API: JSON merge, strategic merge, JSON patch."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.cluster.store import ApiError

# Lists of objects that strategic merge patches merge by this key instead of replacing.
MERGE_KEY = "name"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Like a merge patch, but lists of named objects (containers, env, ports, volumes…)
    merge item by item on `name`, as kubectl's `set image` and `edit` expect."""
    if isinstance(patch, list) and isinstance(target, list) and _named(patch) and _named(target):
        result = copy.deepcopy(target)
        positions = {item[MERGE_KEY]: index for index, item in enumerate(result)}
        for item in patch:
            if item.get("$patch") == "delete":
                result = [r for r in result if r[MERGE_KEY] != item[MERGE_KEY]]
                positions = {r[MERGE_KEY]: i for i, r in enumerate(result)}
            elif item[MERGE_KEY] in positions:
                index = positions[item[MERGE_KEY]]
                result[index] = strategic_merge_patch(result[index], item)
            else:
                result.append(copy.deepcopy(item))
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace/test/copy/move."""
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), _pointer(operation.get("path", ""))
        if op == "test":
            if _get(document, path) != operation.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {operation['path']}")
        elif op in ("add", "replace"):
            document = _set(document, path, copy.deepcopy(operation.get("value")), op == "add")
        elif op == "remove":
            document = _remove(document, path)
        elif op in ("copy", "move"):
            source = _pointer(operation.get("from", ""))
            value = copy.deepcopy(_get(document, source))
            if op == "move":
                document = _remove(document, source)
            document = _set(document, path, value, True)
        else:
            raise ApiError(400, "BadRequest", f"unknown JSON patch operation {op!r}")
    return document


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and MERGE_KEY in i for i in items)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _get(document: Any, path: list[str]) -> Any:
    current = document
    for part in path:
        try:
            current = current[int(part)] if isinstance(current, list) else current[part]
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise ApiError(422, "Invalid", f"path /{'/'.join(path)} does not exist") from error
    return current


def _set(document: Any, path: list[str], value: Any, insert: bool) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        if not insert and last not in parent:
            raise ApiError(422, "Invalid", f"path /{'/'.join(path)} does not exist")
        parent[last] = value
    return document


def _remove(document: Any, path: list[str]) -> Any:
    parent = _get(document, path[:-1])
    try:
        if isinstance(parent, list):
            parent.pop(int(path[-1]))
        else:
            del parent[path[-1]]
    except (KeyError, IndexError, ValueError) as error:
        raise ApiError(422, "Invalid", f"path /{'/'.join(path)} does not exist") from error
    return document
