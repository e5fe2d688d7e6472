"""PromQL for the gate: every measurement of both tracks over the window, batched into one
query (each result labelled `gate_metric` and `gate_track`) so a tick costs one round trip."""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.catalogue import metric_names
from spec import ReleaseSpec

TRACKS = ("canary", "stable")
API_HANDLERS = "/v1/.*"  # requests to the model, not /health or /metrics


@dataclass(frozen=True)
class Query:
    """One measurement of one track."""

    metric: str
    track: str
    promql: str


def selector(spec: ReleaseSpec, track: str, extra: str = "") -> str:
    """Series of one model's track in its namespace (labels kept by the scrape config)."""
    labels = f'namespace="{spec.namespace}",track="{track}"'
    return "{" + labels + (f",{extra}" if extra else "") + "}"


def gate_queries(
    spec: ReleaseSpec, window: str | None = None, canary_release: str | None = None
) -> list[Query]:
    """Every measurement the gate needs, for canary and stable. With `canary_release`, only
    that release's canary pods count (an earlier canary's samples may still be in the window)."""
    names = metric_names(spec.serving.version_tuple)
    window = window or spec.gate.window
    queries: list[Query] = []
    for track in TRACKS:
        release = f'release="{canary_release}"' if canary_release and track == "canary" else ""

        def sel(extra: str = "", release: str = release, track: str = track) -> str:
            return selector(spec, track, ",".join(part for part in (release, extra) if part))

        s = sel()
        http = sel(f'handler=~"{API_HANDLERS}"')
        http_ok = sel(f'handler=~"{API_HANDLERS}",status="2xx"')

        def p99(histogram: str, sel: str = s) -> str:
            return (
                f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket{sel}[{window}])))"
            )

        def mean(histogram: str, sel: str = s) -> str:
            # exact from _sum/_count: what canary-vs-stable is judged on, since a p99
            # interpolated inside vLLM's coarse buckets cannot resolve a 30% shift
            return (
                f"sum(rate({histogram}_sum{sel}[{window}])) / "
                f"sum(rate({histogram}_count{sel}[{window}]))"
            )

        queries += [
            Query("requests", track, f"sum(increase({names.http_requests}{http}[{window}]))"),
            Query("ttft_p99", track, p99(names.ttft)),
            Query("itl_p99", track, p99(names.itl)),
            Query("e2e_p99", track, p99(names.e2e)),
            Query("ttft_mean", track, mean(names.ttft)),
            Query("itl_mean", track, mean(names.itl)),
            Query("queue_mean", track, mean(names.queue_time)),
            Query(
                "success_rate",
                track,
                # a track that answers nothing but errors has no 2xx series at all: count
                # that as 0 successes (a Fail), not as missing data (Inconclusive)
                f"(sum(rate({names.http_requests}{http_ok}[{window}])) or vector(0)) / "
                f"sum(rate({names.http_requests}{http}[{window}]))",
            ),
            Query(
                "kv_cache_usage", track, f"max(max_over_time({names.kv_cache_usage}{s}[{window}]))"
            ),
            Query("preemption_rate", track, f"sum(rate({names.preemptions}{s}[{window}]))"),
            # freshness: seconds since the newest sample of the track, and whether targets are up
            Query("sample_age", track, f"time() - max(timestamp({names.running}{s}))"),
            Query("up", track, f"min(up{s})"),
            Query("series", track, f"count({names.running}{s})"),
        ]
    return queries


def batched(queries: list[Query]) -> str:
    """All queries as one PromQL expression, each result tagged with what it measures."""
    parts = [
        f'label_replace(label_replace(({q.promql}), "gate_metric", "{q.metric}", "", ""), '
        f'"gate_track", "{q.track}", "", "")'
        for q in queries
    ]
    return " or ".join(parts)


CHART_METRICS = ("ttft_mean", "itl_mean")
CHART_POINTS = 20


def chart_queries(spec: ReleaseSpec, canary_release: str | None = None) -> tuple[list[Query], int]:
    """Mean TTFT and inter-token latency of both tracks on a short rolling window, to be
    evaluated as a range over the gate window; and the step in seconds."""
    step = max(1, spec.gate.window_seconds // CHART_POINTS)
    short = f"{4 * step}s"  # a few scrapes: smooth enough, still short against the window
    queries = [
        q
        for q in gate_queries(spec, window=short, canary_release=canary_release)
        if q.metric in CHART_METRICS
    ]
    return queries, step
