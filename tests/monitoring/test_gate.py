"""The gate's judging on plain values, as tables: each row a window as Prometheus would
answer it, and the outcome a user sees for the measurement that matters."""

from __future__ import annotations

import math

import pytest

from llm_rollout.monitoring.gate import Outcome, judge
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC

SPEC = load_spec(DEMO_SPEC)  # TTFT p99 ≤ 2 s, min 10 requests
HEALTHY = {
    "sample_age": 1.0,
    "up": 1.0,
    "requests": 100.0,
    "ttft_p99": 0.5,
    "itl_p99": 0.05,
    "ttft_mean": 0.2,
    "itl_mean": 0.02,
    "queue_mean": 0.0,
    "success_rate": 1.0,
    "kv_cache_usage": 0.1,
    "preemption_rate": 0.0,
    "ttft_p99_above_top": 0.0,
}


def values(canary: dict[str, float], stable: dict[str, float] | None = None) -> dict:
    both = {(k, "canary"): [v] for k, v in {**HEALTHY, **canary}.items()}
    if stable is not None:
        both |= {(k, "stable"): [v] for k, v in {**HEALTHY, **stable}.items()}
    return both


@pytest.mark.parametrize(
    ("canary", "stable", "metric", "outcome", "reason"),
    [
        ({}, {}, "ttft_p99", Outcome.PASS, "within limits"),
        # histogram_quantile answers the top finite bound (5 s) when the p99 is in +Inf
        ({"ttft_p99": 5.0, "ttft_p99_above_top": 0.5}, {}, "ttft_p99", Outcome.FAIL, "top bucket"),
        (
            {"ttft_p99": 1.0, "ttft_p99_above_top": 0.5},
            {},
            "ttft_p99",
            Outcome.INCONCLUSIVE,
            "cannot tell",
        ),
        ({"ttft_p99": 1.0, "ttft_p99_above_top": 0.005}, {}, "ttft_p99", Outcome.PASS, "within"),
        # stable exports no such metric (say, another vLLM's name): never a silent Pass
        ({}, {"itl_mean": float("nan")}, "itl_mean", Outcome.INCONCLUSIVE, "stable reports no"),
        ({"itl_mean": 0.08}, {}, "itl_mean", Outcome.FAIL, "worse than stable"),
        # 2.7× stable but 5 ms: what a good canary measured in CI beside busy tests (the
        # demo's min_itl_regression_seconds is 20 ms)
        ({"itl_mean": 0.0081}, {"itl_mean": 0.003}, "itl_mean", Outcome.PASS, "within"),
        ({"itl_mean": 0.024}, {"itl_mean": 0.003}, "itl_mean", Outcome.FAIL, "and 0.02s"),
        ({"ttft_mean": 0.3}, {"ttft_mean": 0.1}, "ttft_mean", Outcome.PASS, "within"),
        ({"ttft_mean": 0.4}, {"ttft_mean": 0.1}, "ttft_mean", Outcome.FAIL, "and 0.25s"),
        ({"requests": 3.0}, {}, "requests", Outcome.INCONCLUSIVE, "fewer than 10"),
        ({"success_rate": 0.9}, {}, "success_rate", Outcome.FAIL, "breaks the SLO"),
    ],
)
def test_a_measurement(
    canary: dict[str, float], stable: dict[str, float], metric: str, outcome: Outcome, reason: str
) -> None:
    verdict = judge(SPEC, values(canary, stable), 1.0)
    found = next(m for m in verdict.measurements if m.name == metric)
    assert found.outcome is outcome, verdict.table()
    assert reason in found.reason


@pytest.mark.parametrize(
    ("canary", "stable", "outcome"),
    [
        # the defaults, GPU-sized: 20% and 2 ms on the ITL, 20% and 20 ms on the TTFT
        ({"itl_mean": 0.0125}, {"itl_mean": 0.010}, Outcome.FAIL),  # +25%, 2.5 ms
        ({"itl_mean": 0.0035}, {"itl_mean": 0.002}, Outcome.PASS),  # +75% but 1.5 ms
        ({"itl_mean": 0.0115}, {"itl_mean": 0.010}, Outcome.PASS),  # +15%
        ({"ttft_mean": 0.07}, {"ttft_mean": 0.04}, Outcome.FAIL),  # +75%, 30 ms
        ({"ttft_mean": 0.055}, {"ttft_mean": 0.04}, Outcome.PASS),  # +37% but 15 ms
    ],
)
def test_a_latency_difference_must_beat_both_the_ratio_and_the_noise(
    canary: dict[str, float], stable: dict[str, float], outcome: Outcome
) -> None:
    defaults = SPEC.gate.model_copy(
        update={
            "max_relative_regression": 0.2,
            "min_ttft_regression_seconds": 0.02,
            "min_itl_regression_seconds": 0.002,
        }
    )
    spec = SPEC.model_copy(update={"gate": defaults})
    assert defaults.min_itl_regression_seconds == type(defaults)().min_itl_regression_seconds
    assert defaults.min_ttft_regression_seconds == type(defaults)().min_ttft_regression_seconds
    verdict = judge(spec, values(canary, stable), 1.0)
    metric = next(iter(canary))
    found = next(m for m in verdict.measurements if m.name == metric)
    assert found.outcome is outcome, verdict.table()


def test_the_request_count_is_in_the_table() -> None:
    table = judge(SPEC, values({"requests": 42.0}, {"requests": 40.0}), 1.0).table()
    assert "requests" in table and "42" in table and "40" in table


def test_without_a_baseline_only_the_absolute_limits_apply() -> None:
    queries_of_one_track = None  # a rolling release's bake: no stable values at all
    verdict = judge(SPEC, values({}), 1.0, queries=queries_of_one_track, compare=False)
    assert verdict.window is Outcome.PASS, verdict.table()
    ttft = next(m for m in verdict.measurements if m.name == "ttft_mean")
    assert "no baseline" in ttft.threshold


@pytest.mark.parametrize(
    ("changes", "metric", "outcome", "reason"),
    [
        # two series where the batched query expects one: a relabelling that split a track
        ({("sample_age", "canary"): [1.0, 2.0]}, "freshness/canary", Outcome.ERROR, "2 series"),
        ({("ttft_p99", "canary"): [0.5, 0.6]}, "ttft_p99", Outcome.ERROR, "2 series"),
        ({("preemption_rate", "canary"): [0, 0]}, "preemption_rate", Outcome.ERROR, "2 series"),
        ({("sample_age", "stable"): []}, "freshness/stable", Outcome.ERROR, "no samples"),
        ({("sample_age", "canary"): [100.0]}, "freshness/canary", Outcome.ERROR, "100s old"),
        ({("up", "canary"): [0.0]}, "freshness/canary", Outcome.ERROR, "target is down"),
        # no request counter at all: too few to judge, the table's value a dash
        ({("requests", "canary"): []}, "requests", Outcome.INCONCLUSIVE, "- requests in"),
        ({("requests", "canary"): [math.nan]}, "requests", Outcome.INCONCLUSIVE, "NaN requests"),
    ],
    ids=[
        *("two-ages", "two-p99s", "two-preemptions", "no-samples", "stale", "down"),
        *("no-count", "nan-count"),
    ],
)
def test_a_window_that_cannot_be_trusted_says_why(
    changes: dict[tuple[str, str], list[float]], metric: str, outcome: Outcome, reason: str
) -> None:
    verdict = judge(SPEC, values({}, {}) | changes, 1.0)
    found = next(m for m in verdict.measurements if m.name == metric)
    assert (found.outcome, reason in found.reason) == (outcome, True), verdict.table()


def test_an_end_to_end_latency_slo_is_judged_when_set() -> None:
    gate = SPEC.gate.model_copy(update={"max_e2e_p99_seconds": 3.0})
    spec = SPEC.model_copy(update={"gate": gate})
    verdict = judge(spec, values({"e2e_p99": 4.0}, {"e2e_p99": 1.0}), 1.0)
    found = next(m for m in verdict.measurements if m.name == "e2e_p99")
    assert found.outcome is Outcome.FAIL and found.reason == "4 breaks the SLO 3s"
    assert not any(m.name == "e2e_p99" for m in judge(SPEC, values({}, {}), 1.0).measurements)
