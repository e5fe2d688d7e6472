"""The promotion gate's judging of one window: canary vs stable (or, in the bake after a
promotion, the new stable vs the previous stable's numbers recorded at promotion) against
absolute SLOs and a relative-regression budget, with Argo-style outcomes that fail closed.

Per measurement: Pass, Fail, Inconclusive (too little traffic, NaN, no data, nothing to
compare with, a quantile above the histogram's top bucket that cannot be placed) or Error
(stale or missing scrapes, targets down, Prometheus unreachable, ambiguous series).
Per window: error > fail > inconclusive > pass. What a window means for the release —
promote, keep gating, hold, roll back — is the release controller's to decide
(`rollout.machine`), never the judge's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from llm_rollout.monitoring.queries import QUANTILE, Query
from llm_rollout.spec import ReleaseSpec


class Outcome(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


# A track whose newest sample is older than this many scrape intervals is stale.
STALE_AFTER_INTERVALS = 2
# How much worse the canary's error rate may be than stable's, in absolute terms: keeps a
# single failed request in a quiet window from counting as a 100% regression.
ERROR_RATE_SLACK = 0.005
# Below these, a canary-vs-stable difference is noise (stable at 0 preemptions makes any
# single preemption an "infinite" regression).
PREEMPTION_FLOOR_PER_SECOND = 0.05
QUEUE_FLOOR_SECONDS = 0.05
# The relative comparisons, and the floor under which a canary's value is noise.
RELATIVE = {"ttft_mean": 0.0, "itl_mean": 0.0, "queue_mean": QUEUE_FLOOR_SECONDS}


@dataclass(frozen=True)
class Measurement:
    """One measured metric: both tracks' values, the limit, the outcome and why."""

    name: str
    canary: float | None
    stable: float | None
    threshold: str
    outcome: Outcome
    reason: str
    query: str = ""


@dataclass(frozen=True)
class Verdict:
    """One judged window: its outcome, why, and every number that led to it."""

    window: Outcome
    reason: str
    measurements: list[Measurement]
    queries: list[Query] = field(default_factory=list)

    def values(self, track: str) -> dict[str, float]:
        """A track's finite measured values by metric (what a bake compares against)."""
        found: dict[str, float] = {}
        for m in self.measurements:
            value = m.canary if track == "canary" else m.stable
            if value is not None and not math.isnan(value):
                found[m.name] = value
        return found

    def table(self) -> str:
        """A plain-text table of the measurements, for logs and the CLI."""
        rows = [f"{'metric':16} {'canary':>10} {'stable':>10}  {'limit':24} outcome"]
        for m in self.measurements:
            rows.append(
                f"{m.name:16} {_fmt(m.canary):>10} {_fmt(m.stable):>10}  "
                f"{m.threshold:24} {m.outcome.value}: {m.reason}"
            )
        rows.append(f"→ {self.window.value} window: {self.reason}")
        return "\n".join(rows)


Values = dict[tuple[str, str], list[float]]  # (metric, track) → results (one expected)
Lookup = Callable[[str, str], tuple[float | None, str | None]]


def judge(
    spec: ReleaseSpec,
    values: Values | None,
    scrape_interval_seconds: float,
    failure: str | None = None,
    queries: list[Query] | None = None,
    compare: bool = True,
) -> Verdict:
    """Judge one window. `values` None with `failure` means Prometheus failed. With
    `compare` False there is no baseline (a rolling release's bake): only the absolute
    limits apply, and the table says so."""
    gate = spec.gate
    sources = {(q.metric, q.track): q.promql for q in queries or []}
    if values is None:
        failed = [
            Measurement("prometheus", None, None, "answers", Outcome.ERROR, failure or "no answer")
        ]
        return Verdict(Outcome.ERROR, failure or "Prometheus did not answer", failed, queries or [])
    measurements: list[Measurement] = []

    def single(metric: str, track: str) -> tuple[float | None, str | None]:
        found = values.get((metric, track), [])
        if len(found) > 1:
            return None, f"{len(found)} series where one was expected"
        if not found:
            return None, None
        return found[0], None

    queried = (
        {q.track for q in queries} if queries else {"canary", "stable"} if compare else {"canary"}
    )
    _check_freshness(measurements, single, scrape_interval_seconds, sources, queried)
    requests, _ = single("requests", "canary")
    stable_requests, _ = single("requests", "stable")
    enough = requests is not None and not math.isnan(requests) and requests >= gate.min_requests
    too_few = f"{_fmt(requests)} requests in the window, fewer than {gate.min_requests}"
    measurements.append(
        Measurement(
            "requests",
            requests,
            stable_requests,
            f"≥ {gate.min_requests}",
            Outcome.PASS if enough else Outcome.INCONCLUSIVE,
            "enough traffic to judge" if enough else too_few,
            sources.get(("requests", "canary"), ""),
        )
    )

    # a latency difference smaller than these is noise, however large the ratio
    noise = {
        "ttft_mean": gate.min_ttft_regression_seconds,
        "itl_mean": gate.min_itl_regression_seconds,
    }

    def check(name: str, limit: float | None, higher_is_worse: bool, label: str) -> None:
        canary, canary_problem = single(name, "canary")
        stable, _ = single(name, "stable")
        floor = RELATIVE.get(name)
        relative = floor is not None and compare
        bounds = [f"{'≤' if higher_is_worse else '≥'} {label}"] if limit is not None else []
        if relative:
            bounds.append(
                f"≤ stable × {1 + gate.max_relative_regression:g}"
                + (f" or + {_fmt(noise[name])}s" if noise.get(name) else "")
            )
        elif floor is not None:
            bounds.append("no baseline to compare with")
        threshold = ", ".join(bounds) or "-"
        above_top, _ = single(f"{name}_above_top", "canary")
        if canary_problem:
            outcome, reason = Outcome.ERROR, canary_problem
        elif not enough:
            outcome, reason = Outcome.INCONCLUSIVE, too_few
        elif canary is None or math.isnan(canary):
            outcome, reason = Outcome.INCONCLUSIVE, f"no data: the track reports no {name}"
        elif above_top is not None and above_top > 1 - QUANTILE + 1e-9 and limit is not None:
            # histogram_quantile answers the top finite bound when the quantile is in +Inf
            if canary >= limit:
                outcome = Outcome.FAIL
                reason = f"above the top bucket ({_fmt(canary)}s), which already breaks {label}"
            else:
                outcome = Outcome.INCONCLUSIVE
                reason = (
                    f"above the top bucket ({_fmt(canary)}s): the histogram cannot tell whether "
                    f"it is within {label}; add a bucket at or above it"
                )
        elif limit is not None and (canary > limit if higher_is_worse else canary < limit):
            outcome, reason = Outcome.FAIL, f"{_fmt(canary)} breaks the SLO {label}"
        elif relative and (stable is None or math.isnan(stable)):
            outcome, reason = (
                Outcome.INCONCLUSIVE,
                f"stable reports no {name}: nothing to compare the canary with",
            )
        elif relative and _regressed(
            canary, stable, gate.max_relative_regression, floor or 0.0, noise.get(name, 0.0)
        ):
            outcome, reason = (
                Outcome.FAIL,
                (
                    f"{_fmt(canary)} is worse than stable's "
                    f"{_fmt(stable)} (allowed {gate.max_relative_regression:.0%}"
                    f"{_noise_label(noise.get(name, 0.0))})"
                ),
            )
        else:
            outcome, reason = Outcome.PASS, "within limits"
        query = sources.get((name, "canary"), "")
        measurements.append(Measurement(name, canary, stable, threshold, outcome, reason, query))

    # absolute SLOs on the p99s; canary-vs-stable on exact window means
    check("ttft_p99", gate.max_ttft_p99_seconds, True, f"{gate.max_ttft_p99_seconds:g}s")
    check("itl_p99", gate.max_itl_p99_seconds, True, f"{gate.max_itl_p99_seconds:g}s")
    if gate.max_e2e_p99_seconds is not None:  # secondary: mostly measures output length
        check("e2e_p99", gate.max_e2e_p99_seconds, True, f"{gate.max_e2e_p99_seconds:g}s")
    check("ttft_mean", None, True, "")
    check("itl_mean", None, True, "")
    check("queue_mean", None, True, "")
    check("success_rate", gate.min_success_rate, False, f"{gate.min_success_rate:g}")
    if compare:
        _check_error_rate(measurements, single, enough, gate.max_relative_regression)
    check("kv_cache_usage", gate.max_kv_cache_usage, True, f"{gate.max_kv_cache_usage:g}")
    _check_preemptions(measurements, single, enough, compare, gate.max_relative_regression)
    window = worst(m.outcome for m in measurements)
    return Verdict(window, summary(window, measurements), measurements, queries or [])


def _check_freshness(
    measurements: list[Measurement],
    single: Lookup,
    scrape_interval_seconds: float,
    sources: dict[tuple[str, str], str],
    tracks: set[str],
) -> None:
    """Stale or down targets make every number untrustworthy: an Error per such track."""
    for track in [t for t in ("canary", "stable") if t in tracks]:
        age, ambiguous = single("sample_age", track)
        up, _ = single("up", track)
        if ambiguous:
            problem = ambiguous
        elif age is None:
            problem = "no samples (no scrape target, or its series went stale)"
        elif age > STALE_AFTER_INTERVALS * scrape_interval_seconds:
            problem = f"newest sample is {age:.0f}s old"
        elif up is not None and up < 1:
            problem = "a scrape target is down (up == 0)"
        else:
            continue
        measurements.append(
            Measurement(
                f"freshness/{track}",
                age,
                None,
                f"≤ {STALE_AFTER_INTERVALS} scrape intervals",
                Outcome.ERROR,
                problem,
                sources.get(("sample_age", track), ""),
            )
        )


def _check_error_rate(
    measurements: list[Measurement], single: Lookup, enough: bool, budget: float
) -> None:
    """Canary errors may exceed stable's only by a small absolute slack."""
    canary, _ = single("success_rate", "canary")
    stable, _ = single("success_rate", "stable")
    if not enough or canary is None or stable is None or math.isnan(canary) or math.isnan(stable):
        return  # the absolute success-rate check already said Inconclusive
    canary_errors, stable_errors = 1 - canary, 1 - stable
    limit = stable_errors * (1 + budget) + ERROR_RATE_SLACK
    outcome = Outcome.FAIL if canary_errors > limit else Outcome.PASS
    reason = (
        f"error rate {canary_errors:.2%} vs stable {stable_errors:.2%}"
        if outcome is Outcome.FAIL
        else "within limits"
    )
    measurements.append(
        Measurement("error_rate", canary_errors, stable_errors, f"≤ {limit:.2%}", outcome, reason)
    )


def _check_preemptions(
    measurements: list[Measurement], single: Lookup, enough: bool, compare: bool, budget: float
) -> None:
    """Preemptions against stable's, above a noise floor; a missing counter is no data."""
    canary, problem = single("preemption_rate", "canary")
    stable, _ = single("preemption_rate", "stable")
    threshold = (
        f"≤ stable × {1 + budget:g}, ≥ {PREEMPTION_FLOOR_PER_SECOND:g}/s"
        if compare
        else f"≤ {PREEMPTION_FLOOR_PER_SECOND:g}/s (no baseline)"
    )
    if problem:
        outcome, reason = Outcome.ERROR, problem
    elif not enough or canary is None or math.isnan(canary):
        outcome, reason = Outcome.INCONCLUSIVE, "no data"
    else:
        reference = stable if compare and stable is not None and not math.isnan(stable) else 0.0
        worse = _regressed(canary, reference, budget, PREEMPTION_FLOOR_PER_SECOND)
        outcome = Outcome.FAIL if worse else Outcome.PASS
        reason = f"{_fmt(canary)}/s vs {_fmt(reference)}/s" if worse else "within limits"
    measurements.append(Measurement("preemption_rate", canary, stable, threshold, outcome, reason))


def _regressed(
    canary: float, stable: float | None, budget: float, floor: float, min_difference: float = 0.0
) -> bool:
    """Worse than stable by more than the budget and by more than `min_difference`, and above
    a floor: under either, a difference is noise."""
    if stable is None or math.isnan(stable):
        return False
    return canary > max(stable * (1 + budget), floor) and canary - stable > min_difference


def _noise_label(min_difference: float) -> str:
    return f" and {_fmt(min_difference)}s" if min_difference else ""


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The window's outcome: error > fail > inconclusive > pass."""
    ranked = [Outcome.ERROR, Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.PASS]
    seen = set(outcomes)
    return next((o for o in ranked if o in seen), Outcome.INCONCLUSIVE)


def summary(window: Outcome, measurements: list[Measurement]) -> str:
    """Why the window came out as it did: the measurements that decided it."""
    deciding = [m for m in measurements if m.outcome is window]
    if window is Outcome.PASS:
        return "every measurement within limits"
    return "; ".join(f"{m.name}: {m.reason}" for m in deciding[:3])


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"
