"""The `code_version` of each stage of a model's pipeline: Dagster marks an asset stale when
its code version changes, so each is derived from exactly what shapes that stage's result.

Computed from the spec and local templates only, so definitions still load without the
network."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llm_rollout.images.context import render_context
from llm_rollout.k8s.release import default_image
from llm_rollout.spec import ReleaseSpec

# Bumped when a stage's own logic changes what it produces for the same spec.
WEIGHTS_LOGIC = 1
RELEASE_LOGIC = 1
DIGEST_LENGTH = 12
# Who is told and when a refresh runs do not change what any stage produces.
NOT_SHAPING = {"owners", "refresh"}


def _digest(logic: int, value: Any) -> str:
    text = json.dumps([logic, value], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def weights_version(spec: ReleaseSpec) -> str:
    """The repo, revision and file patterns fetched."""
    return _digest(WEIGHTS_LOGIC, spec.source.model_dump(mode="json"))


def image_version(spec: ReleaseSpec) -> str:
    """A built image: its content tag (the rendered build context's hash); a prebuilt one:
    its reference."""
    if spec.image.builder == "none":
        return default_image(spec)
    return render_context(spec).tag


def release_version(spec: ReleaseSpec) -> str:
    """Everything in the spec that shapes the release's objects and how it is rolled out."""
    return _digest(RELEASE_LOGIC, spec.model_dump(mode="json", exclude=NOT_SHAPING))
