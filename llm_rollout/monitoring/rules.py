"""Prometheus recording and alerting rules for a model, from its spec and vLLM version.

Recording rules aggregate per namespace, model and release (so canary and stable sit side by
side on dashboards: a track is a release, see monitoring.queries); alerts use the spec's own
SLOs, per release.
"""

from __future__ import annotations

from typing import Any

from llm_rollout.monitoring.catalogue import metric_names
from llm_rollout.spec import ReleaseSpec

RATE_WINDOW = "5m"
BY = "namespace, model, release"
QUEUE_DEPTH_ALERT = 10  # waiting requests per model: users are queuing
PREEMPTION_ALERT_PER_SECOND = 0.1  # sustained preemptions: KV cache too small for the load
RESTARTS_ALERT = 2  # container restarts in 15 minutes


def controller_phase(spec: ReleaseSpec, phase: str) -> str:
    """kube-state-metrics' series of the controller's record while it is in `phase`."""
    return (
        f'kube_configmap_labels{{namespace="{spec.namespace}",configmap="{spec.name}-rollout",'
        f'label_llm_rollout_io_phase="{phase}"}}'
    )


def rule_groups(spec: ReleaseSpec) -> dict[str, Any]:
    """A Prometheus rule file (groups of recording and alerting rules) for the spec."""
    names = metric_names(spec.serving.version_tuple)
    sel = f'{{namespace="{spec.namespace}",model="{spec.name}"}}'
    api = f'{{namespace="{spec.namespace}",model="{spec.name}",handler=~"/v1/.*"}}'
    api_5xx = api.replace("}", ',status="5xx"}')
    w = RATE_WINDOW
    prefix = "llm_rollout"

    def quantile(q: str, histogram: str) -> str:
        return f"histogram_quantile({q}, sum by ({BY}, le) (rate({histogram}_bucket{sel}[{w}])))"

    recording = [
        (f"{prefix}:ttft_seconds:p50", quantile("0.5", names.ttft)),
        (f"{prefix}:ttft_seconds:p99", quantile("0.99", names.ttft)),
        (f"{prefix}:itl_seconds:p99", quantile("0.99", names.itl)),
        (f"{prefix}:e2e_seconds:p99", quantile("0.99", names.e2e)),
        (f"{prefix}:queue_seconds:p99", quantile("0.99", names.queue_time)),
        (f"{prefix}:requests:rate5m", f"sum by ({BY}) (rate({names.http_requests}{api}[{w}]))"),
        (f"{prefix}:errors:rate5m", f"sum by ({BY}) (rate({names.http_requests}{api_5xx}[{w}]))"),
        (f"{prefix}:kv_cache_usage:max", f"max by ({BY}) ({names.kv_cache_usage}{sel})"),
        (f"{prefix}:preemptions:rate5m", f"sum by ({BY}) (rate({names.preemptions}{sel}[{w}]))"),
        (f"{prefix}:requests_running:sum", f"sum by ({BY}) ({names.running}{sel})"),
        (f"{prefix}:requests_waiting:sum", f"sum by ({BY}) ({names.waiting}{sel})"),
        (
            f"{prefix}:generation_tokens:rate5m",
            f"sum by ({BY}) (rate({names.generation_tokens}{sel}[{w}]))",
        ),
    ]
    gate = spec.gate
    mine = f'{{namespace="{spec.namespace}",model="{spec.name}"}}'

    def alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
        return alert_rule(spec, name, expr, duration, severity, summary)

    alerts = [
        alert(
            "VllmQueueDepthHigh",
            f"sum by (namespace, model) ({prefix}:requests_waiting:sum{mine})"
            f" > {QUEUE_DEPTH_ALERT}",
            "5m",
            "warning",
            f"more than {QUEUE_DEPTH_ALERT} requests waiting for a slot",
        ),
        alert(
            "VllmKvCacheNearlyFull",
            f"max by (namespace, model, release) ({prefix}:kv_cache_usage:max{mine}) > "
            f"{gate.max_kv_cache_usage}",
            "5m",
            "warning",
            f"KV cache above {gate.max_kv_cache_usage:.0%}",
        ),
        alert(
            "VllmTtftP99OverSlo",
            f"{prefix}:ttft_seconds:p99{mine} > {gate.max_ttft_p99_seconds}",
            "10m",
            "critical",
            f"time to first token p99 over {gate.max_ttft_p99_seconds}s",
        ),
        alert(
            "VllmItlP99OverSlo",
            f"{prefix}:itl_seconds:p99{mine} > {gate.max_itl_p99_seconds}",
            "10m",
            "critical",
            f"inter-token latency p99 over {gate.max_itl_p99_seconds}s",
        ),
        alert(
            "VllmErrorRateHigh",
            f"sum by (namespace, model, release) ({prefix}:errors:rate5m{mine}) / "
            f"sum by (namespace, model, release) ({prefix}:requests:rate5m{mine}) > "
            f"{round(1 - gate.min_success_rate, 6)}",
            "5m",
            "critical",
            f"error rate above {1 - gate.min_success_rate:.2%}",
        ),
        alert(
            "VllmPreempting",
            f"sum by (namespace, model, release) ({prefix}:preemptions:rate5m{mine}) > "
            f"{PREEMPTION_ALERT_PER_SECOND}",
            "10m",
            "warning",
            "requests are being preempted: the KV cache is too small",
        ),
        # from kube-state-metrics, which every monitored cluster runs
        alert(
            "VllmPodRestarting",
            f'increase(kube_pod_container_status_restarts_total{{namespace="{spec.namespace}",'
            f'pod=~"{spec.name}-.*",container="vllm"}}[15m]) > {RESTARTS_ALERT}',
            "0m",
            "warning",
            "a vLLM container keeps restarting",
        ),
        alert(
            "LlmRolloutStuck",
            f'kube_deployment_status_condition{{namespace="{spec.namespace}",'
            f'deployment=~"{spec.name}-rel-[0-9a-f]{{10}}|{spec.name}(-canary)?",'
            'condition="Progressing",status="false"} == 1',
            "0m",
            "critical",
            "a rollout exceeded its progress deadline",
        ),
        # the release controller's phase, a label on its record (ConfigMap `<model>-rollout`)
        # that kube-state-metrics exports with
        # --metric-labels-allowlist=configmaps=[llm-rollout.io/phase]
        alert(
            "LlmRolloutHolding",
            f"{controller_phase(spec, 'Holding')} == 1",
            "1m",
            "warning",
            "the release controller is holding a release: its metrics cannot be measured "
            "(see `llm-rollout status`)",
        ),
        alert(
            "LlmRolloutRollbackStuck",
            f"{controller_phase(spec, 'RollingBack')} == 1",
            "15m",
            "critical",
            "a rollback has not completed in 15 minutes (see `llm-rollout status`)",
        ),
    ]
    return {
        "groups": [
            {
                "name": f"llm-rollout-{spec.name}-recording",
                "interval": "30s",
                "rules": [{"record": record, "expr": expr} for record, expr in recording],
            },
            {"name": f"llm-rollout-{spec.name}-alerts", "rules": alerts},
        ]
    }


def alert_rule(
    spec: ReleaseSpec,
    name: str,
    expr: str,
    duration: str,
    severity: str,
    summary: str,
    where: str = "",
) -> dict[str, Any]:
    """One alerting rule of the model: labelled with its severity and model, described as
    "<model> in <namespace><where>: <summary>"."""
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity, "model": spec.name},
        "annotations": {
            "summary": summary,
            "description": f"{spec.name} in {spec.namespace}{where}: {summary}",
        },
    }
