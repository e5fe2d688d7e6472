"""Scripted behaviours of an emulated vLLM server, and the traffic simulation behind them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from sandbox.vllm_metrics.families import VllmFamilies


@dataclass(frozen=True)
class Behaviour:
    """What the emulated server's traffic looks like. Latencies are medians of log-normals."""

    requests_per_second: float = 5.0
    ttft_seconds: float = 0.08
    itl_seconds: float = 0.02
    output_tokens: int = 60
    prompt_tokens: int = 40
    # requests answered 5xx and finished with reason "error", spread evenly (one in five for 0.2):
    # a random draw per request left ~7% of 12-request samples without a single error
    error_fraction: float = 0.0
    kv_cache_usage: float = 0.3
    preemptions_per_second: float = 0.0
    queue_seconds: float = 0.01
    waiting_requests: int = 0
    spread: float = 0.25  # sigma of the log-normal latencies
    dies_after_seconds: float | None = None  # stop answering at all after this long

    def scaled(self, latency: float) -> Behaviour:
        """The same behaviour with every latency multiplied by `latency` (e.g. 1.3 = 30% slower)."""
        return replace(
            self,
            ttft_seconds=self.ttft_seconds * latency,
            itl_seconds=self.itl_seconds * latency,
            queue_seconds=self.queue_seconds * latency,
        )


HEALTHY = Behaviour()
SCENARIOS: dict[str, Behaviour] = {
    "healthy": HEALTHY,
    "slow_first_token": replace(HEALTHY, ttft_seconds=4.0),
    "slow_decoding": replace(HEALTHY, itl_seconds=0.45),
    "errors": replace(HEALTHY, error_fraction=0.2),
    # every request refused (a broken chat template, a wrong tokenizer): no 2xx series at all
    "all_errors": replace(HEALTHY, error_fraction=1.0),
    "kv_pressure": replace(
        HEALTHY,
        kv_cache_usage=0.99,
        preemptions_per_second=2.0,
        queue_seconds=2.0,
        waiting_requests=12,
    ),
    "no_traffic": replace(HEALTHY, requests_per_second=0.0),
    "dying": replace(HEALTHY, dies_after_seconds=5.0),
}


class TrafficSimulator:
    """Turns a behaviour into metric observations, one time step at a time (seeded)."""

    def __init__(self, families: VllmFamilies, model_name: str, seed: int = 0) -> None:
        self.families = families
        self.labels = {"model_name": model_name, "engine": "0"}
        self.random = random.Random(seed)
        self._pending_preemptions = 0.0
        self._pending_errors = 0.0

    def step(self, behaviour: Behaviour, seconds: float) -> None:
        """Simulate `seconds` of traffic under `behaviour`."""
        f, labels = self.families, self.labels
        arrivals = self._poisson(behaviour.requests_per_second * seconds)
        for _ in range(arrivals):
            self._request(behaviour)
        busy = behaviour.requests_per_second > 0
        in_flight = behaviour.requests_per_second * behaviour.output_tokens * behaviour.itl_seconds
        f.running.labels(**labels).set(round(in_flight) if busy else 0)
        f.waiting.labels(**labels).set(behaviour.waiting_requests if busy else 0)
        f.kv_cache_usage.labels(**labels).set(behaviour.kv_cache_usage if busy else 0.0)
        self._pending_preemptions += behaviour.preemptions_per_second * seconds
        whole = math.floor(self._pending_preemptions)
        if whole:
            f.preemptions.labels(**labels).inc(whole)
            self._pending_preemptions -= whole

    def _request(self, behaviour: Behaviour) -> None:
        f, labels = self.families, self.labels
        self._pending_errors += behaviour.error_fraction
        failed = self._pending_errors >= 1.0 - 1e-9
        if failed:
            self._pending_errors -= 1.0
        status = "5xx" if failed else "2xx"
        f.http_requests.labels(method="POST", status=status, handler="/v1/completions").inc()
        prompt = max(1, round(self.random.gauss(behaviour.prompt_tokens, 5)))
        f.prompt_tokens.labels(**labels).inc(prompt)
        f.prompt_tokens_per_request.labels(**labels).observe(prompt)
        queue = self._latency(behaviour.queue_seconds, behaviour.spread)
        f.queue_time.labels(**labels).observe(queue)
        if failed:
            f.request_success.labels(**labels, finished_reason="error").inc()
            f.e2e.labels(**labels).observe(queue)
            return
        ttft = self._latency(behaviour.ttft_seconds, behaviour.spread)
        f.ttft.labels(**labels).observe(ttft)
        tokens = max(1, round(self.random.gauss(behaviour.output_tokens, 10)))
        decode = 0.0
        for _ in range(tokens - 1):
            gap = self._latency(behaviour.itl_seconds, behaviour.spread)
            f.itl.labels(**labels).observe(gap)
            decode += gap
        f.generation_tokens.labels(**labels).inc(tokens)
        f.generation_tokens_per_request.labels(**labels).observe(tokens)
        f.e2e.labels(**labels).observe(queue + ttft + decode)
        f.request_success.labels(**labels, finished_reason="length").inc()

    def _latency(self, median: float, sigma: float) -> float:
        return median * math.exp(self.random.gauss(0.0, sigma))

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        # Knuth's method; means here are small (rate × step of a fraction of a second).
        limit, count, product = math.exp(-mean), 0, self.random.random()
        while product > limit:
            count += 1
            product *= self.random.random()
        return count
