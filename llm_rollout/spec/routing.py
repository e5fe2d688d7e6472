"""The `routing:` section of a release spec: the model's front door (the `router` package).

Routes send a request, by its requested model name and/or its task header, to the local
model (the release's vLLM pods) or to a cloud backend (an OpenAI-compatible API), with a
cloud fallback when the local model fails or is degraded, unless the route is `local_only`.
Which releases serve locally and with what weights is not here: the release controller
writes that into the router's config (`router.config.RouterConfig`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

LOCAL = "local"  # the backend name of the model's own vLLM pods; no cloud backend may take it
# RFC 9110 token: the characters an HTTP header name may have.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
ROUTE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")  # a Prometheus label value
# vLLM's default --max-num-seqs is 256 per pod: a waiting queue above that is a backlog of
# minutes, never a useful limit.
MAX_WAITING_LIMIT = 10_000


class RoutingModel(BaseModel):
    """Base for routing sections: unknown fields are errors and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SecretKeyRef(RoutingModel):
    """A key of a Kubernetes Secret in the model's namespace (the cloud API key)."""

    name: str = Field(description="Secret name.")
    key: str = Field("api-key", min_length=1, description="Key inside the Secret.")

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", value) or len(value) > 253:
            raise ValueError(f"'{value}' is not a Secret name (lowercase DNS subdomain)")
        return value


class CloudBackend(RoutingModel):
    """A hosted OpenAI-compatible API: requests get its `model` and its API key."""

    base_url: str = Field(description="Base URL including the version, e.g. https://host/v1.")
    model: str = Field(min_length=1, description="Model name sent to this API.")
    api_key_secret: SecretKeyRef | None = Field(
        None, description="Secret holding the API key (sent as 'Authorization: Bearer')."
    )
    timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Whole-request limit; a stream's first token too."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value.rstrip("/")


class RouteMatch(RoutingModel):
    """Which requests a route takes; an empty match takes every request."""

    models: list[str] = Field(
        default_factory=list, description="Requested model names (the body's 'model')."
    )
    task_types: list[str] = Field(
        default_factory=list, description="Values of the task header, e.g. code_review."
    )

    @property
    def catches_all(self) -> bool:
        """True when the route takes every request."""
        return not self.models and not self.task_types

    def matches(self, model: str | None, task_type: str | None) -> bool:
        """Both given criteria hold (a missing criterion holds for any value)."""
        model_ok = not self.models or model in self.models
        task_ok = not self.task_types or task_type in self.task_types
        return model_ok and task_ok


class Route(RoutingModel):
    """Where matching requests go, where they go when that fails, and the limits."""

    name: str = Field(description="Route name, a label of the router's metrics.")
    match: RouteMatch = Field(
        default_factory=lambda: RouteMatch(),
        description="Which requests the route takes (both criteria must hold); empty: all.",
    )
    backend: str = Field(LOCAL, description="'local' or the name of a cloud backend.")
    fallback: str | None = Field(
        None, description="Cloud backend used when the local model fails or is degraded."
    )
    local_only: bool = Field(
        False, description="Data that must never leave: no fallback; 503 when local fails."
    )
    max_waiting_requests: int | None = Field(
        None,
        ge=0,
        le=MAX_WAITING_LIMIT,
        description="Fall back when the chosen release's pods average more waiting requests.",
    )
    first_token_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="Local: no first token (or no answer) by then → fallback."
    )
    request_timeout_seconds: float = Field(
        600.0, gt=0, le=86400, description="Local: the whole request, stream included."
    )

    @field_validator("name")
    @classmethod
    def _route_name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value) or len(value) > 63:
            raise ValueError(
                f"'{value}' is not a route name: lowercase letters, digits, '-' and '_'"
            )
        return value


def _default_routes() -> list[Route]:
    return [Route(name="default")]


class Routing(RoutingModel):
    """The model's routes and cloud backends (the spec's `routing:`)."""

    task_header: str = Field(
        "X-Task-Type", description="Request header naming the task type routes match on."
    )
    session_headers: list[str] = Field(
        default_factory=lambda: ["X-Session-ID", "X-User-ID"],
        description="Headers whose first present value keeps a conversation on one release.",
    )
    cloud: dict[str, CloudBackend] = Field(
        default_factory=dict,
        description="Cloud backends (OpenAI-compatible APIs) by name, for routes to send to.",
    )
    routes: list[Route] = Field(
        default_factory=_default_routes,
        min_length=1,
        description="Tried in order; the first that matches takes the request.",
    )
    shadow_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of local requests copied to the canary (answer dropped).",
    )
    image: str | None = Field(
        None,
        description="Image the router's pods run: any image with llm-rollout installed, e.g. "
        "the Dagster user-code image (deploy/user-code.Dockerfile); required in a release spec.",
    )
    replicas: int = Field(2, ge=1, le=100, description="Router pods (a PDB keeps one up).")
    max_replicas: int | None = Field(
        None,
        ge=1,
        le=100,
        description="With it, an HPA scales the router's pods from replicas up to this on "
        "their CPU use (needs metrics-server); without it, replicas is fixed.",
    )

    @field_validator("max_replicas")
    @classmethod
    def _max_replicas(cls, value: int | None, info: ValidationInfo) -> int | None:
        replicas = info.data.get("replicas")
        if value is not None and replicas is not None and value < replicas:
            raise ValueError(f"{value} is fewer than replicas ({replicas})")
        return value

    @field_validator("task_header")
    @classmethod
    def _task_header(cls, value: str) -> str:
        return _header_name(value)

    @field_validator("session_headers")
    @classmethod
    def _session_headers(cls, value: list[str]) -> list[str]:
        return [_header_name(name) for name in value]

    @field_validator("cloud")
    @classmethod
    def _cloud_names(cls, value: dict[str, CloudBackend]) -> dict[str, CloudBackend]:
        for name in value:
            if name == LOCAL:
                raise ValueError(f"'{LOCAL}' names the model's own pods; pick another name")
            if not ROUTE_NAME.match(name):
                raise ValueError(f"'{name}' is not a backend name: lowercase, digits, '-', '_'")
        return value

    @field_validator("routes")
    @classmethod
    def _routes(cls, routes: list[Route], info: ValidationInfo) -> list[Route]:
        # `cloud` is declared first, so it is validated (or missing, when invalid) by now
        cloud: dict[str, Any] = info.data.get("cloud", {})
        problems = route_problems(routes, set(cloud))
        if problems:
            raise ValueError("; ".join(problems))
        return routes

    def route_for(self, model: str | None, task_type: str | None) -> Route | None:
        """The first route that takes this request, or None."""
        return next((r for r in self.routes if r.match.matches(model, task_type)), None)


def route_problems(routes: list[Route], cloud_names: set[str]) -> list[str]:
    """Rules relating routes to each other and to the cloud backends, one message each."""
    problems: list[str] = []
    defined = ", ".join(sorted(cloud_names)) or "none (add one under routing.cloud)"
    seen: set[str] = set()
    for index, route in enumerate(routes):
        where = f"routes[{index}] '{route.name}'"
        if route.name in seen:
            problems.append(f"{where}: the name is used by an earlier route")
        seen.add(route.name)
        if route.backend != LOCAL and route.backend not in cloud_names:
            problems.append(
                f"{where}: backend '{route.backend}' is neither 'local' nor a cloud backend "
                f"(defined: {defined})"
            )
        if route.fallback is not None and route.fallback not in cloud_names:
            problems.append(
                f"{where}: fallback '{route.fallback}' is not a cloud backend (defined: {defined})"
            )
        if route.local_only and route.backend != LOCAL:
            problems.append(f"{where}: local_only needs backend 'local', not '{route.backend}'")
        if route.local_only and route.fallback is not None:
            problems.append(
                f"{where}: local_only forbids a fallback (data on this route must never leave)"
            )
        if route.backend != LOCAL and route.fallback is not None:
            problems.append(f"{where}: a cloud route has no fallback; remove 'fallback'")
        if route.backend != LOCAL and route.max_waiting_requests is not None:
            problems.append(
                f"{where}: max_waiting_requests is the local vLLM queue; a cloud route has none"
            )
        if route.max_waiting_requests is not None and route.fallback is None:
            problems.append(
                f"{where}: max_waiting_requests needs a fallback to send the overflow to"
            )
        if route.first_token_timeout_seconds > route.request_timeout_seconds:
            problems.append(
                f"{where}: first_token_timeout_seconds ({route.first_token_timeout_seconds:g}) "
                f"exceeds request_timeout_seconds ({route.request_timeout_seconds:g})"
            )
        if route.match.catches_all and index < len(routes) - 1:
            later = ", ".join(f"'{r.name}'" for r in routes[index + 1 :])
            problems.append(f"{where}: matches every request, so {later} can never match")
    return problems


def _header_name(value: str) -> str:
    if not HEADER_NAME.match(value):
        raise ValueError(f"'{value}' is not an HTTP header name")
    return value
