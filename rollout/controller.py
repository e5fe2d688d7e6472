"""The release controller's I/O: observe the cluster, measure a window when one is due,
call the pure transition (`rollout.machine`), store the next record. The gate sensor runs
`tick`; jobs and the CLI `report` what they did. Nothing here decides: the machine does."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from k8s import labels as names
from k8s.cluster import ClusterClient
from k8s.history import History, ReleaseHistory
from monitoring.chart import window_chart
from monitoring.gate import Verdict, judge
from monitoring.prometheus import PrometheusFailed, measure, measure_range
from monitoring.queries import Query, TrackSource, chart_queries, gate_queries, track_queries
from rollout import machine
from rollout.machine import Event, Facts, Launch, Phase, Rollout, RolloutRecord, RunState
from rollout.store import RecordChanged, RolloutStore
from spec import ReleaseSpec

RunLookup = Callable[[str], tuple[RunState, str]]  # run key → its state and error


@dataclass(frozen=True)
class Metrics:
    """Where the gate's numbers come from."""

    prometheus_url: str
    scrape_interval_seconds: float


@dataclass(frozen=True)
class Step:
    """What one controller tick found, judged and asked for."""

    record: RolloutRecord
    launches: list[Launch] = field(default_factory=list)
    verdict: Verdict | None = None  # set when this tick judged a window
    chart: str = ""  # canary vs stable over the judged window, as text


def tick(
    spec: ReleaseSpec,
    cluster: ClusterClient,
    metrics: Metrics,
    runs: RunLookup,
    now: Callable[[], float] = time.time,
) -> Step:
    """One controller step for the model: at most one judged window, at most one launch."""
    store = RolloutStore(cluster, spec)
    stored = store.read()
    history = ReleaseHistory(cluster, spec).read()
    at = now()
    facts = observe(spec, cluster, stored, history, runs)
    verdict, chart = None, ""
    if machine.judgment_due(spec, stored, at) and (
        stored.phase is Phase.BAKING or facts.canary == stored.release_id
    ):
        verdict = measure_window(spec, stored, history, metrics)
        if stored.phase is not Phase.BAKING:
            chart = chart_window(spec, stored, history, metrics)
    transition = machine.tick(spec, stored, facts, verdict, at)
    if transition.record != stored:
        try:
            store.replace(stored, transition.record)
        except RecordChanged:
            return Step(store.read())  # a job reported meanwhile: the next tick decides
    return Step(transition.record, transition.launches, verdict, chart)


def report(spec: ReleaseSpec, cluster: ClusterClient, event: Event) -> RolloutRecord:
    """Store what a job or a person did (the machine turns it into the next record)."""
    return RolloutStore(cluster, spec).update(
        lambda record: machine.report(spec, record, event, time.time())
    )


def observe(
    spec: ReleaseSpec,
    cluster: ClusterClient,
    record: RolloutRecord,
    history: History,
    runs: RunLookup,
) -> Facts:
    """The facts a tick decides on."""
    canary_rollout = None
    if history.canary:
        name = names.deployment_name(spec, "canary")
        if cluster.find("Deployment", name, spec.namespace) is not None:
            status = cluster.rollout_status(name, spec.namespace)
            canary_rollout = Rollout(status.phase, status.reason, status.unschedulable)
    run, error = RunState.NONE, ""
    if record.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        run, error = runs(record.run_key())
    return Facts(history.stable, history.canary, canary_rollout, run, error)


def track(history: History, label: str, release_id: str | None) -> TrackSource:
    """A track's pods and the vLLM version its release runs."""
    record = history.find(release_id) if release_id else None
    return TrackSource(label, release_id, version_tuple(record.vllm_version if record else ""))


def version_tuple(version: str) -> tuple[int, int, int] | None:
    """'0.11.0' → (0, 11, 0); None for a release recorded without its version."""
    numbers = re.findall(r"\d+", version)[:3]
    return (int(numbers[0]), int(numbers[1]), int(numbers[2])) if len(numbers) == 3 else None


def measure_window(
    spec: ReleaseSpec, record: RolloutRecord, history: History, metrics: Metrics
) -> Verdict:
    """Judge the window the record's phase calls for: canary vs stable while gating; in the
    bake, the new stable vs the previous stable's numbers recorded at promotion."""
    if record.phase is Phase.BAKING:
        source = track(history, "stable", record.release_id)
        queries = track_queries(spec, source, spec.gate.window, label="canary")
        baseline = {(metric, "stable"): [value] for metric, value in record.baseline.items()}
        return _judged(spec, queries, metrics, baseline, compare=bool(record.baseline))
    queries = gate_queries(
        spec,
        canary=track(history, "canary", record.release_id),
        stable=track(history, "stable", history.stable),
    )
    return _judged(spec, queries, metrics)


def _judged(
    spec: ReleaseSpec,
    queries: list[Query],
    metrics: Metrics,
    extra: dict[tuple[str, str], list[float]] | None = None,
    compare: bool = True,
) -> Verdict:
    interval = metrics.scrape_interval_seconds
    try:
        values = measure(metrics.prometheus_url, queries).values
    except PrometheusFailed as failure:
        return judge(spec, None, interval, str(failure), queries, compare)
    return judge(spec, {**values, **(extra or {})}, interval, queries=queries, compare=compare)


def chart_window(
    spec: ReleaseSpec, record: RolloutRecord, history: History, metrics: Metrics
) -> str:
    """The window as a text chart; empty when Prometheus cannot draw it (it is decoration:
    the verdict never depends on it)."""
    queries, step_seconds = chart_queries(
        spec,
        canary=track(history, "canary", record.release_id),
        stable=track(history, "stable", history.stable),
    )
    try:
        series = measure_range(
            metrics.prometheus_url, queries, spec.gate.window_seconds, step_seconds
        )
    except PrometheusFailed:
        return ""
    return window_chart(series, f"means over the last {spec.gate.window}, every {step_seconds}s")
