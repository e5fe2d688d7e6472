"""The promotion gate: canary vs stable over the same window, against absolute SLOs and a
relative-regression budget, with Argo-style outcomes that fail closed.

Per measurement: Pass, Fail, Inconclusive (too little traffic, NaN, no data) or Error
(stale or missing scrapes, targets down, Prometheus unreachable, ambiguous series).
Per window: error > fail > inconclusive > pass. Across windows (state kept by the caller,
in the cluster): `required_passes` passing windows in a row → promote; `failure_limit`
failing windows in a row → rollback; `consecutive_error_limit` erroring windows in a row →
hold (a metrics outage is not a bad release); otherwise continue. Nothing but passes
ever promotes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from monitoring.queries import Query
from spec import ReleaseSpec


class Outcome(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Decision(StrEnum):
    PROMOTE = "promote"
    CONTINUE = "continue"
    ROLLBACK = "rollback"
    HOLD = "hold"


# A track whose newest sample is older than this many scrape intervals is stale.
STALE_AFTER_INTERVALS = 2
# How much worse the canary's error rate may be than stable's, in absolute terms: keeps a
# single failed request in a quiet window from counting as a 100% regression.
ERROR_RATE_SLACK = 0.005
# Below these, a canary-vs-stable difference is noise (stable at 0 preemptions makes any
# single preemption an "infinite" regression).
PREEMPTION_FLOOR_PER_SECOND = 0.05
QUEUE_FLOOR_SECONDS = 0.05


@dataclass(frozen=True)
class GateState:
    """Consecutive window results so far (kept in the cluster between ticks)."""

    passes: int = 0
    failures: int = 0
    errors: int = 0


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
    """The gate's decision for one window, with every number that led to it."""

    decision: Decision
    window: Outcome
    reason: str
    measurements: list[Measurement]
    state: GateState
    queries: list[Query] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table of the measurements, for logs and the CLI."""
        rows = [f"{'metric':16} {'canary':>10} {'stable':>10}  {'limit':24} outcome"]
        for m in self.measurements:
            rows.append(
                f"{m.name:16} {_fmt(m.canary):>10} {_fmt(m.stable):>10}  "
                f"{m.threshold:24} {m.outcome.value}: {m.reason}"
            )
        rows.append(f"→ {self.decision.value} ({self.window.value} window; {self.reason})")
        return "\n".join(rows)


Values = dict[tuple[str, str], list[float]]  # (metric, track) → results (one expected)
Lookup = Callable[[str, str], tuple[float | None, str | None]]


def judge(
    spec: ReleaseSpec,
    values: Values | None,
    state: GateState,
    scrape_interval_seconds: float,
    failure: str | None = None,
    queries: list[Query] | None = None,
) -> Verdict:
    """Decide for one window. `values` None with `failure` means Prometheus failed."""
    gate = spec.gate
    sources = {(q.metric, q.track): q.promql for q in queries or []}
    if values is None:
        failed = [
            Measurement("prometheus", None, None, "answers", Outcome.ERROR, failure or "no answer")
        ]
        return _decide(spec, Outcome.ERROR, failed, state, queries or [])
    measurements: list[Measurement] = []

    def single(metric: str, track: str) -> tuple[float | None, str | None]:
        found = values.get((metric, track), [])
        if len(found) > 1:
            return None, f"{len(found)} series where one was expected"
        if not found:
            return None, None
        return found[0], None

    # freshness first: stale or down targets make every number untrustworthy
    for track in ("canary", "stable"):
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
    requests, _ = single("requests", "canary")
    enough = requests is not None and not math.isnan(requests) and requests >= gate.min_requests

    def check(
        name: str,
        limit: float | None,
        higher_is_worse: bool,
        relative: bool,
        label: str,
        floor: float = 0.0,
    ) -> None:
        canary, canary_problem = single(name, "canary")
        stable, _ = single(name, "stable")
        query = sources.get((name, "canary"), "")
        bounds = [f"{'≤' if higher_is_worse else '≥'} {label}"] if limit is not None else []
        if relative:
            bounds.append(f"≤ stable × {1 + gate.max_relative_regression:g}")
        threshold = ", ".join(bounds) or "-"
        if canary_problem:
            outcome, reason = Outcome.ERROR, canary_problem
        elif not enough:
            outcome, reason = (
                Outcome.INCONCLUSIVE,
                (f"{_fmt(requests)} requests in the window, fewer than {gate.min_requests}"),
            )
        elif canary is None or math.isnan(canary):
            outcome, reason = Outcome.INCONCLUSIVE, "no data: no request completed (0/0)"
        elif limit is not None and (canary > limit if higher_is_worse else canary < limit):
            outcome, reason = Outcome.FAIL, f"{_fmt(canary)} breaks the SLO {label}"
        elif relative and _regressed(canary, stable, gate.max_relative_regression, floor):
            outcome, reason = (
                Outcome.FAIL,
                (
                    f"{_fmt(canary)} is worse than stable's "
                    f"{_fmt(stable)} (allowed {gate.max_relative_regression:.0%})"
                ),
            )
        else:
            outcome, reason = Outcome.PASS, "within limits"
        measurements.append(Measurement(name, canary, stable, threshold, outcome, reason, query))

    # absolute SLOs on the p99s; canary-vs-stable on exact window means
    check("ttft_p99", gate.max_ttft_p99_seconds, True, False, f"{gate.max_ttft_p99_seconds:g}s")
    check("itl_p99", gate.max_itl_p99_seconds, True, False, f"{gate.max_itl_p99_seconds:g}s")
    if gate.max_e2e_p99_seconds is not None:  # secondary: mostly measures output length
        check("e2e_p99", gate.max_e2e_p99_seconds, True, False, f"{gate.max_e2e_p99_seconds:g}s")
    check("ttft_mean", None, True, True, "")
    check("itl_mean", None, True, True, "")
    check("queue_mean", None, True, True, "", floor=QUEUE_FLOOR_SECONDS)
    check("success_rate", gate.min_success_rate, False, False, f"{gate.min_success_rate:g}")
    _check_error_rate(measurements, single, enough, gate.max_relative_regression)
    check("kv_cache_usage", gate.max_kv_cache_usage, True, False, f"{gate.max_kv_cache_usage:g}")
    check("preemption_rate", None, True, True, "", floor=PREEMPTION_FLOOR_PER_SECOND)
    window = _worst(m.outcome for m in measurements)
    return _decide(spec, window, measurements, state, queries or [])


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


def _regressed(canary: float, stable: float | None, budget: float, floor: float) -> bool:
    """Worse than stable by more than the budget, and above a floor that ignores noise."""
    if stable is None or math.isnan(stable):
        return False  # nothing to compare with: the absolute limits decide
    return canary > max(stable * (1 + budget), floor)


def _worst(outcomes: Iterable[Outcome]) -> Outcome:
    ranked = [Outcome.ERROR, Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.PASS]
    seen = set(outcomes)
    return next((o for o in ranked if o in seen), Outcome.INCONCLUSIVE)


def _decide(
    spec: ReleaseSpec,
    window: Outcome,
    measurements: list[Measurement],
    state: GateState,
    queries: list[Query],
) -> Verdict:
    gate = spec.gate
    if window is Outcome.ERROR:
        state = GateState(passes=0, failures=state.failures, errors=state.errors + 1)
        if state.errors >= gate.consecutive_error_limit:
            decision, reason = (
                Decision.HOLD,
                (
                    f"{state.errors} erroring windows in a row: metrics are unavailable, holding "
                    "(not a verdict on the release); alert"
                ),
            )
        else:
            decision, reason = (
                Decision.CONTINUE,
                f"measurement error {state.errors} of {gate.consecutive_error_limit}",
            )
    elif window is Outcome.FAIL:
        state = GateState(passes=0, failures=state.failures + 1, errors=0)
        failed = ", ".join(m.name for m in measurements if m.outcome is Outcome.FAIL)
        if state.failures >= gate.failure_limit:
            decision, reason = (
                Decision.ROLLBACK,
                f"{state.failures} failing windows in a row ({failed})",
            )
        else:
            decision, reason = (
                Decision.CONTINUE,
                f"failing window {state.failures} of {gate.failure_limit} ({failed})",
            )
    elif window is Outcome.INCONCLUSIVE:
        state = replace(state, passes=0, errors=0)
        decision, reason = Decision.CONTINUE, "inconclusive window: waiting for traffic"
    else:
        state = GateState(passes=state.passes + 1, failures=0, errors=0)
        if state.passes >= gate.required_passes:
            decision, reason = Decision.PROMOTE, f"{state.passes} passing windows in a row"
        else:
            decision, reason = (
                Decision.CONTINUE,
                f"passing window {state.passes} of {gate.required_passes}",
            )
    return Verdict(decision, window, reason, measurements, state, queries)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"
