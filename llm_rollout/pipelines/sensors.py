"""Sensors: the release controller of every model (`<model>_gate`) and the watch on runs
that fail after changing the cluster. Neither trusts its cursor: every tick re-reads the
controller's record in the cluster, and the runs it asks for are keyed by the record's run key,
so a restarted daemon asks again and Dagster launches each run once."""

from __future__ import annotations

import dagster as dg

from llm_rollout.assets.naming import group_name
from llm_rollout.assets.release import RELEASE_TAG, STEP_TAG, deploy_tags, gate_evaluation
from llm_rollout.k8s.history import ReleaseHistory
from llm_rollout.pipelines.jobs import ModelJobs, job_name
from llm_rollout.pipelines.resources import KubernetesCluster, PrometheusServer
from llm_rollout.rollout import controller
from llm_rollout.rollout.machine import ActionFailed, RunState
from llm_rollout.spec import ReleaseSpec

ACTIVE = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.MANAGED,
}


def rollback_config(spec: ReleaseSpec, reason: str) -> dict[str, object]:
    return {"ops": {f"{group_name(spec)}__rollback": {"config": {"reason": reason[:500]}}}}


def run_lookup(instance: dg.DagsterInstance) -> controller.RunLookup:
    """The state of the run carrying out a controller step, found by its step tag."""

    def lookup(run_key: str) -> tuple[RunState, str]:
        runs = instance.get_runs(dg.RunsFilter(tags={STEP_TAG: run_key}), limit=1)
        if not runs:
            return RunState.NONE, ""
        run = runs[0]
        if run.status == dg.DagsterRunStatus.SUCCESS:
            return RunState.SUCCEEDED, ""
        if run.status in ACTIVE:
            return RunState.ACTIVE, ""
        return RunState.FAILED, f"run {run.run_id} ended {run.status.value}"

    return lookup


def build_gate_sensor(spec: ReleaseSpec, jobs: ModelJobs) -> dg.SensorDefinition:
    """`<model>_gate`: one release-controller step every `gate.interval_seconds`."""

    @dg.sensor(
        name=job_name(spec, "gate"),
        minimum_interval_seconds=spec.gate.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[jobs.promote, jobs.rollback],
        description=(
            f"The release controller of `{spec.name}`, every {spec.gate.interval_seconds}s: "
            f"waits for a canary to be ready, judges canary vs stable over {spec.gate.window}, "
            "records each window on the release's gate check, launches the promotion it "
            f"decides, bakes the promoted release for {spec.gate.bake_seconds}s, and rolls "
            "back on failing windows, a stalled canary, a failed promotion, a failed bake, or "
            "gating or holding past the spec's limits. Its phase is stored in the cluster."
        ),
    )
    def gate(
        context: dg.SensorEvaluationContext,
        kubernetes: KubernetesCluster,
        prometheus: PrometheusServer,
    ) -> dg.SensorResult:
        step = controller.tick(
            spec, kubernetes.client(), prometheus.metrics(), run_lookup(context.instance)
        )
        record = step.record
        summary = f"{record.release_id or spec.name}: {record.phase.value}: {record.reason}"
        context.log.info(summary)
        events = [gate_evaluation(spec, record, step.verdict, step.chart)] if step.verdict else []
        requests = []
        for launch in step.launches:
            tags = {**deploy_tags(spec), RELEASE_TAG: launch.release_id, STEP_TAG: launch.run_key}
            if launch.job == "promote":
                requests.append(
                    dg.RunRequest(run_key=launch.run_key, job_name=jobs.promote.name, tags=tags)
                )
            else:
                requests.append(
                    dg.RunRequest(
                        run_key=launch.run_key,
                        job_name=jobs.rollback.name,
                        run_config=rollback_config(
                            spec, f"controller rolled back {launch.release_id}: {launch.reason}"
                        ),
                        tags=tags,
                    )
                )
        if not requests:
            return dg.SensorResult(skip_reason=summary[:1000], asset_events=events)
        return dg.SensorResult(run_requests=requests, asset_events=events)

    return gate


def build_failure_sensor(specs: list[ReleaseSpec]) -> dg.SensorDefinition:
    """Report to the release controller a model's run that failed after it applied a
    release; the controller then rolls back (its gate sensor launches the run)."""
    by_name = {spec.name: spec for spec in specs}

    @dg.run_failure_sensor(
        name="rollback_failed_rollouts",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "A run (the rollout job, Materialize all, a selection) that failed after applying "
            "a release is reported to that model's release controller, which rolls back to "
            "the previous stable release; one that failed before any cluster write is left "
            "alone."
        ),
    )
    def rollback_failed_rollouts(
        context: dg.RunFailureSensorContext, kubernetes: KubernetesCluster
    ) -> dg.SkipReason:
        run = context.dagster_run
        spec = by_name.get(run.tags.get("llm-rollout/model", ""))
        if spec is None:
            return dg.SkipReason(f"run {run.run_id} names no known model")
        cluster = kubernetes.client()
        history = ReleaseHistory(cluster, spec).read()
        touched = history.recorded_by(run.run_id)
        if not touched:
            return dg.SkipReason(
                f"{run.run_id} failed before changing the cluster: nothing to roll back"
            )
        release_id = touched[-1].release_id
        if history.stable in (None, release_id) and history.releases[0].release_id == release_id:
            return dg.SkipReason(
                f"{run.run_id} failed installing {spec.name}'s first release: there is no "
                "earlier release to return to; left in place for inspection"
            )
        error = context.failure_event.message or "run failed"
        record = controller.report(
            spec,
            cluster,
            ActionFailed(release_id, f"run {run.run_id} failed: {error}"[:400], "start"),
        )
        return dg.SkipReason(
            f"reported to the release controller: {release_id} is {record.phase.value} "
            f"({record.reason[:300]})"
        )

    return rollback_failed_rollouts
