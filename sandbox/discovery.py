"""Pod discovery for the sandbox's Prometheus: the stand-in for `kubernetes_sd_configs`
(role pod), which Debian's Prometheus is built without. It lists the sandbox cluster's pods
over HTTP every second and writes them as file-discovery targets carrying the labels
Kubernetes discovery would, so the product's relabel rules see exactly what they would see
in a cluster: one target per container port, pod labels as `__meta_kubernetes_pod_label_*`.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from kubernetes import client

from sandbox.prometheus import LocalPrometheus

POLL_SECONDS = 1.0  # as often as Prometheus re-reads the file


def pod_targets(pods: list[Any]) -> list[dict[str, object]]:
    """File-discovery target groups for pods (kubernetes client objects), as Kubernetes
    discovery labels them; pods without an IP yet have no target, like in a cluster."""
    groups: list[dict[str, object]] = []
    for pod in pods:
        ip = pod.status.pod_ip if pod.status else None
        if not ip or pod.metadata.deletion_timestamp is not None:
            continue
        meta = "__meta_kubernetes_pod_"
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        base: dict[str, str] = {
            "__meta_kubernetes_namespace": pod.metadata.namespace,
            f"{meta}name": pod.metadata.name,
            f"{meta}ip": ip,
            f"{meta}phase": pod.status.phase or "",
            f"{meta}ready": "true" if ready else "false",
        }
        for key, value in (pod.metadata.labels or {}).items():
            base[f"{meta}label_{_label_name(key)}"] = value
        for container in pod.spec.containers:
            for port in container.ports or []:
                labels = {
                    **base,
                    f"{meta}container_name": container.name,
                    f"{meta}container_port_number": str(port.container_port),
                    f"{meta}container_port_name": port.name or "",
                }
                groups.append({"targets": [f"{ip}:{port.container_port}"], "labels": labels})
    return groups


class PodDiscovery:
    """Keeps a LocalPrometheus's targets equal to the cluster's pods until stopped."""

    def __init__(self, api: client.ApiClient, prometheus: LocalPrometheus) -> None:
        self.core = client.CoreV1Api(api)
        self.prometheus = prometheus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-discovery", daemon=True)

    def start(self) -> PodDiscovery:
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sync(self) -> None:
        pods = self.core.list_pod_for_all_namespaces(_request_timeout=5).items
        self.prometheus.set_targets(pod_targets(pods))

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.sync()
            except Exception:
                continue


def _label_name(key: str) -> str:
    """Kubernetes discovery's label sanitizing: every invalid character becomes '_'."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)
