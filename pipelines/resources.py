"""Dagster resources: small, typed handles on the outside world, configured from the
environment. Nothing here touches the network while definitions load."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from images.builders import Builder, NoneBuilder
from images.kaniko import KanikoBuilder
from images.registry import Credentials, RegistryClient
from images.select import builder_for
from k8s.cluster import ClusterClient
from spec import ReleaseSpec
from weights.hub import HubClient


class WeightsStore(dg.ConfigurableResource):
    """The weights volume as mounted where runs execute, and the Hub it is filled from."""

    root: str = Field(description="Mount path of the weights volume (NFS) where runs execute.")
    hub_endpoint: str | None = Field(
        None, description="Hub or mirror URL; unset uses huggingface_hub's (HF_ENDPOINT)."
    )
    hub_token: str | None = Field(
        None, description="Hub token for gated repos; unset uses HF_TOKEN or the stored login."
    )

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def hub(self) -> HubClient:
        """A Hub client; the token stays inside it and never reaches logs or metadata."""
        return HubClient(endpoint=self.hub_endpoint, token=self.hub_token)


class ImageBuilder(dg.ConfigurableResource):
    """Where serving images are built and pushed, and how the registry is reached."""

    registry_username: str | None = Field(
        None, description="Registry login; unset: LLM_ROLLOUT_REGISTRY_USERNAME."
    )
    registry_password: str | None = Field(
        None, description="Unset: LLM_ROLLOUT_REGISTRY_PASSWORD (from a Secret)."
    )
    insecure_registries: list[str] = Field(
        default_factory=list, description="Registry hosts spoken to over plain HTTP."
    )
    resolve_digests: bool = Field(
        True, description="Ask the registry for a prebuilt image's digest (off air-gapped)."
    )
    kubeconfig: str | None = Field(
        None, description="For the kaniko builder; unset: in-cluster, then $KUBECONFIG."
    )

    def registry(self) -> RegistryClient:
        return RegistryClient(self.credentials(), tuple(self.insecure_registries))

    def credentials(self) -> Credentials | None:
        username = self.registry_username or os.environ.get("LLM_ROLLOUT_REGISTRY_USERNAME")
        if not username:
            return None
        password = self.registry_password or os.environ.get("LLM_ROLLOUT_REGISTRY_PASSWORD", "")
        return Credentials(username, password)

    def builder(self, spec: ReleaseSpec) -> Builder:
        if spec.image.builder == "none":
            return NoneBuilder(self.registry(), self.resolve_digests)
        return builder_for(
            spec,
            self.registry(),
            self.credentials(),
            lambda: KanikoBuilder(
                ClusterClient.from_kubeconfig(self.kubeconfig),
                self.registry(),
                spec.namespace,
                self.credentials(),
            ),
        )
