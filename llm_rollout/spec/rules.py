"""Rules a release spec must follow that a single field's type cannot express.

Each rule yields a `Problem` naming the field the user should change, so the CLI can print
`file: field: message` lines and a user fixes every problem in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_rollout.spec.quantity import parse_quantity

if TYPE_CHECKING:
    from llm_rollout.spec.schema import ReleaseSpec

FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# 7-39 hex characters look like an abbreviated commit, which the Hub does not resolve.
ABBREVIATED_COMMIT = re.compile(r"^[0-9a-f]{7,39}$")
# git check-ref-format: no control characters, space, ~ ^ : ? * [ \ in a ref name.
_FORBIDDEN_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_PERCENT = re.compile(r"^(\d{1,3})%$")
# Kubernetes would inject VLLM_PORT=tcp://... into every pod for a Service named "vllm",
# and vLLM refuses to start when VLLM_PORT is not a number.
RESERVED_NAMES = frozenset({"vllm"})
# The vLLM flags llm-rollout sets itself (k8s/vllm_args.py), with the spec field that sets
# each; in `serving.extra_args` they would contradict that field or the Service/probes.
# vLLM's parser reads '_' in flag names as '-' and knows -tp/-pp (FlexibleArgumentParser).
MANAGED_VLLM_FLAGS: dict[str, str] = {
    "--model": "the weights are mounted from the published commit of source.repo",
    "--served-model-name": "set serving.served_model_name instead",
    "--host": "vLLM must listen on every interface for the Service and the probes",
    "--port": "the Service, the probes and the Prometheus scrape use port 8000",
    "--tensor-parallel-size": "set serving.tensor_parallel_size instead",
    "-tp": "set serving.tensor_parallel_size instead",
    "--pipeline-parallel-size": "set serving.pipeline_parallel_size instead",
    "-pp": "set serving.pipeline_parallel_size instead",
    "--gpu-memory-utilization": "set serving.gpu_memory_utilization instead",
    "--max-model-len": "set serving.max_model_len instead",
    "--enable-prefix-caching": "set serving.enable_prefix_caching instead",
    "--no-enable-prefix-caching": "set serving.enable_prefix_caching instead",
    "--shutdown-timeout": "set serving.shutdown_timeout_seconds instead",
}

# The vLLM container's environment variables llm-rollout sets itself (k8s/manifests.py), and
# why `serving.env` may not set them; and what Kubernetes accepts as a name
# (IsEnvVarName: letters, digits, '_', '-', '.', not starting with a digit).
MANAGED_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "the weights come from the mounted volume only",
    "HF_HOME": "the weights volume is read-only; the cache lives in /tmp/hf",
    "VLLM_NO_USAGE_STATS": "usage statistics are off",
    "VLLM_API_KEY": "put the key in the Secret '<model>-api-key' (key 'api-key') instead",
    "VLLM_PORT": "the Service, the probes and the Prometheus scrape use port 8000",
}
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the dotted field path and what is allowed there."""

    field: str
    message: str


class SpecRuleViolations(Exception):
    """The spec's fields are each valid but break rules that relate them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def revision_problem(revision: str) -> str | None:
    """Say why `revision` is not a branch, tag or full commit, or return None."""
    if FULL_COMMIT.match(revision):
        return None
    if ABBREVIATED_COMMIT.match(revision) and any(c.isdigit() for c in revision):
        return (
            f"'{revision}' looks like an abbreviated commit; give the full 40-hex commit, "
            "a branch or a tag"
        )
    if (
        not revision
        or _FORBIDDEN_REF_CHARS.search(revision)
        or ".." in revision
        or "@{" in revision
        or "//" in revision
        or revision.startswith(("-", "/", "."))
        or revision.endswith(("/", ".", ".lock"))
        or revision == "@"
    ):
        return (
            f"'{revision}' is not a valid branch, tag or commit; allowed: a git ref name "
            "(no spaces, '..', '~^:?*[\\', leading '-' or '/') or a full 40-hex commit"
        )
    return None


def int_or_percent_problem(value: int | str) -> str | None:
    """Say why `value` is not a non-negative count or a 0-100 percentage, or return None."""
    if isinstance(value, int):
        return None if value >= 0 else f"{value} must not be negative"
    match = _PERCENT.match(value)
    if not match or int(match[1]) > 100:
        return f"'{value}' must be a whole number or a percentage like '25%'"
    return None


def managed_flag(argument: str) -> str | None:
    """The managed vLLM flag `argument` sets ('--port=9000' → '--port'), or None."""
    if not argument.startswith("-"):
        return None
    name = argument.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name if name in MANAGED_VLLM_FLAGS else None


def cross_field_problems(spec: ReleaseSpec) -> list[Problem]:
    """Every cross-field rule `spec` breaks, in the order a reader meets the fields."""
    return list(_cross_field_problems(spec))


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _cross_field_problems(spec: ReleaseSpec) -> Iterator[Problem]:
    if spec.name in RESERVED_NAMES:
        yield Problem(
            "name",
            f"'{spec.name}' is reserved: Kubernetes would set VLLM_PORT in every pod from a "
            "Service of that name and vLLM would refuse to start; choose another name",
        )
    serving, resources, rollout = spec.serving, spec.resources, spec.rollout
    parallel = serving.tensor_parallel_size * serving.pipeline_parallel_size
    for position, argument in enumerate(serving.extra_args):
        flag = managed_flag(argument)
        if flag is not None:
            yield Problem(
                f"serving.extra_args[{position}]",
                f"'{argument}' is a flag llm-rollout sets itself; remove it "
                f"({MANAGED_VLLM_FLAGS[flag]})",
            )
    for variable in serving.env:
        if variable in MANAGED_ENV:
            yield Problem(
                f"serving.env.{variable}",
                f"'{variable}' is set by llm-rollout itself ({MANAGED_ENV[variable]})",
            )
        elif not ENV_NAME.match(variable):
            yield Problem(
                f"serving.env.{variable}",
                "not an environment variable name Kubernetes accepts (letters, digits, '_', "
                "'-', '.'; not starting with a digit)",
            )
    if resources.gpus != parallel:
        yield Problem(
            "resources.gpus",
            f"{resources.gpus} GPUs per replica, but tensor_parallel_size × "
            f"pipeline_parallel_size = {serving.tensor_parallel_size} × "
            f"{serving.pipeline_parallel_size} = {parallel}; they must be equal",
        )
    if serving.tensor_parallel_size > resources.gpus_per_node:
        yield Problem(
            "serving.tensor_parallel_size",
            f"{serving.tensor_parallel_size} exceeds the {resources.gpus_per_node} GPUs of one "
            "node (resources.gpus_per_node); tensor parallelism must stay inside one node, "
            "use pipeline_parallel_size across nodes",
        )
    if _is_zero(rollout.max_surge) and _is_zero(rollout.max_unavailable):
        yield Problem(
            "rollout.max_surge",
            "max_surge and max_unavailable are both 0, so a rolling update could never "
            "progress; keep max_unavailable 0 and set max_surge ≥ 1",
        )
    if rollout.progress_deadline_seconds <= rollout.startup_budget_seconds:
        yield Problem(
            "rollout.progress_deadline_seconds",
            f"{rollout.progress_deadline_seconds}s must be greater than "
            f"startup_budget_seconds ({rollout.startup_budget_seconds}s), or every slow model "
            "load would be declared a stuck rollout",
        )
    if rollout.strategy == "canary" and rollout.canary_replicas > spec.replicas:
        yield Problem(
            "rollout.canary_replicas",
            f"{rollout.canary_replicas} canary replicas exceed the {spec.replicas} stable "
            "replicas; a canary must be at most as large as what it is compared against",
        )
    gate = spec.gate
    # one passing window per canary step before the last, then required_passes
    passes = gate.required_passes + max(0, len(rollout.canary_steps) - 1)
    needed = gate.warmup_seconds + gate.window_seconds + passes * gate.interval_seconds
    if gate.max_gating_seconds < needed:
        yield Problem(
            "gate.max_gating_seconds",
            f"{gate.max_gating_seconds}s is shorter than the quickest promotion: warmup "
            f"({gate.warmup_seconds}s) + one window ({gate.window_seconds}s) + "
            f"{passes} passing windows every {gate.interval_seconds}s = {needed}s",
        )
    if parse_quantity(resources.shm_size) > parse_quantity(resources.memory):
        yield Problem(
            "resources.shm_size",
            f"{resources.shm_size} is larger than the memory limit {resources.memory}; "
            "/dev/shm is counted against the pod's memory",
        )
    autoscaling = spec.autoscaling
    if autoscaling is not None:
        if autoscaling.min > autoscaling.max:
            yield Problem(
                "autoscaling.min",
                f"min {autoscaling.min} is above max {autoscaling.max}",
            )
        elif not autoscaling.min <= spec.replicas <= autoscaling.max:
            yield Problem(
                "replicas",
                f"{spec.replicas} is outside autoscaling min..max "
                f"({autoscaling.min}..{autoscaling.max})",
            )
        if autoscaling.metric == "kv_cache_usage_perc" and autoscaling.target > 1:
            yield Problem(
                "autoscaling.target",
                f"{autoscaling.target} is above 1; kv_cache_usage_perc is a fraction (0-1)",
            )
    image = spec.image
    if image.builder == "none":
        if image.registry is not None and image.reference is None:
            yield Problem(
                "image.reference",
                "builder 'none' builds nothing: give a prebuilt image reference, or drop "
                "registry to use the official vllm/vllm-openai image",
            )
    else:
        if image.registry is None:
            yield Problem(
                "image.registry",
                f"builder '{image.builder}' pushes the image it builds: give a registry",
            )
        if image.reference is not None:
            yield Problem(
                "image.reference",
                f"a prebuilt reference is used only with builder 'none', not '{image.builder}'",
            )
    gate = spec.gate
    if gate.window_seconds < 2 * gate.interval_seconds:
        yield Problem(
            "gate.window",
            f"{gate.window} is shorter than two gate intervals ({gate.interval_seconds}s each); "
            "each evaluation needs at least two scrapes of fresh data",
        )
    if spec.refresh.auto_rollout and spec.refresh.cron is None:
        yield Problem("refresh.cron", "auto_rollout needs a cron schedule to check the Hub")
    if FULL_COMMIT.match(spec.source.revision) and spec.refresh.cron is not None:
        yield Problem(
            "refresh.cron",
            "the revision is a fixed commit, so a refresh schedule would never find a new one",
        )
    steps = spec.rollout.canary_steps
    if any(not 1 <= step <= 99 for step in steps) or steps != sorted(set(steps)):
        yield Problem(
            "rollout.canary_steps",
            f"{steps}: give rising percentages between 1 and 99, e.g. [5, 25, 50]",
        )
    if steps and spec.routing is None:
        yield Problem(
            "rollout.canary_steps",
            "canary weights are set by the model's router: add a routing: section",
        )
    if spec.routing is not None and spec.routing.image is None:
        yield Problem(
            "routing.image",
            "the router runs in pods of its own: name an image with llm-rollout installed "
            "(the Dagster user-code image, deploy/user-code.Dockerfile, is one)",
        )
