"""Autoscaling inputs: prometheus-adapter rules that serve vLLM's per-pod gauges through the
custom metrics API (named as the HPA asks: `vllm_num_requests_waiting`, …), and the KEDA
ScaledObject alternative that queries Prometheus directly."""

from __future__ import annotations

from typing import Any

from llm_rollout.k8s.workloads import scale_target
from llm_rollout.monitoring.catalogue import metric_names
from llm_rollout.spec import ReleaseSpec


def adapter_rules(spec: ReleaseSpec) -> dict[str, Any]:
    """prometheus-adapter `rules:` (its ConfigMap's config.yaml) for the spec's metrics.

    Series must carry `namespace` and `pod` (our scrape relabelling keeps both) for the
    adapter to attach them to pods.
    """
    names = metric_names(spec.serving.version_tuple)
    rules = []
    for source, exposed in (
        (names.waiting, "vllm_num_requests_waiting"),
        (names.running, "vllm_num_requests_running"),
        (names.kv_cache_usage, "vllm_kv_cache_usage_perc"),
    ):
        rules.append(
            {
                "seriesQuery": f'{{__name__="{source}",namespace!="",pod!=""}}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": f"^{source}$", "as": exposed},
                "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            }
        )
    return {"rules": rules}


def keda_scaled_object(
    spec: ReleaseSpec, release_id: str, prometheus_url: str
) -> dict[str, Any] | None:
    """A KEDA ScaledObject equivalent to the HPA (for clusters running KEDA, not the adapter),
    scaling `release_id`'s workload on that release's load. Like the HPA it belongs to the
    stable release: re-render and re-apply it when a promotion completes."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    names = metric_names(spec.serving.version_tuple)
    source = {
        "num_requests_waiting": names.waiting,
        "num_requests_running": names.running,
        "kv_cache_usage_perc": names.kv_cache_usage,
    }[scaling.metric]
    # KEDA hands the query's value to the HPA it manages as an external metric whose target
    # is the threshold, of type AverageValue (the trigger's `metricType`, set explicitly
    # below; trigger.metricType since KEDA 2.7, keda.sh/docs/2.7/scalers/memory/). For an
    # AverageValue target the HPA wants ceil(value / threshold) replicas (Kubernetes docs,
    # "Horizontal Pod Autoscaling", algorithm details; keda.sh/docs/latest/scalers/prometheus/
    # examples scale on `sum(rate(...))`). So the query is the total over the release's pods and
    # the threshold the per-pod target, as the HPA's Pods metric means it; an avg would ask
    # for ceil(per-pod mean / target) replicas, 1 or 2 whatever the load.
    query = (
        f'sum({source}{{namespace="{spec.namespace}",release="{release_id}",model="{spec.name}"}})'
    )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": spec.name, "namespace": spec.namespace},
        "spec": {
            "scaleTargetRef": scale_target(spec, release_id),
            "minReplicaCount": scaling.min,
            "maxReplicaCount": scaling.max,
            "cooldownPeriod": 600,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": f"{scaling.target:g}",
                    },
                }
            ],
        },
    }
