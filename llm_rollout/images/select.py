"""Choosing the builder a spec asks for, with its registry credentials."""

from __future__ import annotations

from collections.abc import Callable

from llm_rollout.images.builders import Builder, DockerBuilder, NoneBuilder
from llm_rollout.images.context import ImageError
from llm_rollout.images.registry import Credentials, RegistryClient
from llm_rollout.spec import ReleaseSpec


def builder_for(
    spec: ReleaseSpec,
    registry: RegistryClient,
    credentials: Credentials | None = None,
    kaniko: Callable[[], Builder] | None = None,
) -> Builder:
    """The builder named by `spec.image.builder`."""
    kind = spec.image.builder
    if kind == "none":
        return NoneBuilder(registry)
    if kind == "docker":
        return DockerBuilder(registry, credentials)
    if kind == "kaniko":
        if kaniko is None:
            raise ImageError(
                "builder 'kaniko' builds inside a Kubernetes cluster: give a kubeconfig "
                "(KUBECONFIG) where the build Job can run"
            )
        return kaniko()
    raise ImageError(f"unknown builder {kind!r}")
