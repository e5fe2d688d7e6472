"""The release controller's I/O: observe the cluster, measure a window when one is due,
call the pure transition (`rollout.machine`), store the next record. The gate sensor runs
`tick`; jobs and the CLI `report` what they did. Nothing here decides: the machine does."""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import workloads
from llm_rollout.k8s.cluster import ClusterClient, ClusterError, NotFound
from llm_rollout.k8s.history import History, ReleaseHistory
from llm_rollout.k8s.router_traffic import RouterTraffic
from llm_rollout.monitoring.chart import window_chart
from llm_rollout.monitoring.gate import Measurement, Outcome, Verdict, judge, summary, worst
from llm_rollout.monitoring.prometheus import PrometheusFailed, measure, measure_range
from llm_rollout.monitoring.quality import (
    QualityError,
    QualityLimits,
    VllmEndpoint,
    collect,
    compare,
    judge_quality,
    load_prompts,
)
from llm_rollout.monitoring.queries import (
    Query,
    TrackSource,
    chart_queries,
    gate_queries,
    track_queries,
)
from llm_rollout.rollout import machine
from llm_rollout.rollout.machine import (
    Event,
    Facts,
    Launch,
    Phase,
    Rollout,
    RolloutRecord,
    RunState,
)
from llm_rollout.rollout.store import RecordChanged, RolloutStore
from llm_rollout.rollout.traffic import traffic_for
from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.schema import version_numbers

RunLookup = Callable[[str], tuple[RunState, str]]  # run key → its state and error
log = logging.getLogger(__name__)


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
    quality_rows = stored.quality
    if machine.judgment_due(spec, stored, at) and (
        stored.phase is Phase.BAKING or facts.canary == stored.release_id
    ):
        verdict = measure_window(spec, stored, history, metrics)
        if stored.phase is not Phase.BAKING:
            chart = chart_window(spec, stored, history, metrics)
            if spec.quality is not None:
                verdict, quality_rows = with_quality(spec, cluster, stored, history, verdict)
    transition = machine.tick(spec, stored, facts, verdict, at)
    if quality_rows != stored.quality and transition.record.release_id == stored.release_id:
        transition = replace(transition, record=replace(transition.record, quality=quality_rows))
    if transition.record != stored:
        try:
            store.replace(stored, transition.record)
        except RecordChanged:
            return Step(store.read())  # a job reported meanwhile: the next tick decides
    route_traffic(spec, cluster, transition.record, history)
    return Step(transition.record, transition.launches, verdict, chart)


def report(spec: ReleaseSpec, cluster: ClusterClient, event: Event) -> RolloutRecord:
    """Store what a job or a person did (the machine turns it into the next record)."""
    record = RolloutStore(cluster, spec).update(
        lambda record: machine.report(spec, record, event, time.time())
    )
    try:
        route_traffic(spec, cluster, record)
    except ClusterError as error:  # the record stands; the next tick writes the router's config
        log.warning("could not update the router of %s: %s", spec.name, error)
    return record


def route_traffic(
    spec: ReleaseSpec, cluster: ClusterClient, record: RolloutRecord, history: History | None = None
) -> None:
    """Tell the model's router what the stored record's phase calls for (rollout.traffic);
    called with every stored record and every tick, it writes only what changed. Nothing
    for a spec without `routing:`."""
    if spec.routing is None:
        return
    router = RouterTraffic(cluster, spec)
    stable = (history or ReleaseHistory(cluster, spec).read()).stable
    traffic = traffic_for(spec, record, stable, router.serving_weights())
    if traffic.weights:
        router.write(traffic.weights, traffic.degraded, traffic.shadow)


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
        name = names.workload_name(spec, history.canary)
        with contextlib.suppress(NotFound):  # recorded, but its Deployment is gone
            status = cluster.rollout_status(
                name,
                spec.namespace,
                workloads.kind_for(spec),
                spec.rollout.progress_deadline_seconds,
            )
            canary_rollout = Rollout(status.phase, status.reason, status.unschedulable)
    run, error = RunState.NONE, ""
    if record.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        run, error = runs(record.run_key())
    return Facts(history.stable, history.canary, canary_rollout, run, error)


def track(history: History, label: str, release_id: str | None) -> TrackSource:
    """A track's pods and the vLLM version its release runs."""
    record = history.find(release_id) if release_id else None
    # releases recorded before their version was: the spec's (queries fall back to it)
    version = version_numbers(record.vllm_version) if record and record.vllm_version else None
    return TrackSource(label, release_id or "", version)


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


def with_quality(
    spec: ReleaseSpec,
    cluster: ClusterClient,
    record: RolloutRecord,
    history: History,
    verdict: Verdict,
) -> tuple[Verdict, list[list[object]]]:
    """The window's verdict with the quality gate's measurements in it: measured now (the
    first time, or every window when the spec says so), else the ones stored for this
    canary. An unreachable pod or unusable prompt file is an Error (measured again next
    window); the rows to store come back with the verdict."""
    quality = spec.quality
    assert quality is not None
    rows = record.quality
    if not rows or quality.every_window:
        try:
            measured = measure_quality(spec, cluster, record, history)
        except QualityError as error:
            measured = [
                Measurement("quality", None, None, "golden prompts", Outcome.ERROR, str(error))
            ]
        errored = any(m.outcome is Outcome.ERROR for m in measured)
        rows = [] if errored else [_row(m) for m in measured]
    else:
        measured = [_measurement(row) for row in rows]
    measurements = [*verdict.measurements, *measured]
    window = worst(m.outcome for m in measurements)
    reason = verdict.reason if window is verdict.window else summary(window, measurements)
    return replace(verdict, window=window, reason=reason, measurements=measurements), rows


def measure_quality(
    spec: ReleaseSpec, cluster: ClusterClient, record: RolloutRecord, history: History
) -> list[Measurement]:
    """Send the golden prompts to one ready canary pod and one ready stable pod."""
    quality = spec.quality
    assert quality is not None
    prompts = load_prompts(Path(quality.prompts))
    urls = [
        ready_pod_url(cluster, spec, track, release)
        for track, release in (("canary", record.release_id), ("stable", history.stable))
    ]
    key = api_key(spec, cluster)
    canary, stable = (
        VllmEndpoint(url, spec.served_model_name, quality.seed, quality.max_tokens, key)
        for url in urls
    )
    limits = QualityLimits(
        quality.min_agreement,
        quality.max_logprob_drift,
        quality.max_expectation_drop,
        quality.allow_prompt_change,
    )
    return judge_quality(limits, compare(collect(prompts, canary, stable)))


def api_key(spec: ReleaseSpec, cluster: ClusterClient) -> str | None:
    """The key vLLM requires of clients (the optional Secret '<model>-api-key' its pods read,
    k8s.manifests); None without the Secret. The gate's RBAC may read that one Secret."""
    try:
        secret = cluster.find("Secret", names.api_key_secret_name(spec), spec.namespace)
    except ClusterError as error:
        raise QualityError(f"cannot read the model's API key Secret: {error}") from error
    encoded = ((secret or {}).get("data") or {}).get(names.API_KEY_SECRET_KEY)
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode().strip() or None
    except (ValueError, UnicodeDecodeError) as error:
        raise QualityError(
            f"Secret {names.api_key_secret_name(spec)}: '{names.API_KEY_SECRET_KEY}' is not "
            "base64 text"
        ) from error


def ready_pod_url(
    cluster: ClusterClient, spec: ReleaseSpec, track: str, release: str | None
) -> str:
    """The address of a ready pod of the track's release (pods are asked directly, not
    through the Service, so each answer is known to come from its track)."""
    if not release:
        raise QualityError(f"{spec.name} has no {track} release to send prompts to")
    selector = f"app.kubernetes.io/name={spec.name},{names.RELEASE}={release}"
    for pod in cluster.list_objects("Pod", spec.namespace, selector):
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            return f"http://{status['podIP']}:{names.HTTP_PORT}"
    raise QualityError(f"no ready {track} pod of {release} to send prompts to")


def _row(m: Measurement) -> list[object]:
    return [m.name, m.canary, m.stable, m.threshold, m.outcome.value, m.reason]


def _measurement(row: list[object]) -> Measurement:
    name, canary, stable, threshold, outcome, reason = row
    return Measurement(
        str(name),
        float(canary) if isinstance(canary, int | float) else None,
        float(stable) if isinstance(stable, int | float) else None,
        str(threshold),
        Outcome(str(outcome)),
        f"{reason} (measured once for this canary)",
    )
