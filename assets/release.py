"""The release assets of a model: `release` (the newest release applied to the cluster, as a
canary beside stable, or rolled out) and `live` (the release every user is served: stable),
plus the `gate` check on the release that the gate sensor reports into.

No `from __future__ import annotations`: Dagster reads the context annotation at load.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from assets.naming import asset_key, group_name
from k8s.cluster import ClusterError, RolloutStatus
from k8s.history import History, ReleaseHistory, UnknownRelease
from k8s.lifecycle import Lifecycle
from k8s.lock import DeployLock
from k8s.release import Release
from monitoring.gate import Outcome, Verdict
from pipelines.resources import KubernetesCluster, PrometheusServer
from rollout.controller import judge_window
from rollout.gate_store import GateRecord
from spec import ReleaseSpec

MODEL_TAG = "llm-rollout/model"
RELEASE_TAG = "llm-rollout/release"
# Runs with this tag change a model's Deployments; dagster.yaml lets one run per value at a time.
DEPLOY_TAG = "llm-rollout/deploy"
GATE_CHECK = "gate"
LOG_POLL_EVERY = 5  # rollout polls (2 s apart) between log lines


def deploy_tags(spec: ReleaseSpec) -> dict[str, str]:
    """Tags of every run that changes the model's Deployments (queued one at a time)."""
    return {MODEL_TAG: spec.name, DEPLOY_TAG: spec.name}


def run_ended(instance: dg.DagsterInstance) -> Callable[[str], bool]:
    """Whether the run holding a deploy lock is over (failed, crashed, or gone)."""

    def ended(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    return ended


def logged_polls(log: dg.DagsterLogManager, name: str) -> Callable[[RolloutStatus], None]:
    """An `on_poll` that writes a rollout's progress to the run log now and then."""
    polls = [0]

    def on_poll(status: RolloutStatus) -> None:
        if polls[0] % LOG_POLL_EVERY == 0 or status.done:
            log.info(f"{name}: {status.phase} — {status.reason}")
        polls[0] += 1

    return on_poll


def upstream_value(context: dg.AssetExecutionContext, key: dg.AssetKey, field: str) -> str:
    """A metadata value of an upstream asset's latest materialization."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None or field not in materialization.metadata:
        raise dg.Failure(
            description=f"{key.to_user_string()} was never materialized; run the rollout job",
            allow_retries=False,
        )
    return str(materialization.metadata[field].value)


def release_metadata(release: Release) -> dict[str, Any]:
    return {
        "release_id": release.release_id,
        "weights_commit": release.weights_commit,
        "image": release.image,
        "weights_path": release.weights_subpath,
    }


def build_release_asset(spec: ReleaseSpec) -> dg.AssetsDefinition:
    """`<model>/release`: apply the newest weights and image as a release."""
    strategy = spec.rollout.strategy

    @dg.asset(
        key=asset_key(spec, "release"),
        group_name=group_name(spec),
        deps=[asset_key(spec, "weights"), asset_key(spec, "image")],
        kinds={"kubernetes", "vllm"},
        description=(
            f"The newest release of `{spec.name}` (weights commit + image + serving config), "
            + (
                f"started as a {spec.rollout.canary_replicas}-pod canary beside stable; the gate "
                "sensor compares it with stable and promotes or rolls it back."
                if strategy == "canary"
                else "rolled out over stable with zero unavailable pods."
            )
            + " The first release of a model is installed as stable directly."
        ),
        tags={MODEL_TAG: spec.name},
    )
    def release(
        context: dg.AssetExecutionContext, kubernetes: KubernetesCluster
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
        commit = upstream_value(context, asset_key(spec, "weights"), "commit")
        image = upstream_value(context, asset_key(spec, "image"), "pinned")
        candidate = Release(spec, commit, image)
        context.instance.add_run_tags(context.run_id, {RELEASE_TAG: candidate.release_id})
        cluster = kubernetes.client()
        lifecycle = Lifecycle(cluster, spec, actor=context.run_id)
        purpose = f"rollout of {candidate.release_id}"
        try:
            with DeployLock(cluster, spec).held(
                context.run_id, purpose, run_ended(context.instance)
            ):
                before = lifecycle.history.read()
                phase = apply_release(context, lifecycle, candidate, before)
                after = lifecycle.history.read()
        except ClusterError as error:  # nothing retried: the failure sensor decides
            raise dg.Failure(description=str(error), allow_retries=False) from error
        context.log.info(f"{candidate.release_id}: {phase}")
        yield dg.MaterializeResult(
            metadata={**release_metadata(candidate), "strategy": strategy, "phase": phase},
            data_version=dg.DataVersion(candidate.release_id),
        )
        if after.stable == candidate.release_id != before.stable:  # installed or rolled out
            # After the release's own event: `live` has no data provenance, so the UI calls it
            # "Unsynced" when its upstream `release` was materialized later than it.
            yield dg.AssetMaterialization(
                asset_key=asset_key(spec, "live"),
                description=phase,
                metadata=live_metadata(after, before.stable),
            )

    return release


def apply_release(
    context: dg.AssetExecutionContext, lifecycle: Lifecycle, candidate: Release, history: History
) -> str:
    """Apply a release the way the model's state (`history`, read under the deploy lock)
    calls for; the phase it is left in."""
    stable_name = lifecycle.stable_name()
    if history.stable == candidate.release_id:
        return "already stable: nothing to change"
    if history.stable is None:
        lifecycle.first_release(candidate)
        wait_complete(context, lifecycle, stable_name, "the first release")
        return "installed as stable (first release: nothing to compare a canary with)"
    if lifecycle.spec.rollout.strategy == "canary":
        lifecycle.start_canary(candidate)
        return "canary started; the gate sensor decides"
    lifecycle.start_rolling(candidate)
    wait_complete(context, lifecycle, stable_name, "the rolling update")
    lifecycle.history.mark(stable=candidate.release_id)
    return "rolled out as stable"


def wait_complete(
    context: dg.AssetExecutionContext, lifecycle: Lifecycle, name: str, what: str
) -> None:
    status = lifecycle.wait(name, logged_polls(context.log, name))
    if status.phase != "complete":
        raise dg.Failure(
            description=f"{what} did not complete: {status.reason}", allow_retries=False
        )


def build_live_asset(spec: ReleaseSpec) -> dg.AssetsDefinition:
    """`<model>/live`: promote the canary to stable."""

    @dg.asset(
        key=asset_key(spec, "live"),
        group_name=group_name(spec),
        deps=[asset_key(spec, "release")],
        kinds={"kubernetes"},
        description=(
            f"The release every user of `{spec.name}` is served (the stable Deployment). "
            "Materialized by promoting the canary: stable rolls to its release with zero "
            "unavailable pods, then the canary is scaled to zero. A promotion that stalls is "
            "rolled back at once."
        ),
        tags={MODEL_TAG: spec.name},
    )
    def live(
        context: dg.AssetExecutionContext, kubernetes: KubernetesCluster
    ) -> dg.MaterializeResult:
        cluster = kubernetes.client()
        lifecycle = Lifecycle(cluster, spec, actor=context.run_id)
        with DeployLock(cluster, spec).held(
            context.run_id, "promotion", run_ended(context.instance)
        ):
            before = lifecycle.history.read()
            if before.canary is None:
                context.log.info("no canary to promote: reporting the stable release")
            else:
                context.instance.add_run_tags(context.run_id, {RELEASE_TAG: before.canary})
                status = lifecycle.promote(logged_polls(context.log, lifecycle.stable_name()))
                if status.phase != "complete":
                    lifecycle.rollback()
                    raise dg.Failure(
                        description=(
                            f"promoting {before.canary} stalled ({status.reason}); rolled back "
                            f"to {before.stable}"
                        ),
                        allow_retries=False,
                    )
            after = lifecycle.history.read()
        return dg.MaterializeResult(metadata=live_metadata(after, before.stable))

    return live


def live_metadata(history: History, previous: str | None, **extra: Any) -> dict[str, Any]:
    """What is stable now, and what it replaced."""
    record = history.previous_stable()
    if record is None:
        raise dg.Failure(description="no stable release is recorded", allow_retries=False)
    return {
        "release_id": record.release_id,
        "weights_commit": record.weights_commit,
        "image": record.image,
        "previous_release_id": previous or "none",
        **extra,
    }


class RollbackConfig(dg.Config):
    """Launchpad options of a rollback."""

    release_id: str | None = None  # a recorded release id; unset: the last stable one
    reason: str = "launched by hand"


def build_rollback_op(spec: ReleaseSpec) -> dg.OpDefinition:
    """Drop the canary and restore the last stable release (or a chosen one) exactly."""

    @dg.op(
        name=f"{group_name(spec)}__rollback",
        description=(
            f"Scale `{spec.name}`'s canary to zero and re-apply a recorded release (default: "
            "the last stable one) exactly as it was applied."
        ),
        tags={MODEL_TAG: spec.name},
    )
    def rollback(
        context: dg.OpExecutionContext, config: RollbackConfig, kubernetes: KubernetesCluster
    ) -> None:
        cluster = kubernetes.client()
        lifecycle = Lifecycle(cluster, spec, actor=context.run_id)
        context.log.info(f"rolling back {spec.name}: {config.reason}")
        try:
            with DeployLock(cluster, spec).held(
                context.run_id, "rollback", run_ended(context.instance)
            ):
                before = lifecycle.history.read()
                status = lifecycle.rollback(
                    config.release_id, logged_polls(context.log, lifecycle.stable_name())
                )
                after = lifecycle.history.read()
        except (UnknownRelease, ClusterError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        if status.phase != "complete":
            raise dg.Failure(
                description=f"the rollback did not complete: {status.reason}", allow_retries=False
            )
        context.log_event(
            dg.AssetMaterialization(
                asset_key=asset_key(spec, "live"),
                description=f"rolled back: {config.reason}",
                metadata=live_metadata(
                    after,
                    before.stable,
                    aborted_canary=before.canary or "none",
                    reason=config.reason,
                ),
            )
        )

    return rollback


def build_gate_check(spec: ReleaseSpec) -> dg.AssetChecksDefinition:
    """The gate on the release. The sensor reports every judged window here; executing the
    check by hand measures the current window once, without counting it."""

    @dg.asset_check(
        asset=asset_key(spec, "release"),
        name=GATE_CHECK,
        description=(
            f"Canary vs stable over {spec.gate.window}: TTFT and inter-token latency (p99 "
            f"against limits, means at most {spec.gate.max_relative_regression:.0%} above stable), "
            "success rate, KV-cache usage, preemptions. Missing, stale or erroring metrics "
            "never pass."
        ),
    )
    def gate(kubernetes: KubernetesCluster, prometheus: PrometheusServer) -> dg.AssetCheckResult:
        canary = ReleaseHistory(kubernetes.client(), spec).read().canary
        if canary is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description="no canary is running: nothing to judge",
            )
        verdict = judge_window(spec, canary, GateRecord(canary), prometheus.metrics())
        evaluation = gate_evaluation(spec, canary, verdict)
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata=evaluation.metadata,
        )

    return gate


def gate_evaluation(
    spec: ReleaseSpec, release_id: str, verdict: Verdict, chart: str = ""
) -> dg.AssetCheckEvaluation:
    """A judged window as the gate check's result: every value against its limit."""
    rows = ["| metric | canary | stable | limit | outcome |", "|---|---|---|---|---|"]
    numbers: dict[str, Any] = {}
    for m in verdict.measurements:
        rows.append(
            f"| {m.name} | {_fmt(m.canary)} | {_fmt(m.stable)} | {m.threshold} | "
            f"{m.outcome.value}: {m.reason} |"
        )
        if m.canary is not None and m.canary == m.canary:  # plotted in the UI; NaN is not
            numbers[f"canary_{m.name}"] = dg.MetadataValue.float(m.canary)
    queries = "\n".join(f"{q.metric}/{q.track}: {q.promql}" for q in verdict.queries)
    return dg.AssetCheckEvaluation(
        asset_key=asset_key(spec, "release"),
        check_name=GATE_CHECK,
        passed=verdict.window is Outcome.PASS,
        severity=(
            dg.AssetCheckSeverity.ERROR
            if verdict.window is Outcome.FAIL
            else dg.AssetCheckSeverity.WARN
        ),
        description=f"{verdict.decision.value}: {verdict.reason}",
        metadata={
            "release_id": release_id,
            "decision": verdict.decision.value,
            "window": verdict.window.value,
            "passes_in_a_row": verdict.state.passes,
            "failures_in_a_row": verdict.state.failures,
            "errors_in_a_row": verdict.state.errors,
            "measurements": dg.MetadataValue.md("\n".join(rows)),
            "queries": dg.MetadataValue.text(queries),
            **({"chart": dg.MetadataValue.md(f"```\n{chart}\n```")} if chart else {}),
            **numbers,
        },
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return "NaN" if value != value else f"{value:.4g}"
