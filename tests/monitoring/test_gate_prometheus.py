"""The gate's judging against a real Prometheus scraping emulated vLLM pods: the right window
outcome for each scenario, failing closed on missing, stale or unreachable metrics. What a
run of windows leads to (promote, hold, roll back) is the release controller's, tested with
tables in tests/rollout/test_machine.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitoring.gate import Outcome, Verdict, judge
from monitoring.prometheus import PrometheusFailed, measure
from monitoring.queries import gate_queries
from sandbox.vllm_metrics import MetricsEmulator
from spec import ReleaseSpec, load_spec
from tests.conftest import MODELS_DIR
from tests.fixtures.prometheus import SCRAPE_INTERVAL_SECONDS, LocalPrometheus

WINDOW_SECONDS = 10


@pytest.fixture
def spec() -> ReleaseSpec:
    demo = load_spec(MODELS_DIR / "demo-tiny.yaml")
    gate = demo.gate.model_copy(
        update={
            "interval_seconds": 5,
            "window": f"{WINDOW_SECONDS}s",
            "min_requests": 10,
            "required_passes": 2,
            "failure_limit": 2,
            "consecutive_error_limit": 2,
            "max_relative_regression": 0.2,
        }
    )
    return demo.model_copy(update={"gate": gate})


def evaluate(prometheus: LocalPrometheus, spec: ReleaseSpec) -> Verdict:
    queries = gate_queries(spec)
    try:
        measured = measure(prometheus.url, queries)
    except PrometheusFailed as failure:
        return judge(spec, None, SCRAPE_INTERVAL_SECONDS, str(failure), queries)
    return judge(spec, measured.values, SCRAPE_INTERVAL_SECONDS, queries=queries)


@pytest.fixture
def pods(prometheus: LocalPrometheus, spec: ReleaseSpec) -> Iterator[object]:
    started: list[MetricsEmulator] = []

    def start(canary: str, latency_scale: float = 1.0) -> MetricsEmulator:
        stable = MetricsEmulator("healthy", seed=1).start()
        candidate = MetricsEmulator(canary, latency_scale=latency_scale, seed=2).start()
        started.extend([stable, candidate])
        prometheus.add_pod(spec.namespace, "demo-tiny-abc", "stable", stable.url)
        prometheus.add_pod(spec.namespace, "demo-tiny-canary-xyz", "canary", candidate.url)
        prometheus.wait_for_samples(WINDOW_SECONDS + 1)
        return candidate

    yield start
    for emulator in started:
        emulator.stop()


def failing(verdict: Verdict) -> set[str]:
    return {m.name for m in verdict.measurements if m.outcome is Outcome.FAIL}


def test_a_healthy_canary_passes_its_window(
    prometheus: LocalPrometheus, spec: ReleaseSpec, pods: object
) -> None:
    pods("healthy")  # type: ignore[operator]
    second = evaluate(prometheus, spec)
    assert second.window is Outcome.PASS, second.table()
    requests = next(m for m in second.measurements if m.name == "requests")
    assert requests.canary and requests.canary >= spec.gate.min_requests  # printed in the table
    ttft = next(m for m in second.measurements if m.name == "ttft_p99")
    assert ttft.canary is not None and 0 < ttft.canary < spec.gate.max_ttft_p99_seconds
    assert "histogram_quantile(0.99" in ttft.query
    # each limit as the user reads it in the gate check's table
    limits = {m.name: m.threshold for m in second.measurements}
    relative = f"≤ stable × {1 + spec.gate.max_relative_regression:g}"
    assert limits["ttft_p99"] == f"≤ {spec.gate.max_ttft_p99_seconds:g}s"  # p99s: SLOs only
    assert limits["ttft_mean"] == relative


@pytest.mark.parametrize(
    ("scenario", "scale", "expected"),
    [
        ("slow_first_token", 1.0, {"ttft_p99", "ttft_mean"}),
        ("slow_decoding", 1.0, {"itl_p99", "itl_mean"}),
        ("errors", 1.0, {"success_rate", "error_rate"}),
        ("all_errors", 1.0, {"success_rate", "error_rate"}),  # no 2xx series: 0, not no data
        ("kv_pressure", 1.0, {"kv_cache_usage", "preemption_rate", "queue_mean"}),
        ("healthy", 1.3, {"ttft_mean", "itl_mean"}),  # under the SLOs, 30% worse than stable
    ],
)
def test_a_bad_canary_fails_its_window(
    prometheus: LocalPrometheus,
    spec: ReleaseSpec,
    pods: object,
    scenario: str,
    scale: float,
    expected: set[str],
) -> None:
    pods(scenario, scale)  # type: ignore[operator]
    first = evaluate(prometheus, spec)
    assert first.window is Outcome.FAIL, first.table()
    assert expected <= failing(first), first.table()


def test_no_traffic_is_inconclusive_never_a_pass(
    prometheus: LocalPrometheus, spec: ReleaseSpec, pods: object
) -> None:
    pods("no_traffic")  # type: ignore[operator]
    verdict = evaluate(prometheus, spec)
    assert verdict.window is Outcome.INCONCLUSIVE, verdict.table()
    assert "fewer than" in verdict.reason


def test_prometheus_stopping_mid_gate_is_an_error_never_a_pass(
    prometheus: LocalPrometheus, spec: ReleaseSpec, pods: object
) -> None:
    pods("healthy")  # type: ignore[operator]
    assert evaluate(prometheus, spec).window is Outcome.PASS
    prometheus.stop()
    second = evaluate(prometheus, spec)
    assert second.window is Outcome.ERROR, second.table()
    assert [m.name for m in second.measurements] == ["prometheus"]


def test_a_dying_canary_pod_is_an_error_not_a_pass(
    prometheus: LocalPrometheus, spec: ReleaseSpec, pods: object
) -> None:
    canary = pods("healthy")  # type: ignore[operator]
    canary.set_behaviour("dying", dies_after_seconds=0)
    import time

    time.sleep(4 * SCRAPE_INTERVAL_SECONDS)  # a few failed scrapes
    verdict = evaluate(prometheus, spec)
    assert verdict.window is Outcome.ERROR, verdict.table()
    freshness = next(m for m in verdict.measurements if m.name == "freshness/canary")
    assert (
        "up == 0" in freshness.reason
        or "old" in freshness.reason
        or "no samples" in (freshness.reason)
    )
