"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from assets.image import build_image_asset
from assets.weights import build_weights_asset, build_weights_check
from pipelines.resources import ImageBuilder, WeightsStore
from pipelines.specs import load_release_specs

# Loaded at import so a broken spec shows as a code-location error in the UI,
# naming the file and field, instead of failing later inside a run.
RELEASE_SPECS = load_release_specs()

defs = dg.Definitions(
    assets=[
        *[build_weights_asset(spec) for spec in RELEASE_SPECS],
        *[build_image_asset(spec) for spec in RELEASE_SPECS],
    ],
    asset_checks=[build_weights_check(spec) for spec in RELEASE_SPECS],
    resources={
        # Resolved when a run starts, not at load: set it where runs execute.
        "weights_store": WeightsStore(root=dg.EnvVar("LLM_ROLLOUT_WEIGHTS_ROOT")),
        # Registry login from LLM_ROLLOUT_REGISTRY_USERNAME/PASSWORD, read when a run builds
        # (so the password is never part of the resource config the UI shows).
        "image_builder": ImageBuilder(),
    },
)
