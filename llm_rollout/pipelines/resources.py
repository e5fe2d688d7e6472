"""Dagster resources: small, typed handles on the outside world, configured from the
environment. Nothing here touches the network while definitions load."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from llm_rollout.images.builders import Builder, NoneBuilder
from llm_rollout.images.kaniko import KanikoBuilder
from llm_rollout.images.registry import Credentials, RegistryClient
from llm_rollout.images.select import builder_for
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.rollout.controller import Metrics
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.hub import HubClient


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
    resolve_digests: bool | None = Field(
        None,
        description=(
            "Ask the registry for a prebuilt image's digest (off air-gapped); unset: on, "
            "unless $LLM_ROLLOUT_RESOLVE_DIGESTS is 'false'."
        ),
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
            resolve = self.resolve_digests
            if resolve is None:
                resolve = os.environ.get("LLM_ROLLOUT_RESOLVE_DIGESTS", "true").lower() != "false"
            return NoneBuilder(self.registry(), resolve)
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


DEFAULT_SCRAPE_INTERVAL_SECONDS = 15.0  # Prometheus' own default


class KubernetesCluster(dg.ConfigurableResource):
    """The cluster models are served on."""

    kubeconfig: str | None = Field(
        None, description="Kubeconfig file; unset: in-cluster credentials, then $KUBECONFIG."
    )
    context: str | None = Field(None, description="Kubeconfig context; unset: the current one.")

    def client(self) -> ClusterClient:
        return ClusterClient.from_kubeconfig(self.kubeconfig, self.context)


class PrometheusServer(dg.ConfigurableResource):
    """The Prometheus that scrapes the vLLM pods (what the gate reads)."""

    url: str = Field(description="Base URL, e.g. http://prometheus.monitoring:9090.")
    scrape_interval_seconds: float | None = Field(
        None,
        description=(
            "How often it scrapes the vLLM pods (a track is stale after two); unset: "
            f"$LLM_ROLLOUT_SCRAPE_INTERVAL_SECONDS, else {DEFAULT_SCRAPE_INTERVAL_SECONDS:.0f}."
        ),
    )

    def metrics(self) -> Metrics:
        interval = self.scrape_interval_seconds or float(
            os.environ.get("LLM_ROLLOUT_SCRAPE_INTERVAL_SECONDS", DEFAULT_SCRAPE_INTERVAL_SECONDS)
        )
        return Metrics(self.url, interval)
