"""The release spec: one YAML file per served model, parsed into typed, immutable models.

Every default lives here. Field-level checks sit on the fields; rules that relate several
fields live in `spec.rules` and run once the fields themselves are valid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llm_rollout.spec import rules
from llm_rollout.spec.cron import cron_problem
from llm_rollout.spec.quantity import parse_duration_seconds, parse_quantity
from llm_rollout.spec.routing import Routing
from llm_rollout.spec.sizing import Sizing

# RFC 1123 label, as Kubernetes requires for names of namespaces and Services.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A release's Deployment is "<name>-rel-<10 hex>" and is also its pods'
# `app.kubernetes.io/instance` label: 40 + 15 stays inside the 63-character label limit.
MAX_NAME_LENGTH = 40
# A namespace is a plain RFC 1123 label: nothing is appended to it.
MAX_NAMESPACE_LENGTH = 63
# An owner Dagster accepts (dagster/_core/definitions/utils.py is_valid_owner): an email
# address by its is_valid_email pattern, or 'team:' and a name.
OWNER_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,7}\b")
# A Kubernetes label value (apimachinery validation.IsValidLabelValue): at most 63
# characters, alphanumeric at both ends, '-', '_' and '.' inside.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MAX_LABEL_VALUE_LENGTH = 63
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
VLLM_VERSION = re.compile(r"^\d+\.\d+\.\d+(\.post\d+|rc\d+)?$")


def version_numbers(version: str) -> tuple[int, int, int]:
    """'0.11.0' → (0, 11, 0); a validated `vllm_version` always has the three numbers."""
    major, minor, patch = re.findall(r"\d+", version)[:3]
    return int(major), int(minor), int(patch)


class SpecModel(BaseModel):
    """Base for every spec section: unknown fields are errors and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Source(SpecModel):
    """Where the weights come from: a Hugging Face repo at a branch, tag or full commit."""

    repo: str = Field(description="Hugging Face repo id, `owner/name`.")
    revision: str = Field(
        "main",
        description=(
            "Branch, tag or full 40-hex commit (pinned to a commit when fetched). Abbreviated "
            "commits and malformed ref names are refused."
        ),
    )
    allow_patterns: list[str] | None = Field(
        None, description="Glob patterns of files to fetch; unset: all files."
    )

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not HUB_REPO_ID.match(value) or len(value) > 96:
            raise ValueError(f"'{value}' is not a Hub repo id; expected 'owner/name'")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        problem = rules.revision_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class NfsVolume(SpecModel):
    """An NFS export holding one folder per published weights commit."""

    server: str = Field(min_length=1, description="NFS server host name or IP.")
    path: str = Field(description="Absolute export path.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"'{value}' must be an absolute path")
        return value


class Storage(SpecModel):
    """The shared volume the weights are published to and mounted from (read-only)."""

    nfs: NfsVolume | None = Field(
        None, description="NFS export that holds one folder per weights commit."
    )
    existing_claim: str | None = Field(
        None,
        description=(
            "Instead of `nfs`: the name of an existing ReadOnlyMany PVC in the model's "
            "namespace. Exactly one of the two."
        ),
    )
    mount_path: str = Field(
        "/models", description="Where the volume is mounted (read-only) in serving pods."
    )

    @field_validator("existing_claim")
    @classmethod
    def _claim_name(cls, value: str | None) -> str | None:
        if value is not None and not DNS_LABEL.match(value):
            raise ValueError(f"'{value}' is not a valid PVC name (lowercase DNS label)")
        return value

    @field_validator("mount_path")
    @classmethod
    def _mount_absolute(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError(f"'{value}' must be an absolute path below /")
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> Storage:
        if (self.nfs is None) == (self.existing_claim is None):
            raise ValueError("give exactly one of 'nfs' or 'existing_claim'")
        return self


class Serving(SpecModel):
    """How vLLM serves the model."""

    vllm_version: str = Field(
        description=(
            "vLLM release, `X.Y.Z`, e.g. `0.11.0` (manifests, image and metric names follow it)."
        )
    )
    served_model_name: str | None = Field(
        None, description="The model name clients send; unset: the spec's `name`."
    )
    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="GPUs a model layer is split across; must fit one node."
    )
    pipeline_parallel_size: int = Field(
        1, ge=1, le=64, description="Pipeline stages (may span nodes)."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Context length; unset: the model's own."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use."
    )
    enable_prefix_caching: bool = Field(True, description="Automatic prefix caching.")
    shutdown_timeout_seconds: int = Field(
        30, ge=0, le=3600, description="How long vLLM drains in-flight requests on SIGTERM."
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description=(
            "Passed to vLLM verbatim; flags llm-rollout sets itself (`--port`, "
            "`--tensor-parallel-size`, …) are refused."
        ),
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Environment variables of the vLLM container, e.g. `VLLM_BATCH_INVARIANT: "1"` '
            "(vLLM's batch-invariant mode, for the quality gate on GPUs); names llm-rollout "
            "sets itself (`HF_HUB_OFFLINE`, `VLLM_API_KEY`, …) are refused. A change is a new "
            "release."
        ),
    )

    @field_validator("vllm_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VLLM_VERSION.match(value):
            raise ValueError(f"'{value}' is not a vLLM release version; expected e.g. '0.11.0'")
        return value

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """The numeric (major, minor, patch) of `vllm_version`, for version-dependent choices."""
        return version_numbers(self.vllm_version)


class Image(SpecModel):
    """Which serving image runs the release and how it is built."""

    registry: str | None = Field(
        None,
        description=(
            "Registry and path built images are pushed to; required by `docker` and `kaniko`."
        ),
    )
    base: Literal["official", "cuda"] = Field(
        "official",
        description=(
            "`official` = `vllm/vllm-openai` plus our additions; `cuda` = multi-stage CUDA build."
        ),
    )
    builder: Literal["docker", "kaniko", "none"] = Field(
        "none",
        description=(
            "`none` (use `reference`, or the official image as is), `docker`, or `kaniko` "
            "(in-cluster)."
        ),
    )
    reference: str | None = Field(None, description="Prebuilt image, only with builder `none`.")


class Toleration(SpecModel):
    """A pod toleration, as in the Kubernetes API."""

    key: str | None = Field(
        None, description="Taint key tolerated; unset (with `Exists`): every taint."
    )
    operator: Literal["Exists", "Equal"] = Field(
        "Exists", description="`Exists`: any value of the key; `Equal`: only `value`."
    )
    value: str | None = Field(None, description="Taint value, with operator `Equal`.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect tolerated; unset: every effect."
    )


def _number_as_text(value: Any) -> Any:
    """Kubernetes takes `cpu: 16` as well as `cpu: "16"`; keep quantities as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_number_as_text, json_schema_input_type=str | int | float),
    Field(description="A Kubernetes quantity, e.g. 8, '500m', '16Gi'."),
]


class Resources(SpecModel):
    """What one replica needs from its node."""

    gpus: int = Field(1, ge=1, le=64, description="GPUs per replica; must equal TP × PP.")
    gpu_product: str | None = Field(
        None,
        description=(
            "Value of the node label `nvidia.com/gpu.product` to schedule on; unset: any GPU node."
        ),
    )
    gpus_per_node: int = Field(
        8, ge=1, le=64, description="GPUs on one such node (tensor parallelism must fit)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [
            Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ],
        description="Pod tolerations, as in the Kubernetes API.",
    )
    cpu: Quantity = Field(
        "8", description="CPU per replica, a Kubernetes quantity; requests = limits."
    )
    memory: Quantity = Field(
        "64Gi",
        description=(
            "Memory per replica; requests = limits. Size it for loading weights through host RAM."
        ),
    )
    shm_size: Quantity = Field(
        "16Gi",
        description="In-memory `/dev/shm` (NCCL needs a big one); must not exceed `memory`.",
    )

    @field_validator("cpu", "memory", "shm_size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value

    @field_validator("gpu_product")
    @classmethod
    def _label_value(cls, value: str | None) -> str | None:
        # it becomes the value of a nodeSelector label, which the API server validates
        if value is not None and (
            not LABEL_VALUE.match(value) or len(value) > MAX_LABEL_VALUE_LENGTH
        ):
            raise ValueError(
                f"'{value}' is not a Kubernetes label value: at most "
                f"{MAX_LABEL_VALUE_LENGTH} characters, letters, digits, '-', '_' and '.', "
                "starting and ending alphanumeric; copy it from `kubectl get nodes -L "
                "nvidia.com/gpu.product`, or omit the field to schedule on any GPU node"
            )
        return value


class Autoscaling(SpecModel):
    """A HorizontalPodAutoscaler on a vLLM metric served through prometheus-adapter."""

    min: int = Field(1, ge=1, description="Fewest replicas; `replicas` must lie in min–max.")
    max: int = Field(ge=1, description="Most replicas.")
    metric: Literal["num_requests_waiting", "num_requests_running", "kv_cache_usage_perc"] = Field(
        "num_requests_waiting",
        description="The vLLM metric scaled on, read through prometheus-adapter.",
    )
    target: float = Field(
        gt=0,
        description="Per-pod average to hold the metric at (≤ 1 for `kv_cache_usage_perc`).",
    )


class Rollout(SpecModel):
    """How a new release reaches the cluster."""

    strategy: Literal["canary", "rolling"] = Field(
        "canary",
        description=(
            "`canary` (the new release's Deployment at `canary_replicas` beside stable, judged "
            "by the gate, then scaled up as the old release is scaled down) or `rolling` (no "
            "canary phase: the same shift straight away; its rollout health is the check, and "
            "a stalled or failed one is rolled back)."
        ),
    )
    canary_replicas: int = Field(
        1, ge=1, description="Replicas of the canary while it is judged; at most `replicas`."
    )
    canary_weight: int = Field(
        10,
        ge=1,
        le=99,
        description=(
            "Percent of local requests the model's router sends to the canary while it is "
            "gated (specs with routing: only; without a router the share is the replica ratio)."
        ),
    )
    canary_steps: list[int] = Field(
        default_factory=list,
        description=(
            "Canary weights in percent, raised one step per passing gate window (Flagger's "
            "step weights), e.g. [5, 25, 50]; the last step needs gate.required_passes passes "
            "to promote. Empty: canary_weight throughout. Specs with routing: only."
        ),
    )
    max_surge: int | str = Field(
        1,
        description=(
            "Pods above the desired count during an update, a count or a percentage (`25%`); "
            "not 0 together with `max_unavailable`."
        ),
    )
    max_unavailable: int | str = Field(
        0,
        description=(
            "Pods below the desired count during an update, a count or a percentage; keep 0."
        ),
    )
    progress_deadline_seconds: int = Field(
        1800,
        ge=60,
        description="Deadline for a rollout to progress; must exceed `startup_budget_seconds`.",
    )
    startup_budget_seconds: int = Field(
        900,
        ge=30,
        description=(
            "How long a pod may take to load the model before it is restarted (its startupProbe)."
        ),
    )
    capacity_wait_seconds: int | None = Field(
        None,
        ge=0,
        description=(
            "How long a canary pod may stay Pending for lack of capacity (a GPU node being "
            "added by an autoscaler) before the canary counts as stalled; unset: "
            "`startup_budget_seconds`."
        ),
    )

    retained_releases: int = Field(
        3,
        ge=0,
        description=(
            "Deployments of earlier releases kept at zero replicas (beside stable and a "
            "canary), so a rollback scales one back up exactly; older ones are deleted (their "
            "manifests stay in the history)."
        ),
    )

    @property
    def capacity_wait(self) -> int:
        """Seconds a canary may wait for a node, the default applied."""
        if self.capacity_wait_seconds is None:
            return self.startup_budget_seconds
        return self.capacity_wait_seconds

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str) -> int | str:
        problem = rules.int_or_percent_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Gate(SpecModel):
    """When a canary is promoted, kept watching, or rolled back."""

    interval_seconds: int = Field(30, ge=5, le=3600, description="Time between gate evaluations.")
    window: str = Field(
        "5m",
        description=(
            "Prometheus range each evaluation reads, e.g. `5m` or `1m30s`; at least two intervals."
        ),
    )
    min_requests: int = Field(
        50, ge=1, description="Fewer requests in the window: inconclusive, never a pass."
    )
    required_passes: int = Field(3, ge=1, description="Consecutive passing windows to promote.")
    failure_limit: int = Field(3, ge=1, description="Consecutive failing windows to roll back.")
    consecutive_error_limit: int = Field(
        4, ge=1, description="Consecutive measurement errors before the gate holds and alerts."
    )
    warmup_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description=(
            "After the canary is ready, how long before its metrics count (a fresh vLLM "
            "compiles kernels and fills its caches on its first requests); the first window "
            "judged starts after it."
        ),
    )
    max_ttft_p99_seconds: float = Field(
        5.0, gt=0, le=3600, description="Limit on the canary's time-to-first-token p99."
    )
    max_itl_p99_seconds: float = Field(
        0.2, gt=0, le=60, description="Limit on the canary's inter-token latency p99."
    )
    max_e2e_p99_seconds: float | None = Field(
        None,
        gt=0,
        le=86400,
        description=(
            "Limit on the canary's end-to-end request latency p99 (a secondary signal); "
            "unset: not judged."
        ),
    )
    min_success_rate: float = Field(
        0.99, ge=0, le=1, description="Lowest share of the canary's requests that succeed."
    )
    max_kv_cache_usage: float = Field(
        0.95, gt=0, le=1, description="Highest KV-cache usage of the canary's pods, a fraction."
    )
    max_relative_regression: float = Field(
        0.2,
        ge=0,
        le=10,
        description="Canary may be at most this fraction worse than stable in the same window.",
    )
    min_ttft_regression_seconds: float = Field(
        0.02,
        ge=0,
        le=60,
        description=(
            "A canary's mean time-to-first-token fails the relative rule only when it is also "
            "this much above stable's: smaller differences are noise (pods on busy nodes)."
        ),
    )
    min_itl_regression_seconds: float = Field(
        0.002,
        ge=0,
        le=10,
        description=(
            "The same for the mean inter-token latency: a difference below this never fails "
            "the relative rule."
        ),
    )
    max_gating_seconds: int = Field(
        3600,
        ge=60,
        description=(
            "Longest a ready canary may be judged without a decision (inconclusive or erroring "
            "windows); then `on_timeout` applies."
        ),
    )
    max_hold_seconds: int = Field(
        1800,
        ge=0,
        description="Longest the gate may hold on unavailable metrics; then `on_timeout` applies.",
    )
    on_timeout: Literal["rollback", "hold"] = Field(
        "rollback",
        description="Past a limit above: `rollback`, or `hold` (stay held, alerting) for a person.",
    )
    bake_seconds: int = Field(
        600,
        ge=0,
        description=(
            "After promotion, how long stable (now the new release) is judged against the "
            "limits and the previous stable's numbers before the release is done."
        ),
    )

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration_seconds(value) == 0:
            raise ValueError(f"'{value}' is an empty window; give e.g. '5m'")
        return value

    @property
    def window_seconds(self) -> int:
        """The window as a number of seconds."""
        return parse_duration_seconds(self.window)


class Refresh(SpecModel):
    """A schedule that checks the Hub for a new commit of the revision."""

    cron: str | None = Field(
        None,
        description=(
            "Five-field cron or a macro such as `@daily` (UTC) to check the Hub for a new "
            "commit; not with a fixed-commit revision. Unset: no schedule."
        ),
    )
    auto_rollout: bool = Field(
        False, description="Roll out a new commit, not only fetch and verify it; needs `cron`."
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value


class Network(SpecModel):
    """Who may reach the model's pods. Opt-in: a NetworkPolicy that started restricting
    ingress on an upgrade would cut off every client not yet labelled."""

    restrict_ingress: bool = Field(
        False,
        description=(
            "Apply a NetworkPolicy: only namespaces or pods labelled "
            "`llm-rollout.io/client=true`, Prometheus and `client_namespaces` reach the vLLM "
            "port (docs/kubernetes.md)."
        ),
    )
    prometheus_namespace: str = Field(
        "monitoring", description="The namespace Prometheus scrapes from."
    )
    client_namespaces: list[str] = Field(
        default_factory=list,
        description=(
            "Namespaces allowed in besides labelled clients, e.g. Dagster's (the quality "
            "gate sends its golden prompts to the pods directly)."
        ),
    )

    @field_validator("prometheus_namespace", "client_namespaces")
    @classmethod
    def _namespaces(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            if not DNS_LABEL.match(name) or len(name) > 63:
                raise ValueError(f"'{name}' is not a namespace name (a DNS label)")
        return value


class Quality(SpecModel):
    """The output-quality gate: golden prompts sent greedy to a canary pod and a stable pod
    directly, and their answers compared (monitoring/quality.py). Off when absent."""

    prompts: str = Field(
        description="JSONL file of golden prompts, relative to the spec's folder.",
    )
    max_tokens: int = Field(32, ge=1, le=1024, description="Answer length per prompt, in tokens.")
    seed: int = Field(0, ge=0, description="Sampling seed sent with every request.")
    every_window: bool = Field(
        False,
        description=(
            "Measure with every judged window; by default once per canary, with its first "
            "judged window (the golden set costs three requests per prompt and track)."
        ),
    )
    min_agreement: float = Field(
        0.9, ge=0, le=1, description="Share of prompts whose greedy answer equals stable's."
    )
    max_logprob_drift: float = Field(
        0.05,
        ge=0,
        le=100,
        description="Mean |Δ log-probability| of stable's answer tokens, canary vs stable.",
    )
    max_expectation_drop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How much lower than stable's the canary's share of met `expect`s may be.",
    )
    allow_prompt_change: bool = Field(
        False, description="A new chat template or tokenizer is intended: prompt ids may differ."
    )

    @field_validator("prompts")
    @classmethod
    def _beside_the_spec(cls, value: str, info: ValidationInfo) -> str:
        folder = (info.context or {}).get("spec_dir")
        if folder is None:
            return value  # built in code: the caller's path stands
        path = Path(folder) / value
        if not path.is_file():
            raise ValueError(f"no golden prompt file at {path}")
        return str(path.resolve())


class ReleaseSpec(SpecModel):
    """Everything llm-rollout needs to know to release one served model."""

    name: str = Field(
        description=(
            "Names the model's Kubernetes objects. Lowercase DNS label, at most 40 characters "
            "(room for the release id of its Deployments). `vllm` is refused: Kubernetes would "
            "inject `VLLM_PORT` from a Service of that name and vLLM refuses to start."
        )
    )
    namespace: str = Field(
        "llm-serving", description="Namespace the model is served in, a DNS label."
    )
    owners: list[str] = Field(
        default_factory=list,
        description=(
            "Who answers for the model: email addresses or `team:<name>`, exactly what Dagster "
            "accepts; shown as the owners of the model's assets."
        ),
    )
    source: Source = Field(
        description="Where the weights come from: a Hugging Face repo at a branch, tag or commit."
    )
    storage: Storage = Field(
        description=(
            "The shared volume the weights are published to and served from (read-only): "
            "an NFS export or an existing PVC."
        )
    )
    serving: Serving = Field(description="How vLLM serves the model.")
    image: Image = Field(
        default_factory=lambda: Image(),
        description="Which serving image runs the release and how it is built (docs/image.md).",
    )
    resources: Resources = Field(
        default_factory=lambda: Resources(), description="What one replica needs from its node."
    )
    replicas: int = Field(
        1,
        ge=1,
        le=1000,
        description="Replicas of the stable release; within `autoscaling`'s bounds when set.",
    )
    autoscaling: Autoscaling | None = Field(
        None,
        description=(
            "A HorizontalPodAutoscaler on a vLLM metric served through prometheus-adapter; "
            "a fixed `replicas` when absent."
        ),
    )
    rollout: Rollout = Field(
        default_factory=lambda: Rollout(),
        description="How a new release reaches the cluster (docs/release-controller.md).",
    )
    gate: Gate = Field(
        default_factory=lambda: Gate(),
        description=(
            "When a canary is promoted, kept watching, or rolled back (docs/monitoring.md)."
        ),
    )
    refresh: Refresh = Field(
        default_factory=lambda: Refresh(),
        description="A schedule that checks the Hub for a new commit of the revision.",
    )
    quality: Quality | None = Field(
        None,
        description=(
            "The output-quality gate, off when absent: golden prompts sent greedy to a canary "
            "pod and a stable pod directly, and their answers compared (docs/monitoring.md)."
        ),
    )
    network: Network = Field(
        default_factory=lambda: Network(),
        description=(
            "Who may reach the model's pods; opt-in, since a NetworkPolicy that appeared on an "
            "upgrade would cut off every client not yet labelled."
        ),
    )
    routing: Routing | None = Field(
        None,
        description=(
            "The model's router, off when absent: routes that send each request to the model's "
            "own pods or a cloud backend (docs/router.md#in-the-release-spec-routing)."
        ),
    )
    sizing: Sizing = Field(
        default_factory=lambda: Sizing(),
        description=(
            "What the fit check needs before the weights are fetched, and its limits "
            "(docs/sizing.md)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(
            value, MAX_NAME_LENGTH, " (room is left for the release id of its Deployments)"
        )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _dns_label(value, MAX_NAMESPACE_LENGTH, "")

    @field_validator("owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        for owner in value:
            if not (OWNER_EMAIL.fullmatch(owner) or (owner.startswith("team:") and len(owner) > 5)):
                raise ValueError(
                    f"'{owner}' is not an owner Dagster accepts: give an email address "
                    "or 'team:<name>'"
                )
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ReleaseSpec:
        problems = rules.cross_field_problems(self)
        if problems:
            raise rules.SpecRuleViolations(problems)
        return self

    @property
    def served_model_name(self) -> str:
        """The model name clients send in requests."""
        return self.serving.served_model_name or self.name


def _dns_label(value: str, limit: int, why: str) -> str:
    if not DNS_LABEL.match(value) or len(value) > limit:
        raise ValueError(
            f"'{value}' is not a DNS label: lowercase letters, digits and '-', "
            f"starting and ending alphanumeric, at most {limit} characters{why}"
        )
    return value
