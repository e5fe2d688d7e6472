"""The Prometheus scrape job for a serving namespace: Kubernetes pod discovery, relabelled to
the pod IP and vLLM port, keeping namespace, pod, release and model labels (a track is a
release the controller's record names, not a pod label); and the
same scrape as a Prometheus Operator PodMonitor."""

from __future__ import annotations

from typing import Any

from llm_rollout.k8s.labels import HTTP_PORT_NAME, common_labels, service_selector
from llm_rollout.k8s.router_manifests import COMPONENT as ROUTER_COMPONENT
from llm_rollout.k8s.router_manifests import router_selector
from llm_rollout.spec import ReleaseSpec

DEFAULT_SCRAPE_INTERVAL = "15s"


def relabel_rules() -> list[dict[str, Any]]:
    """Keep only llm-rollout pods' vLLM port; carry the labels the gate selects on."""
    meta = "__meta_kubernetes_pod_"
    return [
        {
            "source_labels": [f"{meta}label_app_kubernetes_io_part_of"],
            "regex": "llm-rollout",
            "action": "keep",
        },
        {
            "source_labels": [f"{meta}container_port_name"],
            "regex": HTTP_PORT_NAME,
            "action": "keep",
        },
        {
            "source_labels": [f"{meta}ip", f"{meta}container_port_number"],
            "regex": "(.+);(.+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
            "action": "replace",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": [f"{meta}name"], "target_label": "pod"},
        {"source_labels": [f"{meta}label_llm_rollout_io_release"], "target_label": "release"},
        {"source_labels": [f"{meta}label_app_kubernetes_io_name"], "target_label": "model"},
        # the model's router pods are named '<model>-router': their series carry the model's
        # name too, so the router's rules and panels sit beside the model's (router metrics
        # are all `llm_rollout_router_*`, and carry no release: no gate query takes them in)
        {
            "source_labels": [
                f"{meta}label_app_kubernetes_io_component",
                f"{meta}label_app_kubernetes_io_name",
            ],
            "regex": f"{ROUTER_COMPONENT};(.+)-router",
            "replacement": "$1",
            "target_label": "model",
            "action": "replace",
        },
    ]


def scrape_job(spec: ReleaseSpec, interval: str = DEFAULT_SCRAPE_INTERVAL) -> dict[str, Any]:
    """One `scrape_configs` entry for the spec's namespace (vLLM serves /metrics on its API
    port)."""
    return {
        "job_name": f"llm-rollout-{spec.namespace}",
        "scrape_interval": interval,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [spec.namespace]}}],
        "relabel_configs": relabel_rules(),
    }


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.title() for word in rest)


def pod_monitor(spec: ReleaseSpec, interval: str = DEFAULT_SCRAPE_INTERVAL) -> dict[str, Any]:
    """A monitoring.coreos.com/v1 PodMonitor scraping what `scrape_job` scrapes, with the same
    relabelling (the operator's RelabelConfig spells the keys in camelCase: sourceLabels,
    targetLabel; prometheus-operator Documentation/api-reference/api.md)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"llm-rollout-{spec.name}",
            "namespace": spec.namespace,
            "labels": common_labels(spec),
        },
        "spec": {
            "selector": {"matchLabels": service_selector(spec)},  # stable and canary pods
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": HTTP_PORT_NAME,
                    "path": "/metrics",
                    "interval": interval,
                    "relabelings": [
                        {_camel(key): value for key, value in rule.items()}
                        for rule in relabel_rules()
                    ],
                }
            ],
        },
    }


def router_pod_monitor(
    spec: ReleaseSpec, interval: str = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, Any] | None:
    """The PodMonitor of the model's router pods (None without `routing:`): the same
    relabelling, so its series carry the model's name."""
    if spec.routing is None:
        return None
    monitor = pod_monitor(spec, interval)
    monitor["metadata"]["name"] = f"llm-rollout-{spec.name}-router"
    monitor["spec"]["selector"] = {"matchLabels": router_selector(spec)}
    return monitor
