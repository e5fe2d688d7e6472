"""A Grafana dashboard per model: its releases (canary and stable) side by side on every panel,
with the release ids as annotations where a release first appears."""

from __future__ import annotations

from typing import Any

from llm_rollout.monitoring.router_rules import router_panels
from llm_rollout.spec import ReleaseSpec

# (title, recording rule, unit)
PANELS = [
    ("Time to first token p99", "llm_rollout:ttft_seconds:p99", "s"),
    ("Time to first token p50", "llm_rollout:ttft_seconds:p50", "s"),
    ("Inter-token latency p99", "llm_rollout:itl_seconds:p99", "s"),
    ("End-to-end latency p99", "llm_rollout:e2e_seconds:p99", "s"),
    ("Queue time p99", "llm_rollout:queue_seconds:p99", "s"),
    ("Requests per second", "llm_rollout:requests:rate5m", "reqps"),
    ("Errors per second (5xx)", "llm_rollout:errors:rate5m", "reqps"),
    ("KV cache usage", "llm_rollout:kv_cache_usage:max", "percentunit"),
    ("Generated tokens per second", "llm_rollout:generation_tokens:rate5m", "short"),
    ("Preemptions per second", "llm_rollout:preemptions:rate5m", "short"),
    ("Requests waiting", "llm_rollout:requests_waiting:sum", "short"),
    ("Requests running", "llm_rollout:requests_running:sum", "short"),
]


def panel_queries(spec: ReleaseSpec) -> list[str]:
    """Every PromQL expression the dashboard runs (for validation)."""
    return [target["expr"] for panel in dashboard(spec)["panels"] for target in panel["targets"]]


def dashboard(spec: ReleaseSpec) -> dict[str, Any]:
    """The dashboard JSON (import it, or provision it from a ConfigMap)."""
    labels = f'namespace="{spec.namespace}",model="{spec.name}"'
    panels = []
    for index, (title, record, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "fieldConfig": {
                    "defaults": {"unit": unit},
                    # one series per release: the canary and stable releases side by side
                    "overrides": [],
                },
                "targets": [
                    {
                        "refId": "A",
                        "legendFormat": "{{release}}",
                        "expr": f"sum by (release) ({record}{{{labels}}})"
                        if "rate" in record or "sum" in record
                        else f"max by (release) ({record}{{{labels}}})",
                    }
                ],
            }
        )
    first_seen = (
        f"count by (release) (vllm:num_requests_running{{{labels}}}) unless "
        f"count by (release) (vllm:num_requests_running{{{labels}}} offset 2m)"
    )
    return {
        "title": f"llm-rollout: {spec.name}",
        "uid": f"llm-rollout-{spec.name}"[:40],
        "tags": ["llm-rollout", "vllm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Releases",
                    "enable": True,
                    "iconColor": "purple",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": first_seen,
                    "step": "1m",
                    "titleFormat": "{{release}} first serving",
                    "tagKeys": "release",
                }
            ]
        },
        "panels": [
            *panels,
            *(
                router_panels(spec, len(panels) + 1, 8 * ((len(panels) + 1) // 2))
                if spec.routing
                else []
            ),
        ],
    }
