"""Prometheus rules and Grafana panels for a model's router (the `router` package's metrics).

The model's scrape job (and the router's PodMonitor) relabels the router's pods to the
model's `namespace` and `model` (monitoring.scrape), so its series sit beside the model's on
one dashboard; `monitoring.artifacts` adds the group and panels for a model with `routing:`.
"""

from __future__ import annotations

from typing import Any

from llm_rollout.monitoring.rules import alert_rule
from llm_rollout.spec import ReleaseSpec

RATE_WINDOW = "5m"
# A route answering more than a fifth of its requests from the cloud for ten minutes is not a
# blip: the local model is degraded, full or failing, and the cloud bill is growing.
FALLBACK_SHARE_ALERT = 0.2
FALLBACK_ALERT_FOR = "10m"
# Requests of a local_only route refused for five minutes: those users get 503s.
UNAVAILABLE_ALERT_FOR = "5m"
PREFIX = "llm_rollout_router"


def router_rule_group(spec: ReleaseSpec) -> dict[str, Any]:
    """One rule group: request and fallback rates per route, and the router's alerts."""
    mine = f'{{namespace="{spec.namespace}",model="{spec.name}"}}'
    by_route = "namespace, model, route"
    w = RATE_WINDOW
    recording = [
        (
            "llm_rollout:router_requests:rate5m",
            f"sum by ({by_route}, backend, outcome) (rate({PREFIX}_requests_total{mine}[{w}]))",
        ),
        (
            "llm_rollout:router_fallbacks:rate5m",
            f"sum by ({by_route}, reason) (rate({PREFIX}_fallbacks_total{mine}[{w}]))",
        ),
    ]
    unavailable = mine.replace("}", ',outcome="unavailable"}')

    def alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
        return alert_rule(
            spec, name, expr, duration, severity, summary, ", route {{ $labels.route }}"
        )

    alerts = [
        alert(
            "LlmRouterSustainedFallback",
            f"sum by ({by_route}) (llm_rollout:router_fallbacks:rate5m{mine}) / "
            f"sum by ({by_route}) (llm_rollout:router_requests:rate5m{mine}) > "
            f"{FALLBACK_SHARE_ALERT}",
            FALLBACK_ALERT_FOR,
            "warning",
            f"more than {FALLBACK_SHARE_ALERT:.0%} of requests answered by the cloud fallback",
        ),
        alert(
            "LlmRouterLocalOnlyUnavailable",
            f"sum by ({by_route}) (llm_rollout:router_requests:rate5m{unavailable}) > 0",
            UNAVAILABLE_ALERT_FOR,
            "critical",
            "local-only requests refused with 503: the local model is not answering",
        ),
    ]
    return {
        "name": f"llm-rollout-router-{spec.name}",
        "rules": [{"record": name, "expr": expr} for name, expr in recording] + alerts,
    }


def router_panels(spec: ReleaseSpec, first_id: int, y: int) -> list[dict[str, Any]]:
    """Grafana time-series panels (schema 39): traffic by backend, fallbacks by reason, and the
    router's time to first token by backend; ids from `first_id`, placed at row `y`."""
    mine = f'namespace="{spec.namespace}",model="{spec.name}"'
    targets = [
        (
            "Router: requests by backend",
            f"sum by (backend) (rate({PREFIX}_requests_total{{{mine}}}[{RATE_WINDOW}]))",
            "{{backend}}",
            "reqps",
        ),
        (
            "Router: fallbacks by reason",
            f"sum by (reason) (rate({PREFIX}_fallbacks_total{{{mine}}}[{RATE_WINDOW}]))",
            "{{reason}}",
            "reqps",
        ),
        (
            "Router: time to first token p99 by backend",
            "histogram_quantile(0.99, sum by (backend, le) "
            f"(rate({PREFIX}_time_to_first_token_seconds_bucket{{{mine}}}[{RATE_WINDOW}])))",
            "{{backend}}",
            "s",
        ),
    ]
    return [
        {
            "id": first_id + index,
            "type": "timeseries",
            "title": title,
            "gridPos": {"x": 8 * index, "y": y, "w": 8, "h": 8},
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}],
        }
        for index, (title, expr, legend, unit) in enumerate(targets)
    ]
