"""A model's jobs: rollout, promote, rollback and refresh_weights. Jobs that change the
model's Deployments carry the deploy tag; the run queue (dagster.yaml) runs one per model at
a time, and the deploy lock in the cluster holds the line across restarts."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from llm_rollout.assets.fit import FIT_CHECK
from llm_rollout.assets.naming import asset_key, group_name
from llm_rollout.assets.release import MODEL_TAG, build_rollback_op, deploy_tags
from llm_rollout.spec import ReleaseSpec

# A model's steps run one after another (each needs the one before) and hold no big data in
# memory, so one process per run is enough: it saves a Python start-up per step, which is
# most of a rollback's latency.
STEPS_IN_ONE_PROCESS = dg.in_process_executor


@dataclass(frozen=True)
class ModelJobs:
    """The jobs of one model."""

    rollout: dg.UnresolvedAssetJobDefinition
    promote: dg.UnresolvedAssetJobDefinition
    rollback: dg.JobDefinition
    refresh_weights: dg.UnresolvedAssetJobDefinition

    def all(self) -> list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]:
        return [self.rollout, self.promote, self.rollback, self.refresh_weights]


# Run monitoring fails a run that outlives its `dagster/max_runtime` (seconds). A rollout
# includes the weights download (hours for the largest models); promote and rollback wait for
# one Deployment rollout at most (its progress deadline) plus a margin.
ROLLOUT_MAX_RUNTIME_SECONDS = 6 * 3600
DECISION_MARGIN_SECONDS = 600


def max_runtime(seconds: int) -> dict[str, str]:
    return {"dagster/max_runtime": str(seconds)}


def job_name(spec: ReleaseSpec, job: str) -> str:
    """'demo-tiny', 'rollout' → 'demo_tiny_rollout'."""
    return f"{group_name(spec)}_{job}"


def weights_with_check(spec: ReleaseSpec) -> dg.AssetSelection:
    weights = asset_key(spec, "weights")
    return dg.AssetSelection.assets(weights).without_checks() | dg.AssetSelection.checks(
        dg.AssetCheckKey(weights, "manifest_verifies"), dg.AssetCheckKey(weights, FIT_CHECK)
    )


def model_jobs(spec: ReleaseSpec) -> ModelJobs:
    """Build the four jobs of a model."""
    rollout = dg.define_asset_job(
        job_name(spec, "rollout"),
        selection=weights_with_check(spec)
        | dg.AssetSelection.assets(
            asset_key(spec, "image"), asset_key(spec, "release")
        ).without_checks(),
        description=(
            f"Fetch and verify `{spec.source.repo}`, build the image, and apply the release "
            f"({spec.rollout.strategy}). Launchpad: `ops.{group_name(spec)}__weights.config."
            f"revision` pins another revision; `ops.{group_name(spec)}__image.config.reference` "
            "runs a prebuilt image."
        ),
        tags={**deploy_tags(spec), **max_runtime(ROLLOUT_MAX_RUNTIME_SECONDS)},
        executor_def=STEPS_IN_ONE_PROCESS,
    )
    decision_runtime = max_runtime(spec.rollout.progress_deadline_seconds + DECISION_MARGIN_SECONDS)
    promote = dg.define_asset_job(
        job_name(spec, "promote"),
        selection=dg.AssetSelection.assets(asset_key(spec, "live")),
        description="Promote the canary to stable (launched by the gate sensor, or by hand).",
        tags={**deploy_tags(spec), **decision_runtime},
        executor_def=STEPS_IN_ONE_PROCESS,
    )

    @dg.job(
        name=job_name(spec, "rollback"),
        description=(
            "Drop the canary and restore the last stable release, or the release id given "
            f"in `ops.{group_name(spec)}__rollback.config.release_id`."
        ),
        tags={**deploy_tags(spec), **decision_runtime},
        executor_def=STEPS_IN_ONE_PROCESS,
    )
    def rollback() -> None:
        build_rollback_op(spec)()

    refresh = dg.define_asset_job(
        job_name(spec, "refresh_weights"),
        selection=weights_with_check(spec),
        description="Fetch and verify the newest upstream revision; change nothing served.",
        tags={MODEL_TAG: spec.name},
        executor_def=STEPS_IN_ONE_PROCESS,
    )
    return ModelJobs(rollout, promote, rollback, refresh)
