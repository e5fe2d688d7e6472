"""The vLLM metrics emulator: vLLM 0.32's exact format, with scripted behaviour."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sandbox.vllm_metrics import SCENARIOS, MetricsEmulator
from sandbox.vllm_process import VllmProcess

Families = dict[str, tuple[str, dict[str, set[str]], set[str]]]


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def families_of(text: str) -> Families:
    """name → (type, label names per sample name, histogram bucket bounds)."""
    result: Families = {}
    for family in text_string_to_metric_families(text):
        labels: dict[str, set[str]] = {}
        buckets: set[str] = set()
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            if sample.name.endswith("_bucket"):
                buckets.add(sample.labels["le"])
        result[family.name] = (family.type, labels, buckets)
    return result


def samples(text: str, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def value(text: str, name: str, **labels: str) -> float:
    matching = [s for s in samples(text, name) if labels.items() <= s.labels.items()]
    return sum(s.value for s in matching)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_every_family_matches_real_vllm(
    metrics_emulator: MetricsEmulator, real_vllm: VllmProcess
) -> None:
    # one request, so vLLM has created its per-request series (http_requests_total…)
    request = urllib.request.Request(
        f"{real_vllm.url}/v1/completions",
        data=json.dumps({"model": "tiny-llama", "prompt": "hello", "max_tokens": 4}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=60).read()
    real = families_of(scrape(real_vllm.url))
    wait_for(lambda: value(scrape(metrics_emulator.url), "http_requests_total") > 0)
    emulated = families_of(scrape(metrics_emulator.url))
    assert len(emulated) >= 20
    for name, (kind, labels, buckets) in emulated.items():
        assert name in real, f"{name} is not exported by vLLM 0.32"
        real_kind, real_labels, real_buckets = real[name]
        assert kind == real_kind, name
        assert labels == real_labels, name
        assert buckets == real_buckets, name


def test_the_output_parses_and_carries_vllm_labels(metrics_emulator: MetricsEmulator) -> None:
    wait_for(lambda: value(scrape(metrics_emulator.url), "vllm:request_success_total") > 0)
    text = scrape(metrics_emulator.url)
    success = samples(text, "vllm:request_success_total")
    assert {s.labels["finished_reason"] for s in success} == {
        "stop", "length", "abort", "error", "repetition",
    }  # fmt: skip
    assert all(s.labels["model_name"] == "tiny-llama" for s in success)
    assert all(s.labels["engine"] == "0" for s in success)


def p99_bucket(text: str, name: str) -> float:
    """The smallest bucket bound holding 99% of observations."""
    buckets = sorted(
        ((float(s.labels["le"]), s.value) for s in samples(text, f"{name}_bucket")),
    )
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= 0.99 * total)


@pytest.mark.parametrize(
    ("scenario", "check"),
    [
        ("healthy", lambda t: p99_bucket(t, "vllm:time_to_first_token_seconds") <= 0.25),
        ("slow_first_token", lambda t: p99_bucket(t, "vllm:time_to_first_token_seconds") >= 2.5),
        ("slow_decoding", lambda t: p99_bucket(t, "vllm:inter_token_latency_seconds") >= 0.4),
        (
            "errors",
            lambda t: (
                value(t, "http_requests_total", status="5xx")
                >= 0.05 * value(t, "http_requests_total")
            ),
        ),
        ("kv_pressure", lambda t: value(t, "vllm:kv_cache_usage_perc") > 0.95),
        ("kv_pressure", lambda t: value(t, "vllm:num_preemptions_total") > 0),
    ],
)
def test_scenarios_shape_the_metrics(scenario: str, check: Callable[[str], bool]) -> None:
    with MetricsEmulator(scenario, seed=1) as emulator:
        wait_for(lambda: value(scrape(emulator.url), "vllm:request_success_total") >= 10)
        time.sleep(0.3)  # let a preemption or two accumulate as well
        assert check(scrape(emulator.url))


def test_no_traffic_leaves_counters_at_zero() -> None:
    with MetricsEmulator("no_traffic") as emulator:
        time.sleep(0.5)
        text = scrape(emulator.url)
        assert value(text, "vllm:request_success_total") == 0
        assert value(text, "vllm:time_to_first_token_seconds_count") == 0


def test_a_dying_server_stops_answering() -> None:
    with MetricsEmulator("healthy") as emulator:
        emulator.set_behaviour("dying", dies_after_seconds=0.5)
        scrape(emulator.url)
        time.sleep(0.7)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            scrape(emulator.url)


def test_latency_scale_slows_every_latency(metrics_emulator: MetricsEmulator) -> None:
    metrics_emulator.set_behaviour("healthy", latency_scale=1.3)
    assert metrics_emulator.behaviour.ttft_seconds == pytest.approx(
        SCENARIOS["healthy"].ttft_seconds * 1.3
    )


def test_behaviour_switches_over_http(metrics_emulator: MetricsEmulator) -> None:
    request = urllib.request.Request(
        f"{metrics_emulator.url}/_scenario",
        data=json.dumps({"scenario": "slow_decoding"}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).read()
    assert metrics_emulator.scenario == "slow_decoding"
    with urllib.request.urlopen(f"{metrics_emulator.url}/health", timeout=5) as response:
        assert response.status == 200
