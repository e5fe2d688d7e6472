"""The image asset of a model: the vLLM serving image, rendered, tagged by content, and
built (or found already built, or taken prebuilt), with its digest.

No `from __future__ import annotations`: Dagster reads the context annotation at load.
"""

import dagster as dg
from pydantic import Field

from llm_rollout.assets.naming import asset_key, group_name
from llm_rollout.assets.versions import image_version
from llm_rollout.images.builders import BuildFailed
from llm_rollout.images.context import ImageError, render_context
from llm_rollout.k8s.release import default_image
from llm_rollout.pipelines.resources import ImageBuilder
from llm_rollout.spec import ReleaseSpec


class ImageConfig(dg.Config):
    """Launchpad options of the image step."""

    reference: str | None = Field(
        None,
        description="Run this prebuilt image instead of building one (its digest is looked up).",
    )


def build_image_asset(spec: ReleaseSpec) -> dg.AssetsDefinition:
    """The `<model>/image` asset."""
    builder_name = spec.image.builder

    @dg.asset(
        key=asset_key(spec, "image"),
        group_name=group_name(spec),
        kinds={"docker"} if builder_name != "kaniko" else {"kubernetes"},
        description=(
            f"The prebuilt serving image `{default_image(spec)}` (builder none), by digest."
            if builder_name == "none"
            else f"vLLM {spec.serving.vllm_version} serving image ({spec.image.base} base, "
            f"builder `{builder_name}`), tagged by its build context's hash."
        ),
        owners=spec.owners,
        code_version=image_version(spec),
        retry_policy=dg.RetryPolicy(max_retries=1, delay=30),  # a push can flake; builds are
        tags={"llm-rollout/model": spec.name},  # idempotent (the tag check skips a rebuild)
    )
    def image(
        context: dg.AssetExecutionContext, config: ImageConfig, image_builder: ImageBuilder
    ) -> dg.MaterializeResult:
        chosen = spec
        if config.reference:  # the user's prebuilt image: nothing to build, only to pin
            chosen = spec.model_copy(
                update={
                    "image": spec.image.model_copy(
                        update={"builder": "none", "reference": config.reference}
                    )
                }
            )
        rendered = render_context(chosen)
        try:
            built = image_builder.builder(chosen).build(rendered, context.log.info)
        except BuildFailed as error:  # the log tail is in the message; no tag is recorded
            raise dg.Failure(description=str(error)) from error
        except ImageError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        return dg.MaterializeResult(
            metadata={
                "reference": built.reference,
                "digest": built.digest or "unknown (registry not asked)",
                "pinned": built.pinned,
                "context_hash": rendered.content_hash,
                "base": chosen.image.base,
                "vllm_version": spec.serving.vllm_version,
                "builder": built.builder,
                "build_seconds": round(built.seconds, 1),
                "skipped_build": built.skipped,
            },
            data_version=dg.DataVersion(built.digest or built.reference),
        )

    return image
