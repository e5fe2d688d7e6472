"""Sensors: the gate of every model (promote or roll back a canary), and the rollback of
rollouts that failed after changing the cluster. Neither trusts its cursor: every tick
re-reads the cluster, and the runs it asks for are keyed by release and decision, so a
restarted daemon asks again and Dagster launches each run once."""

from __future__ import annotations

import dagster as dg

from assets.naming import group_name
from assets.release import RELEASE_TAG, deploy_tags, gate_evaluation
from k8s.history import ReleaseHistory
from pipelines.jobs import ModelJobs, job_name
from pipelines.resources import KubernetesCluster, PrometheusServer
from rollout.controller import Action, step
from spec import ReleaseSpec


def rollback_config(spec: ReleaseSpec, reason: str) -> dict[str, object]:
    return {"ops": {f"{group_name(spec)}__rollback": {"config": {"reason": reason}}}}


def build_gate_sensor(spec: ReleaseSpec, jobs: ModelJobs) -> dg.SensorDefinition:
    """`<model>_gate`: judge the canary every `gate.interval_seconds`."""

    @dg.sensor(
        name=job_name(spec, "gate"),
        minimum_interval_seconds=spec.gate.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[jobs.promote, jobs.rollback],
        description=(
            f"Every {spec.gate.interval_seconds}s while `{spec.name}` has a canary: wait for it "
            f"to be ready, judge canary vs stable over {spec.gate.window}, record the verdict on "
            "the release's gate check, and launch promote or rollback when the gate decides. "
            "A canary whose rollout stalls is rolled back."
        ),
    )
    def gate(
        context: dg.SensorEvaluationContext,
        kubernetes: KubernetesCluster,
        prometheus: PrometheusServer,
    ) -> dg.SensorResult:
        result = step(spec, kubernetes.client(), prometheus.metrics())
        context.log.info(f"{result.phase.value}: {result.reason}")
        events = (
            [gate_evaluation(spec, result.release_id or "", result.verdict, result.chart)]
            if result.verdict
            else []
        )
        tags = {**deploy_tags(spec), RELEASE_TAG: result.release_id or ""}
        if result.action is Action.PROMOTE:
            run = dg.RunRequest(
                run_key=f"{result.release_id}:promote", job_name=jobs.promote.name, tags=tags
            )
        elif result.action is Action.ROLLBACK:
            run = dg.RunRequest(
                run_key=f"{result.release_id}:rollback",
                job_name=jobs.rollback.name,
                run_config=rollback_config(
                    spec, f"gate rejected {result.release_id}: {result.reason}"
                ),
                tags=tags,
            )
        else:
            return dg.SensorResult(
                skip_reason=f"{result.phase.value}: {result.reason}", asset_events=events
            )
        return dg.SensorResult(run_requests=[run], asset_events=events)

    return gate


def build_failure_sensor(
    specs: list[ReleaseSpec], jobs: dict[str, ModelJobs]
) -> dg.SensorDefinition:
    """Roll back a model whose rollout run failed after it recorded a release in the cluster."""
    by_name = {spec.name: spec for spec in specs}

    @dg.run_failure_sensor(
        name="rollback_failed_rollouts",
        monitored_jobs=[j.rollout for j in jobs.values()],
        request_jobs=[j.rollback for j in jobs.values()],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "A rollout run that failed after changing the cluster is rolled back to the last "
            "stable release; one that failed before any cluster write is left alone."
        ),
    )
    def rollback_failed_rollouts(
        context: dg.RunFailureSensorContext, kubernetes: KubernetesCluster
    ) -> dg.RunRequest | dg.SkipReason:
        run = context.dagster_run
        spec = by_name.get(run.tags.get("llm-rollout/model", ""))
        if spec is None:
            return dg.SkipReason(f"run {run.run_id} names no known model")
        history = ReleaseHistory(kubernetes.client(), spec).read()
        touched = history.recorded_by(run.run_id)
        if not touched:
            return dg.SkipReason(
                f"{run.run_id} failed before changing the cluster: nothing to roll back"
            )
        if history.stable is None or history.stable == touched[-1].release_id:
            return dg.SkipReason(
                f"{run.run_id} failed installing {spec.name}'s first release: there is no "
                "earlier release to return to; left in place for inspection"
            )
        error = context.failure_event.message or "run failed"
        reason = f"rollout run {run.run_id} failed after applying {touched[-1].release_id}: {error}"
        return dg.RunRequest(
            run_key=f"{run.run_id}:rollback",
            job_name=jobs[spec.name].rollback.name,
            run_config=rollback_config(spec, reason[:500]),
            tags={**deploy_tags(spec), RELEASE_TAG: touched[-1].release_id},
        )

    return rollback_failed_rollouts
