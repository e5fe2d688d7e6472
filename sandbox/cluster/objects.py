"""Small helpers for reading and building Kubernetes objects as dicts."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from llm_rollout.spec.quantity import parse_quantity

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"


def meta(obj: Obj) -> Obj:
    return obj["metadata"]  # type: ignore[no-any-return]


def labels(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}  # type: ignore[no-any-return]


def owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def template_hash(template: Obj) -> str:
    """A stable hash of a pod template: equal templates map to the same ReplicaSet."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as Kubernetes' SafeEncodeString
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def condition(obj: Obj, kind: str) -> Obj | None:
    for entry in obj.get("status", {}).get("conditions") or []:
        if entry.get("type") == kind:
            return entry  # type: ignore[no-any-return]
    return None


def pod_is_ready(pod: Obj) -> bool:
    ready = condition(pod, "Ready")
    return bool(ready and ready.get("status") == "True") and "deletionTimestamp" not in meta(pod)


def scaled_value(value: int | str | None, total: int, round_up: bool, default: int | str) -> int:
    """An int-or-percent of `total`, rounded as Kubernetes rounds it."""
    value = default if value is None else value
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total
        return -(-exact // 100) if round_up else exact // 100
    return int(value)


def pod_requests(pod: Obj) -> dict[str, float]:
    """Summed container requests (limits where no request) for cpu, memory and GPUs."""
    totals = {"cpu": 0.0, "memory": 0.0, "nvidia.com/gpu": 0.0}
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name in totals:
            if name in wanted:
                totals[name] += float(parse_quantity(str(wanted[name])))
    return totals
