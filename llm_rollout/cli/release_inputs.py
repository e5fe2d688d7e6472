"""The inputs that make a release from a spec — a weights commit and an image — as options
shared by the commands that need one (`render`, `plan`), with one help text and one rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from llm_rollout.cli.errors import fail, full_commit
from llm_rollout.cli.weights import source_of
from llm_rollout.k8s.release import Release, default_image
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.errors import WeightsError
from llm_rollout.weights.fetch import published_commit

F = TypeVar("F", bound=Callable[..., object])

WEIGHTS_COMMIT_HELP = (
    "The published weights commit (40 hex, as `llm-rollout weights fetch` prints it). "
    "Give this or --weights-root."
)
WEIGHTS_ROOT_HELP = (
    "Where the weights volume is mounted here: the commit the spec's revision was last "
    "published as is read from it (env LLM_ROLLOUT_WEIGHTS_ROOT). Give this or --weights-commit."
)
IMAGE_HELP = (
    "The vLLM image to run. Required when the spec's image.builder builds one (docker, "
    "kaniko: pass what `llm-rollout image build` printed); with builder none the default is "
    "image.reference, else vllm/vllm-openai:v<serving.vllm_version>."
)


def release_options(command: F) -> F:
    """--weights-commit, --weights-root and --image, in that order."""
    for option in reversed(
        (
            click.option("--weights-commit", callback=full_commit, help=WEIGHTS_COMMIT_HELP),
            click.option(
                "--weights-root",
                type=click.Path(path_type=Path, file_okay=False),
                envvar="LLM_ROLLOUT_WEIGHTS_ROOT",
                help=WEIGHTS_ROOT_HELP,
            ),
            click.option("--image", help=IMAGE_HELP),
        )
    ):
        command = option(command)
    return command


def resolve_weights_commit(
    spec: ReleaseSpec, weights_commit: str | None, weights_root: Path | None
) -> str:
    """The commit given, or the one published under the weights root; exits with an
    `error:` line when neither is given or nothing is published."""
    if weights_commit is not None:
        return weights_commit
    if weights_root is None:
        fail("give --weights-commit, or --weights-root where the weights are published")
    try:
        return published_commit(weights_root, source_of(spec))
    except WeightsError as error:
        fail(str(error))


def resolve_image(spec: ReleaseSpec, image: str | None) -> str:
    """The image given, or the default of builder 'none'; a built image must be named."""
    if image is not None:
        return image
    if spec.image.builder != "none":
        fail(
            f"image.builder is '{spec.image.builder}', so the image is built: pass --image with "
            "what `llm-rollout image build` printed"
        )
    return default_image(spec)


def resolve_release(
    spec: ReleaseSpec, weights_commit: str | None, weights_root: Path | None, image: str | None
) -> Release:
    """The release these options name."""
    return Release(
        spec, resolve_weights_commit(spec, weights_commit, weights_root), resolve_image(spec, image)
    )
