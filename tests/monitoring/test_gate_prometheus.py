"""The gate's judging against a real Prometheus scraping emulated vLLM pods: the right window
outcome for each scenario, failing closed on missing, stale or unreachable metrics. What a
run of windows leads to (promote, hold, roll back) is the release controller's, tested with
tables in tests/rollout/test_machine.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_rollout.monitoring.gate import Outcome, Verdict, judge
from llm_rollout.monitoring.prometheus import PrometheusFailed, measure
from llm_rollout.monitoring.queries import gate_queries
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.prometheus import PrometheusMissing, start_prometheus
from sandbox.vllm_metrics import MetricsEmulator
from tests.conftest import DEMO_SPEC
from tests.fixtures.prometheus import CANARY, SCRAPE_INTERVAL_SECONDS, STABLE, LocalPrometheus

WINDOW_SECONDS = 10
# Every scenario's stable and canary pods, in a namespace of their own, scraped by one
# Prometheus at once: one wait for a window of samples instead of one per scenario.
SCENARIOS = {
    "healthy": ("healthy", 1.0),
    "slow_first_token": ("slow_first_token", 1.0),
    "slow_decoding": ("slow_decoding", 1.0),
    "errors": ("errors", 1.0),
    "all_errors": ("all_errors", 1.0),
    "kv_pressure": ("kv_pressure", 1.0),
    # 50% slower against a 20% allowance: a window's mean over ~50 lognormal draws moves by
    # ±10% (a CI run measured 1.17× at a 1.3× scale), so a smaller margin would be flaky
    "slower": ("healthy", 1.5),
    "no_traffic": ("no_traffic", 1.0),
    "dying": ("healthy", 1.0),  # dies as soon as it is started
}


def spec_for(namespace: str = "llm-demo") -> ReleaseSpec:
    demo = load_spec(DEMO_SPEC)
    gate = demo.gate.model_copy(
        update={
            "interval_seconds": 5,
            "window": f"{WINDOW_SECONDS}s",
            "min_requests": 10,
            "required_passes": 2,
            "failure_limit": 2,
            "consecutive_error_limit": 2,
            "max_relative_regression": 0.2,
            "min_ttft_regression_seconds": 0.02,  # the defaults: the demo's are CPU-noise wide
            "min_itl_regression_seconds": 0.002,
            # the limits the emulator's scenarios are built around (the demo's are looser)
            "max_ttft_p99_seconds": 2.0,
            "max_itl_p99_seconds": 0.5,
        }
    )
    return demo.model_copy(update={"gate": gate, "namespace": namespace})


def evaluate(prometheus: LocalPrometheus, spec: ReleaseSpec) -> Verdict:
    queries = gate_queries(spec, CANARY, STABLE)
    try:
        measured = measure(prometheus.url, queries)
    except PrometheusFailed as failure:
        return judge(spec, None, SCRAPE_INTERVAL_SECONDS, str(failure), queries)
    return judge(spec, measured.values, SCRAPE_INTERVAL_SECONDS, queries=queries)


def start_pair(
    prometheus: LocalPrometheus, namespace: str, canary: str, scale: float = 1.0
) -> list[MetricsEmulator]:
    stable = MetricsEmulator("healthy", seed=1).start()
    candidate = MetricsEmulator(canary, latency_scale=scale, seed=2).start()
    prometheus.add_pod(namespace, "demo-tiny-abc", STABLE.release, stable.url)
    prometheus.add_pod(namespace, "demo-tiny-canary-xyz", CANARY.release, candidate.url)
    return [stable, candidate]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """One Prometheus scraping every scenario's pods, a window of samples deep."""
    try:
        prometheus = start_prometheus(tmp_path_factory.mktemp("prometheus"))
    except PrometheusMissing as missing:
        pytest.skip(str(missing))
    started: list[MetricsEmulator] = []
    try:
        for name, (scenario, scale) in SCENARIOS.items():
            started += start_pair(prometheus, f"gate-{name.replace('_', '-')}", scenario, scale)
            if name == "dying":
                started[-1].set_behaviour("dying", dies_after_seconds=0)
        prometheus.wait_for_samples(WINDOW_SECONDS + 1)
        yield prometheus
    finally:
        for emulator in started:
            emulator.stop()
        prometheus.stop()


def judged(world: LocalPrometheus, scenario: str) -> Verdict:
    return evaluate(world, spec_for(f"gate-{scenario.replace('_', '-')}"))


def failing(verdict: Verdict) -> set[str]:
    return {m.name for m in verdict.measurements if m.outcome is Outcome.FAIL}


def test_a_healthy_canary_passes_its_window(world: LocalPrometheus) -> None:
    spec = spec_for()
    second = judged(world, "healthy")
    assert second.window is Outcome.PASS, second.table()
    requests = next(m for m in second.measurements if m.name == "requests")
    assert requests.canary and requests.canary >= spec.gate.min_requests  # printed in the table
    ttft = next(m for m in second.measurements if m.name == "ttft_p99")
    assert ttft.canary is not None and 0 < ttft.canary < spec.gate.max_ttft_p99_seconds
    assert "histogram_quantile(0.99" in ttft.query
    # each limit as the user reads it in the gate check's table
    limits = {m.name: m.threshold for m in second.measurements}
    relative = f"≤ stable × {1 + spec.gate.max_relative_regression:g} or + 0.02s"
    assert limits["ttft_p99"] == f"≤ {spec.gate.max_ttft_p99_seconds:g}s"  # p99s: SLOs only
    assert limits["ttft_mean"] == relative


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("slow_first_token", {"ttft_p99", "ttft_mean"}),
        ("slow_decoding", {"itl_p99", "itl_mean"}),
        ("errors", {"success_rate", "error_rate"}),
        ("all_errors", {"success_rate", "error_rate"}),  # no 2xx series: 0, not no data
        ("kv_pressure", {"kv_cache_usage", "preemption_rate", "queue_mean"}),
        ("slower", {"ttft_mean", "itl_mean"}),  # under the SLOs, 50% worse than stable
    ],
)
def test_a_bad_canary_fails_its_window(
    world: LocalPrometheus, scenario: str, expected: set[str]
) -> None:
    first = judged(world, scenario)
    assert first.window is Outcome.FAIL, first.table()
    assert expected <= failing(first), first.table()


def test_no_traffic_is_inconclusive_never_a_pass(world: LocalPrometheus) -> None:
    verdict = judged(world, "no_traffic")
    assert verdict.window is Outcome.INCONCLUSIVE, verdict.table()
    assert "fewer than" in verdict.reason


def test_prometheus_stopping_mid_gate_is_an_error_never_a_pass(
    prometheus: LocalPrometheus,
) -> None:
    spec = spec_for()
    pods = start_pair(prometheus, spec.namespace, "healthy")
    try:
        prometheus.wait_for_samples(WINDOW_SECONDS + 1)
        assert evaluate(prometheus, spec).window is Outcome.PASS
        prometheus.stop()
        second = evaluate(prometheus, spec)
    finally:
        for emulator in pods:
            emulator.stop()
    assert second.window is Outcome.ERROR, second.table()
    assert [m.name for m in second.measurements] == ["prometheus"]


def test_a_dying_canary_pod_is_an_error_not_a_pass(world: LocalPrometheus) -> None:
    verdict = judged(world, "dying")
    assert verdict.window is Outcome.ERROR, verdict.table()
    freshness = next(m for m in verdict.measurements if m.name == "freshness/canary")
    assert (
        "up == 0" in freshness.reason
        or "old" in freshness.reason
        or "no samples" in (freshness.reason)
    )
