"""The router's config document: the spec's routes plus what the release controller decides
(which releases serve, their weights, the shadow, whether the model is degraded).

The controller writes it (YAML or JSON) into a ConfigMap mounted into the router's pods;
the router reads it at start and re-reads it when its content changes (`ConfigWatcher`).
A document that does not load is reported and the previous one stays in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from llm_rollout.spec.routing import LOCAL, Routing, RoutingModel

if TYPE_CHECKING:
    from llm_rollout.spec.schema import ReleaseSpec

log = logging.getLogger(__name__)

# The controller's writes reach a mounted ConfigMap within the kubelet's sync period (about a
# minute); polling once a second adds nothing noticeable to that and costs one small read.
RELOAD_INTERVAL_SECONDS = 1.0
# A router config is a few KB; anything this large is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


class RouterConfigError(Exception):
    """The router's config document is unreadable or invalid."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class Release(RoutingModel):
    """One local release (its own Deployment and Service) and its share of local traffic."""

    id: str = Field(description="Release id, a metrics label (e.g. the release's short hash).")
    url: str = Field(description="Base URL of the release's vLLM Service, without /v1.")
    weight: float = Field(ge=0, le=100, description="Relative share of local traffic.")
    metrics_urls: list[str] = Field(
        default_factory=list,
        description="Its pods' /metrics, for the queue limit; default: <url>/metrics.",
    )

    @field_validator("id")
    @classmethod
    def _label(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", value) or len(value) > 63:
            raise ValueError(f"'{value}' is not a release id (a label value, ≤ 63 characters)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value.rstrip("/")

    @property
    def queue_sources(self) -> list[str]:
        """Where the release's waiting requests are read."""
        return self.metrics_urls or [f"{self.url}/metrics"]


class Shadow(RoutingModel):
    """Copy a share of local requests to one release and drop its answers."""

    release: str = Field(description="Id of a release in `releases` (usually the canary).")
    share: float = Field(gt=0, le=1, description="Share of local requests copied.")


class RouterConfig(RoutingModel):
    """Everything one model's router needs; see docs/router.md for an example."""

    model: str = Field(min_length=1, description="Model name the local releases serve.")
    releases: list[Release] = Field(default_factory=list, description="Local releases.")
    routing: Routing = Field(default_factory=lambda: Routing())
    shadow: Shadow | None = None
    degraded: str | None = Field(
        None,
        description="Set by the release controller (e.g. 'rolling back'): routes with a "
        "fallback send their requests to it.",
    )
    queue_poll_seconds: float = Field(
        2.0, gt=0, le=60, description="How often the releases' /metrics are read."
    )

    @model_validator(mode="after")
    def _releases(self) -> RouterConfig:
        ids = [release.id for release in self.releases]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"releases: ids used twice: {', '.join(duplicates)}")
        if self.releases and sum(release.weight for release in self.releases) <= 0:
            raise ValueError("releases: every weight is 0; give at least one a share")
        if self.shadow is not None and self.shadow.release not in ids:
            raise ValueError(
                f"shadow.release: '{self.shadow.release}' is not in releases ({', '.join(ids)})"
            )
        return self

    @property
    def serves_locally(self) -> bool:
        """Some route sends requests to the local releases."""
        return any(route.backend == LOCAL for route in self.routing.routes)


def config_for(
    spec: ReleaseSpec,
    releases: list[Release],
    *,
    degraded: str | None = None,
    shadow_release: str | None = None,
) -> RouterConfig:
    """The config the release controller writes for a model: its spec's routes (the default
    route when it has none), the releases and weights it decided, the shadow (the spec's
    `routing.shadow_share` of requests, when a shadow release is named) and degraded state."""
    routing = spec.routing or Routing()
    shadow = None
    if shadow_release is not None and routing.shadow_share > 0:
        shadow = Shadow(release=shadow_release, share=routing.shadow_share)
    return RouterConfig(
        model=spec.served_model_name,
        releases=releases,
        routing=routing,
        shadow=shadow,
        degraded=degraded,
    )


def api_key_env(cloud_name: str) -> str:
    """The environment variable the router reads a cloud backend's API key from (the router's
    Deployment fills it from `api_key_secret`)."""
    return f"LLM_ROLLOUT_CLOUD_{cloud_name.upper().replace('-', '_')}_API_KEY"


def api_key_env_vars(routing: Routing) -> list[dict[str, Any]]:
    """The router container's `env` entries that fill each cloud backend's key from its
    Secret (Kubernetes EnvVar with valueFrom.secretKeyRef); backends without one are left out."""
    return [
        {
            "name": api_key_env(name),
            "valueFrom": {
                "secretKeyRef": {"name": cloud.api_key_secret.name, "key": cloud.api_key_secret.key}
            },
        }
        for name, cloud in sorted(routing.cloud.items())
        if cloud.api_key_secret is not None
    ]


def cloud_api_key(cloud_name: str) -> str | None:
    """The API key of a cloud backend, from the environment; None when unset."""
    return os.environ.get(api_key_env(cloud_name)) or None


def parse_config(path: Path, data: bytes) -> RouterConfig:
    """Validate a config document's bytes (YAML or JSON); `RouterConfigError` names the field."""
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise RouterConfigError(path, f"not YAML or JSON: {error}") from error
    if not isinstance(document, dict):
        raise RouterConfigError(path, f"expected a mapping, got {type(document).__name__}")
    try:
        return RouterConfig.model_validate(document)
    except ValidationError as error:
        lines = []
        for detail in error.errors():
            where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
            lines.append(f"{where}: {detail['msg'].removeprefix('Value error, ')}")
        raise RouterConfigError(path, "; ".join(lines)) from error


def load_config(path: Path) -> RouterConfig:
    """Read and validate the config file."""
    return parse_config(path, _read(path))


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise RouterConfigError(path, f"cannot read: {error.strerror or error}") from error
    if len(data) > MAX_CONFIG_BYTES:
        raise RouterConfigError(path, f"larger than {MAX_CONFIG_BYTES} bytes")
    return data


class ConfigWatcher:
    """Re-reads the config file when its bytes change and hands each valid version on.

    A ConfigMap volume swaps a symlink rather than rewriting the file, so the content is
    compared, not the modification time or inotify events on the file.
    """

    def __init__(
        self,
        path: Path,
        initial: bytes,
        on_change: Callable[[RouterConfig], None],
        on_error: Callable[[RouterConfigError], None],
        interval: float = RELOAD_INTERVAL_SECONDS,
    ) -> None:
        self.path = path
        self._digest = hashlib.sha256(initial).hexdigest()
        self._on_change = on_change
        self._on_error = on_error
        self._interval = interval
        self._failed_digest: str | None = None

    @classmethod
    def start_from(cls, path: Path) -> tuple[RouterConfig, bytes]:
        """The first config (errors raise: a router never starts without a valid one)."""
        data = _read(path)
        return parse_config(path, data), data

    def check(self) -> None:
        """Read once; report a changed valid config or the error of a changed invalid one."""
        try:
            data = _read(self.path)
        except RouterConfigError as error:
            self._failed(error, "unreadable")
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return
        self._digest = digest
        try:
            config = parse_config(self.path, data)
        except RouterConfigError as error:
            self._failed(error, digest)
            return
        self._on_change(config)

    def _failed(self, error: RouterConfigError, digest: str) -> None:
        # a broken file is reported once per version, not once a second
        if self._failed_digest != digest:
            self._failed_digest = digest
            self._on_error(error)

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            self.check()
