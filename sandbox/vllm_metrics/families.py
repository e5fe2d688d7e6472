"""The metric families of vLLM 0.32's /metrics that the emulator exports, exactly as vLLM
declares them: names, help texts, label names and histogram buckets (copied from vLLM's
`vllm/v1/metrics/loggers.py` and checked against a live vLLM 0.32 by the tests)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

VLLM_LABELS = ("model_name", "engine")
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


def token_buckets(max_model_len: int) -> list[float]:
    """vLLM's 1-2-5 buckets up to the model's context length, for token-count histograms."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return buckets
            buckets.append(float(value))
        exponent += 1


@dataclass
class VllmFamilies:
    """The live metric objects of one emulated vLLM server."""

    registry: CollectorRegistry
    running: Gauge
    waiting: Gauge
    kv_cache_usage: Gauge
    preemptions: Counter
    prompt_tokens: Counter
    generation_tokens: Counter
    request_success: Counter
    ttft: Histogram
    itl: Histogram
    e2e: Histogram
    queue_time: Histogram
    prompt_tokens_per_request: Histogram
    generation_tokens_per_request: Histogram
    http_requests: Counter


def create_families(model_name: str, max_model_len: int) -> VllmFamilies:
    """Register vLLM's families in a fresh registry, with the series vLLM creates at start."""
    registry = CollectorRegistry()
    tokens = token_buckets(max_model_len)

    def gauge(name: str, help_text: str) -> Gauge:
        return Gauge(name, help_text, VLLM_LABELS, registry=registry, multiprocess_mode="all")

    def histogram(name: str, help_text: str, buckets: tuple[float, ...] | list[float]) -> Histogram:
        return Histogram(name, help_text, VLLM_LABELS, registry=registry, buckets=buckets)

    families = VllmFamilies(
        registry=registry,
        running=gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        ),
        waiting=gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
        kv_cache_usage=gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        ),
        preemptions=Counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            VLLM_LABELS,
            registry=registry,
        ),
        prompt_tokens=Counter(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            VLLM_LABELS,
            registry=registry,
        ),
        generation_tokens=Counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            VLLM_LABELS,
            registry=registry,
        ),
        request_success=Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*VLLM_LABELS, "finished_reason"),
            registry=registry,
        ),
        ttft=histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        ),
        itl=histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        ),
        e2e=histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
        ),
        queue_time=histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        ),
        prompt_tokens_per_request=histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens
        ),
        generation_tokens_per_request=histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens
        ),
        http_requests=Counter(
            "http_requests",
            "Total number of requests by method, status and handler.",
            ("method", "status", "handler"),
            registry=registry,
        ),
    )
    labels = {"model_name": model_name, "engine": "0"}
    for family in (
        families.running, families.waiting, families.kv_cache_usage, families.preemptions,
        families.prompt_tokens, families.generation_tokens, families.ttft, families.itl,
        families.e2e, families.queue_time, families.prompt_tokens_per_request,
        families.generation_tokens_per_request,
    ):  # fmt: skip
        family.labels(**labels)
    for reason in FINISHED_REASONS:
        families.request_success.labels(**labels, finished_reason=reason)
    return families
