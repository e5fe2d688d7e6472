"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

Per model in `models/`: the assets weights → image → release → live (group = model), the
rollout/promote/rollback/refresh_weights jobs, the gate sensor and, with `refresh.cron`, the
refresh schedule. One run-failure sensor rolls back failed rollouts of every model.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from llm_rollout.assets.fit import build_fit_check
from llm_rollout.assets.image import build_image_asset
from llm_rollout.assets.release import build_gate_check, build_live_asset, build_release_asset
from llm_rollout.assets.weights import build_weights_asset, build_weights_check
from llm_rollout.pipelines.jobs import model_jobs
from llm_rollout.pipelines.resources import (
    ImageBuilder,
    KubernetesCluster,
    PrometheusServer,
    WeightsStore,
)
from llm_rollout.pipelines.schedules import build_refresh_schedule
from llm_rollout.pipelines.sensors import build_failure_sensor, build_gate_sensor
from llm_rollout.pipelines.specs import BrokenSpec, build_broken_spec_sensor, load_models
from llm_rollout.spec import ReleaseSpec


def build_definitions(
    specs: list[ReleaseSpec], broken: Sequence[BrokenSpec] = ()
) -> dg.Definitions:
    """Everything Dagster shows and runs for these models, and a failing sensor per spec
    file that did not load (its model disabled, the others unaffected)."""
    jobs = {spec.name: model_jobs(spec) for spec in specs}
    return dg.Definitions(
        assets=[
            asset
            for spec in specs
            for asset in (
                build_weights_asset(spec),
                build_image_asset(spec),
                build_release_asset(spec),
                build_live_asset(spec),
            )
        ],
        asset_checks=[
            check
            for spec in specs
            for check in (
                build_weights_check(spec),
                build_fit_check(spec),
                build_gate_check(spec),
            )
        ],
        jobs=[job for model in jobs.values() for job in model.all()],
        sensors=[
            *[build_gate_sensor(spec, jobs[spec.name]) for spec in specs],
            build_failure_sensor(specs),
            *[build_broken_spec_sensor(file) for file in broken],
        ],
        schedules=[
            build_refresh_schedule(spec, jobs[spec.name]) for spec in specs if spec.refresh.cron
        ],
        resources={
            # Every setting is read from the environment when a run or tick needs it, never
            # at load, so definitions load without touching the network.
            # The Hub (or mirror) from HF_ENDPOINT, its token from HF_TOKEN.
            "weights_store": WeightsStore(root=dg.EnvVar("LLM_ROLLOUT_WEIGHTS_ROOT")),
            # Registry login from LLM_ROLLOUT_REGISTRY_USERNAME/PASSWORD, read when a run
            # builds (so the password is never part of the resource config the UI shows).
            "image_builder": ImageBuilder(),
            # $KUBECONFIG when set, else in-cluster credentials, else ~/.kube/config.
            "kubernetes": KubernetesCluster(),
            "prometheus": PrometheusServer(url=dg.EnvVar("LLM_ROLLOUT_PROMETHEUS_URL")),
        },
    )


def load_definitions() -> dg.Definitions:
    """The definitions of the models folder ($LLM_ROLLOUT_MODELS_DIR); a missing or empty
    folder fails the code location, naming the path."""
    models = load_models()
    return build_definitions(models.specs, models.broken)


@dg.definitions
def defs() -> dg.Definitions:
    """What the code location loads. Built when Dagster loads it, not when this module is
    imported (importing it needs no models folder): a broken spec shows as its own failing
    sensor in the UI, naming the file, line and field, instead of failing later inside a run."""
    return load_definitions()
