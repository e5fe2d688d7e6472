"""The router's own Prometheus metrics (served on its /metrics), in a registry per router."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "llm_rollout_router"
# First-token latencies of LLMs: tens of milliseconds on a warm small model to tens of
# seconds on a loaded large one (the same span as vLLM's own TTFT buckets).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
)  # fmt: skip


@dataclass
class RouterMetrics:
    """Every family the router exports."""

    registry: CollectorRegistry
    requests: Counter
    fallbacks: Counter
    release_retries: Counter
    time_to_first_token: Histogram
    duration: Histogram
    cloud_tokens: Counter
    shadow_requests: Counter
    release_waiting: Gauge
    config_reloads: Counter
    degraded: Gauge


def create_metrics() -> RouterMetrics:
    """A fresh registry with the router's families."""
    registry = CollectorRegistry()
    return RouterMetrics(
        registry=registry,
        requests=Counter(
            f"{PREFIX}_requests",
            "Requests answered, by route, the backend that answered (a release id or a cloud "
            "backend) and outcome (ok, client_error, error, unavailable, stream_broken, "
            "client_gone, no_route).",
            ["route", "backend", "outcome"],
            registry=registry,
        ),
        fallbacks=Counter(
            f"{PREFIX}_fallbacks",
            "Requests sent to a route's cloud fallback instead of the local model, by reason "
            "(degraded, queue_full, local_error, local_timeout, local_unreachable, "
            "no_release).",
            ["route", "reason"],
            registry=registry,
        ),
        release_retries=Counter(
            f"{PREFIX}_release_retries",
            "Requests sent to another local release because the one chosen refused the "
            "connection (scaled to zero before this router read the new weights), by route "
            "and the refusing release.",
            ["route", "release"],
            registry=registry,
        ),
        time_to_first_token=Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Streams: from the request's arrival to the first answer bytes sent to the client.",
            ["route", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        duration=Histogram(
            f"{PREFIX}_request_duration_seconds",
            "From the request's arrival to the end of its answer.",
            ["route", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        cloud_tokens=Counter(
            f"{PREFIX}_cloud_tokens",
            "Tokens a cloud backend reported in its answers' usage, by kind (prompt, completion).",
            ["backend", "kind"],
            registry=registry,
        ),
        shadow_requests=Counter(
            f"{PREFIX}_shadow_requests",
            "Copies sent to the shadow release, by outcome (ok, error, skipped).",
            ["release", "outcome"],
            registry=registry,
        ),
        release_waiting=Gauge(
            f"{PREFIX}_release_waiting_requests",
            "The release's mean vllm:num_requests_waiting per pod, as the router last read it.",
            ["release"],
            registry=registry,
        ),
        config_reloads=Counter(
            f"{PREFIX}_config_reloads",
            "Config documents read after start, by outcome (ok, error: the old one kept).",
            ["outcome"],
            registry=registry,
        ),
        degraded=Gauge(
            f"{PREFIX}_degraded",
            "1 while the release controller has marked the local model degraded.",
            registry=registry,
        ),
    )
