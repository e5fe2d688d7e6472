"""A release: (weights commit, image, serving config) of one model, with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.layout import repo_slug


@dataclass(frozen=True)
class Release:
    """What gets deployed: the spec's config, a verified weights commit and an image."""

    spec: ReleaseSpec
    weights_commit: str
    image: str

    @property
    def release_id(self) -> str:
        """'rel-' + 10 hex of everything that shapes the pods: same inputs, same id, so
        re-applying a release is a no-op and a rollback restores it exactly."""
        exclude: dict[str, set[str]] = {
            # how long the controller waits for a node, how many old Deployments it keeps and
            # the canary's share of routed traffic do not shape the pods; leaving them out
            # keeps the ids of releases recorded before the fields existed
            "rollout": {
                "capacity_wait_seconds",
                "retained_releases",
                "canary_weight",
                "canary_steps",
            },
        }
        if not self.spec.serving.env:  # ids of releases from before `serving.env` stay
            exclude["serving"] = {"env"}
        shaping = self.spec.model_dump(
            mode="json",
            include={"name", "source", "storage", "serving", "resources", "rollout"},
            exclude=exclude,
        )
        text = json.dumps([shaping, self.weights_commit, self.image], sort_keys=True)
        return "rel-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def weights_subpath(self) -> str:
        """The published commit folder, relative to the weights volume's root."""
        return f"{repo_slug(self.spec.source.repo)}/{self.weights_commit}"


def default_image(spec: ReleaseSpec) -> str:
    """The image for builder 'none': the spec's reference, or the official vLLM image."""
    return spec.image.reference or f"vllm/vllm-openai:v{spec.serving.vllm_version}"
