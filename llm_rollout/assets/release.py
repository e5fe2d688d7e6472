"""The release assets of a model: `release` (the newest release applied to the cluster, as a
canary beside stable, or rolled out) and `live` (the release every user is served: stable),
plus the `gate` check on the release that the gate sensor reports into.

No `from __future__ import annotations`: Dagster reads the context annotation at load.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from llm_rollout.assets.naming import asset_key, group_name
from llm_rollout.assets.versions import release_version
from llm_rollout.k8s import workloads
from llm_rollout.k8s.cluster import ClusterError, RolloutStatus
from llm_rollout.k8s.history import History, ReleaseHistory, UnknownRelease
from llm_rollout.k8s.lifecycle import Lifecycle, release_of
from llm_rollout.k8s.lock import DeployLock
from llm_rollout.k8s.release import Release
from llm_rollout.monitoring.gate import Outcome, Verdict
from llm_rollout.pipelines.resources import KubernetesCluster, PrometheusServer
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import (
    ActionFailed,
    Installed,
    Override,
    Phase,
    Promoted,
    RolledBack,
    RolledOut,
    RolloutRecord,
    Started,
    may_promote,
)
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec

MODEL_TAG = "llm-rollout/model"
RELEASE_TAG = "llm-rollout/release"
# The controller's run key of the promote or rollback a run carries out: the gate sensor
# finds the run by it, whoever launched it.
STEP_TAG = "llm-rollout/step"
OVERRIDE_TAG = "llm-rollout/override-reason"
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
            f"The newest release of `{spec.name}` (weights + image + serving config), "
            + (
                f"started as a {spec.rollout.canary_replicas}-pod canary that the release "
                "controller promotes or rolls back."
                if strategy == "canary"
                else "its Deployment scaled up as the old release's is scaled down, with zero "
                "unavailable pods."
            )
        ),
        owners=spec.owners,
        code_version=release_version(spec),
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
                metadata=live_metadata(after, before.stable, lifecycle),
            )

    return release


def apply_release(
    context: dg.AssetExecutionContext, lifecycle: Lifecycle, candidate: Release, history: History
) -> str:
    """Apply a release the way the model's state (`history`, read under the deploy lock)
    calls for, reporting each step to the release controller; the phase it is left in."""
    spec, cluster = lifecycle.spec, lifecycle.cluster
    release_id = candidate.release_id
    name = lifecycle.workload_name(release_id)
    if history.stable == release_id:
        return "already stable: nothing to change"
    if history.stable is None:
        lifecycle.first_release(candidate)
        wait_complete(context, lifecycle, name, "the first release")
        controller.report(spec, cluster, Installed(release_id))
        return "installed as stable (first release: nothing to compare a canary with)"
    if spec.rollout.strategy == "canary":
        lifecycle.start_canary(candidate)
        controller.report(spec, cluster, Started(release_id, history.stable, "canary"))
        return "canary started; the release controller gates it"
    controller.report(spec, cluster, Started(release_id, history.stable, "rolling"))
    status = lifecycle.roll(candidate, logged_polls(context.log, name))
    if status.phase != "complete":
        # the controller rolls back to the previous stable (its sensor launches the run)
        error = f"the rolling update did not complete: {status.reason}"
        controller.report(spec, cluster, ActionFailed(release_id, error, "start"))
        raise dg.Failure(
            description=f"{error}; the release controller rolls back to {history.stable}",
            allow_retries=False,
        )
    controller.report(spec, cluster, RolledOut(release_id))
    return "rolled out as stable; the release controller bakes it"


def wait_complete(
    context: dg.AssetExecutionContext, lifecycle: Lifecycle, name: str, what: str
) -> None:
    status = lifecycle.wait(name, logged_polls(context.log, name))
    if status.phase != "complete":
        raise dg.Failure(
            description=f"{what} did not complete: {status.reason}", allow_retries=False
        )


class PromoteConfig(dg.Config):
    """Launchpad options of a promotion. Without them only a canary the release controller
    decided to promote is promoted."""

    override_reason: str = ""  # promote without the gate's decision: why (recorded)


def build_live_asset(spec: ReleaseSpec) -> dg.AssetsDefinition:
    """`<model>/live`: promote the canary to stable, when the release controller says so."""

    @dg.asset(
        key=asset_key(spec, "live"),
        group_name=group_name(spec),
        deps=[asset_key(spec, "release")],
        kinds={"kubernetes"},
        output_required=False,
        description=(
            f"The release serving `{spec.name}`'s users: materialized only by a promotion the "
            "release controller decided, or one by hand with a recorded `override_reason`."
        ),
        owners=spec.owners,
        code_version=release_version(spec),
        tags={MODEL_TAG: spec.name},
    )
    def live(
        context: dg.AssetExecutionContext, config: PromoteConfig, kubernetes: KubernetesCluster
    ) -> Iterator[dg.MaterializeResult]:
        cluster = kubernetes.client()
        lifecycle = Lifecycle(cluster, spec, actor=context.run_id)
        store = RolloutStore(cluster, spec)
        with DeployLock(cluster, spec).held(
            context.run_id, "promotion", run_ended(context.instance)
        ):
            before = lifecycle.history.read()
            record = store.read()
            why_not = may_promote(record, before.canary)
            if why_not and not config.override_reason.strip():
                context.log.warning(
                    f"not promoting: {why_not}. The release controller promotes a canary once "
                    f"its gate passes; to promote anyway, launch {group_name(spec)}_promote with "
                    f"ops.{group_name(spec)}__live.config.override_reason"
                )
                return
            canary = before.canary
            assert canary is not None  # may_promote said why otherwise
            if why_not:
                record = override_promotion(context, cluster, lifecycle, canary, config)
            context.instance.add_run_tags(
                context.run_id, {RELEASE_TAG: canary, STEP_TAG: record.run_key()}
            )
            try:
                status = lifecycle.promote(
                    logged_polls(context.log, lifecycle.workload_name(canary))
                )
            except ClusterError as error:
                controller.report(spec, cluster, ActionFailed(canary, str(error), "promote"))
                raise dg.Failure(
                    description=f"promoting {canary} failed: {error}; the release controller "
                    f"rolls back to {before.stable}",
                    allow_retries=False,
                ) from error
            if status.phase != "complete":
                controller.report(spec, cluster, ActionFailed(canary, status.reason, "promote"))
                raise dg.Failure(
                    description=(
                        f"promoting {canary} stalled ({status.reason}); the release controller "
                        f"rolls back to {before.stable}"
                    ),
                    allow_retries=False,
                )
            controller.report(spec, cluster, Promoted(canary))
            after = lifecycle.history.read()
        yield dg.MaterializeResult(
            metadata=live_metadata(after, before.stable, lifecycle, decided_by=record.decided_by)
        )

    return live


def override_promotion(
    context: dg.AssetExecutionContext,
    cluster: Any,
    lifecycle: Lifecycle,
    canary: str,
    config: PromoteConfig,
) -> RolloutRecord:
    """Record a person's promotion against (or ahead of) the gate: on the run, in the
    release history and in the controller's record."""
    who = f"run {context.run_id[:8]}"
    reason = config.override_reason.strip()
    context.instance.add_run_tags(context.run_id, {OVERRIDE_TAG: reason[:200]})
    lifecycle.history.annotate(canary, decision=f"promote by {who}: {reason}")
    context.log.warning(f"promoting {canary} by hand, overriding the gate: {reason}")
    return controller.report(
        lifecycle.spec, cluster, Override(canary, "promote", by=who, reason=reason)
    )


def live_metadata(
    history: History, previous: str | None, lifecycle: Lifecycle, **extra: Any
) -> dict[str, Any]:
    """What is stable now, what it replaced, and every release Deployment of the model."""
    record = history.previous_stable()
    if record is None:
        raise dg.Failure(description="no stable release is recorded", allow_retries=False)
    return {
        "release_id": record.release_id,
        "weights_commit": record.weights_commit,
        "image": record.image,
        "previous_release_id": previous or "none",
        "deployments": dg.MetadataValue.md(deployments_table(lifecycle, history)),
        **extra,
    }


def deployments_table(lifecycle: Lifecycle, history: History) -> str:
    """The model's release workloads (one per retained release) as a Markdown table; a
    LeaderWorkerSet's replicas are groups."""
    tracks = {history.stable: "stable", history.canary: "canary"}
    rows = ["| workload | track | available / desired |", "|---|---|---|"]
    for workload in lifecycle.workloads():
        name = workload["metadata"]["name"]
        if workload["kind"] != workloads.DEPLOYMENT:
            name = f"{name} ({workload['kind']})"
        rows.append(
            f"| {name} | {tracks.get(release_of(workload), 'idle')} | "
            f"{workloads.available(workload)} / {workloads.replicas(workload)} |"
        )
    return "\n".join(rows)


class RollbackConfig(dg.Config):
    """Launchpad options of a rollback: why (required, recorded) and, optionally, which
    recorded release to restore."""

    reason: str  # why: recorded in the release history and shown by `llm-rollout status`
    release_id: str | None = None  # a recorded release id; unset: the one before the newest


def build_rollback_op(spec: ReleaseSpec) -> dg.OpDefinition:
    """Drop the canary and restore the previous stable release (or a chosen one) exactly."""

    @dg.op(
        name=f"{group_name(spec)}__rollback",
        description=(
            f"Shift `{spec.name}` back to a recorded release (default: the stable release "
            "before the newest one): its retained Deployment scaled up, or re-created exactly "
            "from the history; the canary's scaled to zero."
        ),
        tags={MODEL_TAG: spec.name},
    )
    def rollback(
        context: dg.OpExecutionContext, config: RollbackConfig, kubernetes: KubernetesCluster
    ) -> None:
        cluster = kubernetes.client()
        lifecycle = Lifecycle(cluster, spec, actor=context.run_id)
        store = RolloutStore(cluster, spec)
        step = context.run.tags.get(STEP_TAG)  # set when the controller launched this run
        context.log.info(f"rolling back {spec.name}: {config.reason}")
        try:
            with DeployLock(cluster, spec).held(
                context.run_id, "rollback", run_ended(context.instance)
            ):
                before = lifecycle.history.read()
                record = store.read()
                if step and (record.phase is not Phase.ROLLING_BACK or record.run_key() != step):
                    context.log.info(
                        f"nothing to do: the controller's record moved on ({record.release_id} "
                        f"is {record.phase.value}: {record.reason})"
                    )
                    return
                if not step:
                    record = hand_rollback(context, cluster, lifecycle, record, config.reason)
                target = config.release_id or rollback_target(record, before)
                try:
                    status = lifecycle.rollback(
                        target, logged_polls(context.log, lifecycle.workload_name(target or ""))
                    )
                except ClusterError as error:
                    controller.report(
                        spec, cluster, ActionFailed(record.release_id, str(error), "rollback")
                    )
                    raise
                if status.phase != "complete":
                    controller.report(
                        spec, cluster, ActionFailed(record.release_id, status.reason, "rollback")
                    )
                    raise dg.Failure(
                        description=f"the rollback did not complete: {status.reason}",
                        allow_retries=False,
                    )
                if record.release_id:
                    controller.report(spec, cluster, RolledBack(record.release_id))
                    if step:  # decided by the controller: not launched again automatically
                        lifecycle.history.annotate(record.release_id, rejected=config.reason)
                after = lifecycle.history.read()
        except (UnknownRelease, ClusterError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        context.log_event(
            dg.AssetMaterialization(
                asset_key=asset_key(spec, "live"),
                description=f"rolled back: {config.reason}",
                metadata=live_metadata(
                    after,
                    before.stable,
                    lifecycle,
                    aborted_canary=before.canary or "none",
                    reason=config.reason,
                ),
            )
        )

    return rollback


def rollback_target(record: RolloutRecord, history: History) -> str | None:
    """What a rollback restores: the stable release before the record's, once the record's
    release may already be stable (promoting, baking, done, or a rollback from any of
    them); else stable (the canary goes)."""
    may_be_stable = (Phase.PROMOTING, Phase.BAKING, Phase.DONE, Phase.ROLLING_BACK)
    if record.previous and record.phase in may_be_stable:
        return record.previous
    return history.stable


def hand_rollback(
    context: dg.OpExecutionContext,
    cluster: Any,
    lifecycle: Lifecycle,
    record: RolloutRecord,
    reason: str,
) -> RolloutRecord:
    """Record a person's rollback (always allowed) on the run, the history and the record."""
    who = f"run {context.run_id[:8]}"
    context.instance.add_run_tags(context.run_id, {OVERRIDE_TAG: reason[:200]})
    if not record.release_id:
        return record
    lifecycle.history.annotate(record.release_id, decision=f"rollback by {who}: {reason}")
    return controller.report(
        lifecycle.spec, cluster, Override(record.release_id, "rollback", by=who, reason=reason)
    )


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
        cluster = kubernetes.client()
        history = ReleaseHistory(cluster, spec).read()
        record = RolloutStore(cluster, spec).read()
        if not record.phase.judged:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"nothing to judge: {record.release_id or spec.name} is "
                f"{record.phase.value}",
            )
        verdict = controller.measure_window(spec, record, history, prometheus.metrics())
        evaluation = gate_evaluation(spec, record, verdict)
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata=evaluation.metadata,
        )

    return gate


def gate_evaluation(
    spec: ReleaseSpec, record: RolloutRecord, verdict: Verdict, chart: str = ""
) -> dg.AssetCheckEvaluation:
    """A judged window as the gate check's result: every value against its limit, and the
    phase the controller is in after it. Holding and rolling back are errors (they alert)."""
    rows = ["| metric | canary | stable | limit | outcome |", "|---|---|---|---|---|"]
    numbers: dict[str, Any] = {}
    for m in verdict.measurements:
        rows.append(
            f"| {m.name} | {_fmt(m.canary)} | {_fmt(m.stable)} | {m.threshold} | "
            f"{m.outcome.value}: {_cell(m.reason)} |"
        )
        if m.canary is not None and m.canary == m.canary:  # plotted in the UI; NaN is not
            numbers[f"canary_{m.name}"] = dg.MetadataValue.float(m.canary)
    queries = "\n".join(f"{q.metric}/{q.track}: {q.promql}" for q in verdict.queries)
    alarming = verdict.window is Outcome.FAIL or record.phase in (
        Phase.HOLDING,
        Phase.ROLLING_BACK,
    )
    return dg.AssetCheckEvaluation(
        asset_key=asset_key(spec, "release"),
        check_name=GATE_CHECK,
        passed=verdict.window is Outcome.PASS,
        severity=dg.AssetCheckSeverity.ERROR if alarming else dg.AssetCheckSeverity.WARN,
        description=f"{record.phase.value}: {record.reason}",
        metadata={
            "release_id": record.release_id,
            "phase": record.phase.value,
            "window": verdict.window.value,
            "window_reason": verdict.reason,
            "passes_in_a_row": record.passes,
            "failures_in_a_row": record.failures,
            "errors_in_a_row": record.errors,
            "measurements": dg.MetadataValue.md("\n".join(rows)),
            # the same outcomes for scripts and alerts: measurement → Pass/Fail/…
            "outcomes": dg.MetadataValue.json(
                {m.name: m.outcome.value for m in verdict.measurements}
            ),
            "queries": dg.MetadataValue.text(queries),
            **({"chart": dg.MetadataValue.md(f"```\n{chart}\n```")} if chart else {}),
            **numbers,
        },
    )


def _cell(text: str) -> str:
    """Text safe in one Markdown table cell (a quality row quotes model answers)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return "NaN" if value != value else f"{value:.4g}"
