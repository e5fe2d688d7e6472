"""Binds pending pods to nodes: node selectors, taints and tolerations, and allocatable
cpu, memory and `nvidia.com/gpu`. A pod that fits nowhere stays Pending and says why."""

from __future__ import annotations

from collections import Counter
from typing import Any

from llm_rollout.spec.quantity import parse_quantity
from sandbox.cluster.objects import Obj, iso, now, pod_requests
from sandbox.cluster.store import ApiError, ObjectStore

RESOURCE_NAMES = ("cpu", "memory", "nvidia.com/gpu")


class Scheduler:
    """One scheduling pass over the store's unbound pods."""

    def __init__(self, store: ObjectStore, record_event: Any) -> None:
        self.store = store
        self.pods = store.resource("pods")
        self.nodes = store.resource("nodes")
        self.record_event = record_event

    def schedule(self) -> None:
        pods, _ = self.store.list(self.pods)
        nodes, _ = self.store.list(self.nodes)
        used = {node["metadata"]["name"]: Counter[str]() for node in nodes}
        for pod in pods:
            bound = pod["spec"].get("nodeName")
            if bound in used:
                used[bound].update(pod_requests(pod))
        for pod in pods:
            if pod["spec"].get("nodeName") or "deletionTimestamp" in pod["metadata"]:
                continue
            try:
                self._place(pod, nodes, used)
            except ApiError as error:
                if error.code not in (404, 409):
                    raise

    def _place(self, pod: Obj, nodes: list[Obj], used: dict[str, Counter[str]]) -> None:
        wanted = pod_requests(pod)
        reasons: Counter[str] = Counter()
        for node in nodes:
            reason = self._misfit(pod, node, wanted, used[node["metadata"]["name"]])
            if reason is None:
                self._bind(pod, node)
                used[node["metadata"]["name"]].update(wanted)
                return
            reasons[reason] += 1
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        message = f"0/{len(nodes)} nodes are available: {detail or 'no nodes'}."
        scheduled = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": iso(now()),
        }
        current = next(
            (
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c["type"] == "PodScheduled"
            ),
            None,
        )
        if current and current.get("message") == message:
            return
        pod["status"] = {"phase": "Pending", "conditions": [scheduled]}
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.store.replace(self.pods, namespace, name, pod, subresource="status")
        self.record_event(pod, "Warning", "FailedScheduling", message, "default-scheduler")

    @staticmethod
    def _misfit(pod: Obj, node: Obj, wanted: dict[str, float], used: Counter[str]) -> str | None:
        selector = pod["spec"].get("nodeSelector") or {}
        node_labels = node["metadata"].get("labels") or {}
        if any(node_labels.get(k) != v for k, v in selector.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        tolerations = pod["spec"].get("tolerations") or []
        for taint in node["spec"].get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
                tolerations, taint
            ):
                return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        allocatable = node.get("status", {}).get("allocatable") or {}
        for name in RESOURCE_NAMES:
            if wanted.get(name, 0) <= 0:
                continue
            capacity = float(parse_quantity(str(allocatable.get(name, "0"))))
            if used[name] + wanted[name] > capacity:
                return f"Insufficient {name}"
        return None

    def _bind(self, pod: Obj, node: Obj) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        live = self.store.get(self.pods, namespace, name)
        live["spec"]["nodeName"] = node["metadata"]["name"]
        live = self.store.replace(self.pods, namespace, name, live)
        live["status"] = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(now())}
            ],
        }
        self.store.replace(self.pods, namespace, name, live, subresource="status")
        self.record_event(
            live,
            "Normal",
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {node['metadata']['name']}",
            "default-scheduler",
        )


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists" and (
            not toleration.get("key") or toleration["key"] == taint["key"]
        ):
            return True
        if toleration.get("key") == taint["key"] and toleration.get("value") == taint.get("value"):
            return True
    return False
