"""The refresh schedule of every model with `refresh.cron`: resolve the upstream revision
and, when its commit is new, roll it out (`auto_rollout`) or just fetch and verify it."""

from __future__ import annotations

import dagster as dg

from llm_rollout.assets.naming import asset_key, group_name
from llm_rollout.assets.release import MODEL_TAG
from llm_rollout.k8s.cluster import ClusterError
from llm_rollout.k8s.history import ReleaseHistory
from llm_rollout.pipelines.jobs import ModelJobs, job_name
from llm_rollout.pipelines.resources import KubernetesCluster, WeightsStore
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.errors import WeightsError


def last_commit(instance: dg.DagsterInstance, spec: ReleaseSpec) -> str | None:
    """The commit of the model's latest weights materialization."""
    event = instance.get_latest_materialization_event(asset_key(spec, "weights"))
    materialization = event.asset_materialization if event else None
    if materialization is None or "commit" not in materialization.metadata:
        return None
    return str(materialization.metadata["commit"].value)


def rejected_release(spec: ReleaseSpec, kubernetes: KubernetesCluster, commit: str) -> str:
    """Why `commit` must not be rolled out automatically ("" when it may): the release
    controller rolled back a release of it (only a person launches it again), or the
    release history cannot be read (fail closed)."""
    try:
        history = ReleaseHistory(kubernetes.client(), spec).read()
    except ClusterError as error:
        return f"cannot read {spec.name}'s release history, not rolling out: {error}"
    for record in history.releases:
        if record.weights_commit == commit and record.rejected:
            return (
                f"{commit[:12]} was rolled back automatically as {record.release_id} "
                f"({record.rejected[:200]}); launch {job_name(spec, 'rollout')} by hand to retry"
            )
    return ""


def build_refresh_schedule(spec: ReleaseSpec, jobs: ModelJobs) -> dg.ScheduleDefinition:
    """`<model>_refresh` on `refresh.cron` (UTC)."""
    assert spec.refresh.cron is not None
    target = jobs.rollout if spec.refresh.auto_rollout else jobs.refresh_weights

    @dg.schedule(
        name=job_name(spec, "refresh"),
        cron_schedule=spec.refresh.cron,
        execution_timezone="UTC",
        job=target,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Resolve `{spec.source.repo}@{spec.source.revision}`; when the commit changed, "
            + ("roll it out." if spec.refresh.auto_rollout else "fetch and verify it.")
        ),
    )
    def refresh(
        context: dg.ScheduleEvaluationContext,
        weights_store: WeightsStore,
        kubernetes: KubernetesCluster,
    ) -> dg.RunRequest | dg.SkipReason:
        try:
            commit = weights_store.hub().resolve(spec.source.repo, spec.source.revision)
        except WeightsError as error:
            return dg.SkipReason(f"cannot resolve {spec.source.repo}: {error}")
        known = last_commit(context.instance, spec)
        if commit == known:
            return dg.SkipReason(f"{spec.source.revision} is still {commit[:12]}: nothing new")
        if spec.refresh.auto_rollout:
            rejected = rejected_release(spec, kubernetes, commit)
            if rejected:
                return dg.SkipReason(rejected)
        return dg.RunRequest(
            run_key=f"{spec.name}:{commit}",
            run_config={"ops": {f"{group_name(spec)}__weights": {"config": {"revision": commit}}}},
            tags={**target.tags, MODEL_TAG: spec.name, "llm-rollout/commit": commit},
        )

    return refresh
