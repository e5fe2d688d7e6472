"""PromQL for the gate: every measurement of both tracks over the window, batched into one
query (each result labelled `gate_metric` and `gate_track`) so a tick costs one round trip.

Each track is selected by namespace, model and release — a release's pods keep their labels
when it is promoted, so a track is whichever release the controller's record says it is (an
earlier canary's samples in the window are another release's) — and is queried with the
metric names of the vLLM version *it* runs: a canary on a newer vLLM than stable exports
other names.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_rollout.monitoring.catalogue import metric_names
from llm_rollout.spec import ReleaseSpec

TRACKS = ("canary", "stable")
# What counts as traffic and success: requests to the model, not health checks, /metrics or
# the model list that SDK clients and load balancers poll (`GET /v1/models`). The handlers
# vLLM's OpenAI server routes inference to (vllm/entrypoints/openai/api_server.py).
INFERENCE_HANDLERS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/score",
    "/score",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/pooling",
    "/classify",
)
INFERENCE_HANDLER_REGEX = "|".join(INFERENCE_HANDLERS)
QUANTILE = 0.99
# `histogram_quantile` reports the top finite bound when the quantile lies in `+Inf`, so
# each p99 comes with the share of observations above the top finite bucket.
INF_BUCKET = 'le="+Inf"'
FINITE_BUCKETS = 'le!="+Inf"'


@dataclass(frozen=True)
class TrackSource:
    """Which pods a track is (its release), and the vLLM version they run (for the metric
    names). A release of "" matches no pod: the track is measured as having no data."""

    track: str
    release: str
    vllm_version: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Query:
    """One measurement of one track."""

    metric: str
    track: str
    promql: str


def selector(spec: ReleaseSpec, release: str, extra: str = "") -> str:
    """Series of one release of a model in its namespace (labels kept by the scrape config)."""
    labels = f'namespace="{spec.namespace}",model="{spec.name}",release="{release}"'
    return "{" + labels + (f",{extra}" if extra else "") + "}"


def window_count(series: str, window: str) -> str:
    """How much a counter grew over the window, counting series born inside it from zero.

    `increase()` needs two samples of a series and starts from its first one, so a counter
    whose first sample is already 1 (the canary's very first 5xx creates the
    `status="5xx"` series) would count as 0. A series with no sample one window ago adds
    the lowest value it had in the window (its first, for a counter)."""
    return (
        f"(sum(increase({series}[{window}])) + "
        f"(sum(min_over_time({series}[{window}]) unless {series} offset {window}) or vector(0)))"
    )


def gate_queries(
    spec: ReleaseSpec, canary: TrackSource, stable: TrackSource, window: str | None = None
) -> list[Query]:
    """Every measurement the gate needs, for canary and stable."""
    window = window or spec.gate.window
    queries: list[Query] = []
    for label, source in (("canary", canary), ("stable", stable)):
        queries += track_queries(spec, source, window, label)
    return queries


def track_queries(
    spec: ReleaseSpec, source: TrackSource, window: str, label: str | None = None
) -> list[Query]:
    """The measurements of one track's pods, reported as `label` (default: its track)."""
    names = metric_names(source.vllm_version or spec.serving.version_tuple)
    as_track = label or source.track

    def sel(extra: str = "") -> str:
        return selector(spec, source.release, extra)

    s = sel()
    api = sel(f'handler=~"{INFERENCE_HANDLER_REGEX}"')
    api_ok = sel(f'handler=~"{INFERENCE_HANDLER_REGEX}",status="2xx"')
    requests = window_count(f"{names.http_requests}{api}", window)
    successes = window_count(f"{names.http_requests}{api_ok}", window)

    def p99(histogram: str) -> str:
        return (
            f"histogram_quantile({QUANTILE}, sum by (le) (rate({histogram}_bucket{s}[{window}])))"
        )

    def above_top(histogram: str) -> str:
        # share of observations above the highest finite bucket: every observation (+Inf)
        # minus the largest finite cumulative count
        every_sel, finite_sel = sel(INF_BUCKET), sel(FINITE_BUCKETS)
        every = f"sum(rate({histogram}_bucket{every_sel}[{window}]))"
        finite = f"max(sum by (le) (rate({histogram}_bucket{finite_sel}[{window}])))"
        return f"({every} - {finite}) / {every}"

    def mean(histogram: str) -> str:
        # exact from _sum/_count: what canary-vs-stable is judged on, since a p99
        # interpolated inside vLLM's coarse buckets cannot resolve a 30% shift
        return (
            f"sum(rate({histogram}_sum{s}[{window}])) / sum(rate({histogram}_count{s}[{window}]))"
        )

    histograms = {"ttft_p99": names.ttft, "itl_p99": names.itl, "e2e_p99": names.e2e}
    queries = [
        Query("requests", as_track, requests),
        *(Query(metric, as_track, p99(h)) for metric, h in histograms.items()),
        *(Query(f"{metric}_above_top", as_track, above_top(h)) for metric, h in histograms.items()),
        Query("ttft_mean", as_track, mean(names.ttft)),
        Query("itl_mean", as_track, mean(names.itl)),
        Query("queue_mean", as_track, mean(names.queue_time)),
        # a track that answers nothing but errors has no 2xx series at all: count that as
        # 0 successes (a Fail), not as missing data (Inconclusive)
        Query("success_rate", as_track, f"({successes} or vector(0)) / {requests}"),
        Query(
            "kv_cache_usage", as_track, f"max(max_over_time({names.kv_cache_usage}{s}[{window}]))"
        ),
        Query("preemption_rate", as_track, f"sum(rate({names.preemptions}{s}[{window}]))"),
        # freshness: seconds since the newest sample of the track, and whether targets are up
        Query("sample_age", as_track, f"time() - max(timestamp({names.running}{s}))"),
        Query("up", as_track, f"min(up{s})"),
        Query("series", as_track, f"count({names.running}{s})"),
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


def chart_queries(
    spec: ReleaseSpec, canary: TrackSource, stable: TrackSource
) -> tuple[list[Query], int]:
    """Mean TTFT and inter-token latency of both tracks on a short rolling window, to be
    evaluated as a range over the gate window; and the step in seconds."""
    step = max(1, spec.gate.window_seconds // CHART_POINTS)
    short = f"{4 * step}s"  # a few scrapes: smooth enough, still short against the window
    queries = [
        q for q in gate_queries(spec, canary, stable, window=short) if q.metric in CHART_METRICS
    ]
    return queries, step
