"""Dagster resources: small, typed handles on the outside world, configured from the
environment. Nothing here touches the network while definitions load."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

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
