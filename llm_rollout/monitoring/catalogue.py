"""The metric names each vLLM version really exports, so every query and rule matches.

Checked against the live /metrics of the sandbox's real vLLM 0.32 by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

# vLLM 0.11 renamed time_per_output_token to inter_token_latency and gpu_cache_usage_perc
# to kv_cache_usage_perc (the KV cache lives on CPU, too).
RENAMED_IN = (0, 11, 0)


@dataclass(frozen=True)
class MetricNames:
    """Prometheus names of the vLLM metrics the gate and the rules use."""

    ttft: str  # histogram
    itl: str  # histogram
    e2e: str  # histogram
    queue_time: str  # histogram
    kv_cache_usage: str  # gauge, 0-1
    preemptions: str  # counter
    running: str  # gauge
    waiting: str  # gauge
    generation_tokens: str  # counter
    request_success: str  # counter {finished_reason}
    http_requests: str = "http_requests_total"  # counter {handler, method, status}


def metric_names(version: tuple[int, int, int]) -> MetricNames:
    """The names vLLM `version` exports."""
    renamed = version >= RENAMED_IN
    return MetricNames(
        ttft="vllm:time_to_first_token_seconds",
        itl="vllm:inter_token_latency_seconds" if renamed else "vllm:time_per_output_token_seconds",
        e2e="vllm:e2e_request_latency_seconds",
        queue_time="vllm:request_queue_time_seconds",
        kv_cache_usage="vllm:kv_cache_usage_perc" if renamed else "vllm:gpu_cache_usage_perc",
        preemptions="vllm:num_preemptions_total",
        running="vllm:num_requests_running",
        waiting="vllm:num_requests_waiting",
        generation_tokens="vllm:generation_tokens_total",
        request_success="vllm:request_success_total",
    )
