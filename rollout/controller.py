"""One step of the release controller for a model, as a sensor tick runs it. Every input is
re-read from the cluster (which release is the canary, how its rollout is doing, the gate's
progress), so a step taken after a restart or a lost cursor decides exactly as one before.

Phases of a canary, listed as Flagger lists its own:
  idle (no canary) → starting (pods not ready) → gating (after `warmup_seconds` and one
  full window, a window is judged every interval)
  → decided: promote | rollback (final for that release; the runs that act on it are
  keyed by release and decision, so asking twice launches once)
A canary whose rollout stalls (progress deadline, image pull errors, crash loops,
unschedulable) is decided `rollback` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from k8s import labels as names
from k8s.cluster import ClusterClient
from k8s.history import ReleaseHistory
from monitoring.chart import window_chart
from monitoring.gate import Decision, Verdict, judge
from monitoring.prometheus import PrometheusFailed, measure, measure_range
from monitoring.queries import chart_queries, gate_queries
from rollout.gate_store import GateRecord, GateStore
from spec import ReleaseSpec


class Phase(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    GATING = "gating"
    DECIDED = "decided"


class Action(StrEnum):
    NONE = "none"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Step:
    """What one controller step found and what should happen next."""

    phase: Phase
    action: Action
    release_id: str | None
    reason: str
    verdict: Verdict | None = None  # set when this step judged a window
    chart: str = ""  # canary vs stable over the judged window, as text


@dataclass(frozen=True)
class Metrics:
    """Where the gate's numbers come from."""

    prometheus_url: str
    scrape_interval_seconds: float


def step(
    spec: ReleaseSpec,
    cluster: ClusterClient,
    metrics: Metrics,
    now: Callable[[], float] = time.time,
) -> Step:
    """Advance the model's canary by at most one judged window."""
    canary = ReleaseHistory(cluster, spec).read().canary
    if canary is None:
        return Step(Phase.IDLE, Action.NONE, None, "no canary is running")
    store = GateStore(cluster, spec)
    record = store.read(canary)
    if record.decision:
        return Step(Phase.DECIDED, Action(record.decision), canary, record.reason)
    status = cluster.rollout_status(names.deployment_name(spec, "canary"), spec.namespace)
    if status.phase == "stalled":
        reason = f"the canary's rollout stalled: {status.reason}"
        store.write(GateRecord(canary, decision=Action.ROLLBACK.value, reason=reason))
        return Step(Phase.DECIDED, Action.ROLLBACK, canary, reason)
    if status.phase != "complete":
        return Step(
            Phase.STARTING,
            Action.NONE,
            canary,
            f"waiting for the canary to be ready ({status.available} of {status.desired} "
            f"available{'; ' + status.reason if status.reason else ''})",
        )
    if not record.ready_at:
        record = replace(record, ready_at=now())
        store.write(record)
    first_window_at = record.ready_at + spec.gate.warmup_seconds + spec.gate.window_seconds
    if now() < first_window_at:
        return Step(
            Phase.GATING,
            Action.NONE,
            canary,
            f"warming up: the first window is judged in {first_window_at - now():.0f}s "
            f"({spec.gate.warmup_seconds}s warm-up, then one {spec.gate.window} window)",
        )
    since = now() - record.evaluated_at
    if since < spec.gate.interval_seconds:
        return Step(
            Phase.GATING,
            Action.NONE,
            canary,
            f"last window judged {since:.0f}s ago; every {spec.gate.interval_seconds}s",
        )
    verdict = judge_window(spec, canary, record, metrics)
    action = {Decision.PROMOTE: Action.PROMOTE, Decision.ROLLBACK: Action.ROLLBACK}.get(
        verdict.decision, Action.NONE
    )
    s = verdict.state
    store.write(
        replace(
            record,
            passes=s.passes,
            failures=s.failures,
            errors=s.errors,
            evaluated_at=now(),
            decision=action.value if action is not Action.NONE else "",
            reason=verdict.reason,
        )
    )
    phase = Phase.DECIDED if action is not Action.NONE else Phase.GATING
    return Step(phase, action, canary, verdict.reason, verdict, chart_window(spec, canary, metrics))


def chart_window(spec: ReleaseSpec, canary: str, metrics: Metrics) -> str:
    """The window as a text chart; empty when Prometheus cannot draw it (it is decoration:
    the verdict never depends on it)."""
    queries, step_seconds = chart_queries(spec, canary)
    try:
        series = measure_range(
            metrics.prometheus_url, queries, spec.gate.window_seconds, step_seconds
        )
    except PrometheusFailed:
        return ""
    return window_chart(series, f"means over the last {spec.gate.window}, every {step_seconds}s")


def judge_window(spec: ReleaseSpec, canary: str, record: GateRecord, metrics: Metrics) -> Verdict:
    """Measure canary vs stable over the window and judge it (Prometheus failing: Error)."""
    queries = gate_queries(spec, canary_release=canary)
    try:
        values = measure(metrics.prometheus_url, queries).values
    except PrometheusFailed as failure:
        return judge(
            spec, None, record.state, metrics.scrape_interval_seconds, str(failure), queries
        )
    return judge(spec, values, record.state, metrics.scrape_interval_seconds, queries=queries)
