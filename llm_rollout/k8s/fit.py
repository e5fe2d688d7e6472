"""The fit check: will the weights, vLLM's overheads and at least one full sequence of KV
cache fit in the GPUs a replica asks for, and are its host memory and /dev/shm big enough?

Pure: plain values in (the spec, the weights' bytes, the model's config.json as a dict), a
`FitReport` out. The same function serves `validate` (declared sizes from `sizing:`), `render`
and the release's asset check (the published manifest's exact bytes and config.json).

The estimate follows vLLM's own accounting (`vllm/v1/worker/gpu_worker.py`
determine_available_memory, `vllm/v1/kv_cache_interface.py` page sizes):

    usable per GPU  = gpu_memory_utilization × GPU memory (as CUDA reports it)
    weights per GPU = weights bytes / (tensor_parallel × pipeline_parallel)
    KV room per GPU = usable − weights per GPU − overhead (CUDA context, NCCL, CUDA graphs,
                      the profiling run's activation peak)
    KV bytes per token per GPU:
      standard attention (MHA/GQA): 2 (K and V) × ceil(layers / PP) × max(1, kv_heads / TP)
                                    × head_dim × dtype bytes
      MLA (DeepSeek-V2/V3/R1):      ceil(layers / PP) × (kv_lora_rank + qk_rope_head_dim)
                                    × dtype bytes — one latent per token, the same on every
                                    TP rank (not split by heads, no separate K and V)
    KV tokens       = KV room per GPU / KV bytes per token per GPU

Architectures outside KV_FORMULAS (sliding-window or hybrid attention, Mamba layers,
DeepSeek-V3.2's indexer cache, multimodal configs) get "cannot estimate": vLLM sizes their
caches per layer group and this formula would be wrong, in either direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llm_rollout.k8s.leaderworkerset import group_size
from llm_rollout.spec.quantity import parse_quantity
from llm_rollout.spec.rules import Problem
from llm_rollout.spec.schema import ReleaseSpec
from llm_rollout.weights.errors import RefusedBeforeDownload
from llm_rollout.weights.fetch import BeforeDownload
from llm_rollout.weights.hub import HubClient, RemoteFile
from llm_rollout.weights.model_files import CONFIG_NAME

GIB = 1024**3
GB = 10**9

# Memory of one GPU as CUDA (torch.cuda.mem_get_info) reports it, in GiB, keyed by the node
# label nvidia.com/gpu.product that GPU feature discovery sets. vLLM multiplies this total,
# not the marketing figure, by gpu_memory_utilization: e.g. "total_gpu_memory 79.22GiB" for
# an A100-SXM4-80GB (vllm-project/vllm#10511). Less than nvidia-smi's MiB figure: the driver
# reserves some, and it varies a little with driver and ECC: vLLM logs in public repositories
# show A100-40GB 39.39-39.56, A100-80GB 79.15-79.33, H200 139.81, L40S 44.31-44.39, L4
# 22.06-22.07, A10G 21.99 (the lower end is used). B200 and H100 NVL are estimates from
# nvidia-smi's figure less the same reserve. `sizing.gpu_memory_gib` overrides an entry or
# names an unlisted product.
GPU_MEMORY_GIB: dict[str, float] = {
    "NVIDIA-A100-SXM4-40GB": 39.39,
    "NVIDIA-A100-PCIE-40GB": 39.39,
    "NVIDIA-A100-SXM4-80GB": 79.22,
    "NVIDIA-A100-80GB-PCIe": 79.15,
    "NVIDIA-H100-80GB-HBM3": 79.19,
    "NVIDIA-H100-PCIe": 79.19,
    "NVIDIA-H100-NVL": 93.10,
    "NVIDIA-H200": 139.81,
    "NVIDIA-B200": 178.36,
    "NVIDIA-L40S": 44.39,
    "NVIDIA-L4": 22.05,
    "NVIDIA-A10G": 21.99,
}

# vLLM's memory per GPU besides weights and KV cache. Published profiles: Llama-3-8B on an
# A100-80GB 3.05 GiB at TP 1 (non-torch 1.79 + activation peak 1.26) and 4.84 GiB at TP 2
# (non-torch 3.58 + 1.26: NCCL and custom all-reduce buffers), vllm-project/vllm#10511;
# Llama-3.1-8B on an L40S with vLLM V1 left ~5.6 GiB besides weights and its 158,656-token
# cache (vllm-project/vllm#17122). Rounded up a little: a fit check should not promise
# tokens vLLM will not have.
OVERHEAD_GIB = 4.0
OVERHEAD_PARALLEL_GIB = 5.5
# /dev/shm with more than one GPU in a pod: NCCL and vLLM's worker message queues use shared
# memory; the container runtime's 64 MiB default fails at start. vLLM's Kubernetes guide
# mounts a 2Gi memory emptyDir at /dev/shm (docs/deployment/k8s.md).
MIN_SHM_MULTI_GPU = GIB
RECOMMENDED_SHM_MULTI_GPU = 2 * GIB
# Host memory a pod needs besides /dev/shm: each GPU worker process and the API server load
# torch and CUDA libraries (about 2-3 GiB resident each).
HOST_BYTES_PER_PROCESS = 3 * GIB

DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_ds_mla": 1,
}
# Architectures whose KV cache the formulas above describe (config.json `architectures`).
STANDARD_ATTENTION = frozenset(
    {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen2MoeForCausalLM",
        "Qwen3ForCausalLM",
        "Qwen3MoeForCausalLM",
    }
)
LATENT_ATTENTION = frozenset({"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"})
KV_FORMULAS = STANDARD_ATTENTION | LATENT_ATTENTION
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


class CannotEstimate(Exception):
    """The model's KV cache is not one this module's formulas describe; the message says why."""


@dataclass(frozen=True)
class KvShape:
    """What one token costs in the KV cache, from config.json."""

    architecture: str
    layers: int
    kv_heads: int  # 1 for MLA: one latent vector per token
    head_dim: int  # the latent's width for MLA (kv_lora_rank + qk_rope_head_dim)
    dtype_bytes: int
    latent: bool = False
    max_position_embeddings: int | None = None

    def bytes_per_token_per_gpu(self, tensor_parallel: int, pipeline_parallel: int) -> int:
        """KV bytes one token takes on each GPU of the replica (vLLM's page size per token)."""
        layers = math.ceil(self.layers / pipeline_parallel)
        if self.latent:  # the latent is replicated on every TP rank
            return layers * self.head_dim * self.dtype_bytes
        heads = max(1, self.kv_heads // tensor_parallel)
        return 2 * layers * heads * self.head_dim * self.dtype_bytes


def kv_shape(config: dict[str, Any], kv_cache_dtype: str | None = None) -> KvShape:
    """The KV-cache shape of a model from its config.json, or `CannotEstimate` saying why.

    `kv_cache_dtype` is vLLM's --kv-cache-dtype when set (e.g. 'fp8'); 'auto' or None uses the
    model's dtype, as vLLM does.
    """
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else "(no architectures in config.json)"
    if architecture not in KV_FORMULAS:
        raise CannotEstimate(
            f"{architecture} is not an architecture the KV-cache formula covers "
            f"({', '.join(sorted(KV_FORMULAS))})"
        )
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        raise CannotEstimate(
            f"{architecture} with sliding_window {config['sliding_window']}: vLLM keeps only the "
            "window's tokens for those layers, which the formula does not model"
        )
    dtype_name = kv_cache_dtype if kv_cache_dtype not in (None, "auto") else _model_dtype(config)
    dtype_bytes = DTYPE_BYTES.get(str(dtype_name))
    if dtype_bytes is None:
        raise CannotEstimate(f"unknown KV-cache dtype '{dtype_name}'")
    try:
        layers = int(config["num_hidden_layers"])
        if architecture in LATENT_ATTENTION:
            if not config.get("kv_lora_rank"):  # DeepSeek-V2-Lite-style configs without MLA
                raise CannotEstimate(f"{architecture} without kv_lora_rank")
            width = int(config["kv_lora_rank"]) + int(config["qk_rope_head_dim"])
            return KvShape(
                architecture, layers, 1, width, dtype_bytes, True, _max_positions(config)
            )
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except KeyError as missing:
        raise CannotEstimate(f"config.json has no {missing.args[0]}") from None
    return KvShape(
        architecture, layers, kv_heads, head_dim, dtype_bytes, False, _max_positions(config)
    )


def _model_dtype(config: dict[str, Any]) -> str:
    return str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")


def _max_positions(config: dict[str, Any]) -> int | None:
    value = config.get("max_position_embeddings")
    return int(value) if value else None


def weight_bytes(files: dict[str, int]) -> int:
    """Bytes of the weight files among `files` (path → size); all of them when none is one."""
    weights = sum(size for path, size in files.items() if path.endswith(WEIGHT_SUFFIXES))
    return weights or sum(files.values())


@dataclass(frozen=True)
class FitReport:
    """The fit check's numbers and verdict. `problems` refuse the release; `warnings` do not."""

    gpu_product: str | None
    gpu_memory_bytes: int | None
    gpus: int
    usable_bytes_per_gpu: int | None
    weights_bytes: int | None
    weights_source: str
    weights_bytes_per_gpu: int | None
    overhead_bytes_per_gpu: int
    kv_room_bytes_per_gpu: int | None
    kv_bytes_per_token_per_gpu: int | None
    kv_tokens: int | None
    max_model_len: int | None
    concurrent_sequences: int | None
    kv_note: str | None  # why the KV room is not estimated, when it is not
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """No problem refuses the release (warnings and unestimated parts do not)."""
        return not self.problems

    def describe(self) -> str:
        """The summary, then every problem and warning on its own line."""
        lines = [self.summary()]
        lines += [f"error: {p.field}: {p.message}" for p in self.problems]
        lines += [f"warning: {w.field}: {w.message}" for w in self.warnings]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for `render` and logs: weights per GPU, KV room, sequences at max length."""
        parts = [
            f"{self.gpus} × {self.gpu_product or 'GPU'}"
            + (f" ({_gib(self.gpu_memory_bytes)})" if self.gpu_memory_bytes else "")
        ]
        if self.weights_bytes_per_gpu is not None:
            parts.append(f"weights {_gib(self.weights_bytes_per_gpu)}/GPU ({self.weights_source})")
        if self.kv_tokens is not None:
            parts.append(f"KV cache {self.kv_tokens:,} tokens")
            if self.concurrent_sequences is not None:
                parts.append(
                    f"{self.concurrent_sequences} sequence(s) of {self.max_model_len:,} tokens"
                )
        elif self.kv_note:
            parts.append(f"KV cache not estimated: {self.kv_note}")
        verdict = "fits" if self.fits else "does NOT fit"
        return f"{verdict}: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (render --json, asset metadata)."""
        return {
            "fits": self.fits,
            "gpu_product": self.gpu_product,
            "gpus": self.gpus,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "usable_bytes_per_gpu": self.usable_bytes_per_gpu,
            "weights_bytes": self.weights_bytes,
            "weights_source": self.weights_source,
            "weights_bytes_per_gpu": self.weights_bytes_per_gpu,
            "overhead_bytes_per_gpu": self.overhead_bytes_per_gpu,
            "kv_room_bytes_per_gpu": self.kv_room_bytes_per_gpu,
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu,
            "kv_tokens": self.kv_tokens,
            "max_model_len": self.max_model_len,
            "concurrent_sequences": self.concurrent_sequences,
            "kv_note": self.kv_note,
            "problems": [{"field": p.field, "message": p.message} for p in self.problems],
            "warnings": [{"field": p.field, "message": p.message} for p in self.warnings],
        }


def check_fit(
    spec: ReleaseSpec,
    weights_bytes: int | None = None,
    config: dict[str, Any] | None = None,
    weights_source: str = "",
) -> FitReport:
    """Check the spec's GPUs, host memory and /dev/shm against the model.

    Without `weights_bytes` / `config`, the spec's `sizing.weights_gb` / `sizing.config` are
    used (what `validate` knows); what neither gives is reported as not estimated.
    """
    sizing, serving, resources = spec.sizing, spec.serving, spec.resources
    if weights_bytes is None and sizing.weights_gb is not None:
        weights_bytes = int(sizing.weights_gb * GB)
        weights_source = "sizing.weights_gb"
    if config is None:
        config = sizing.config
    tp, pp = serving.tensor_parallel_size, serving.pipeline_parallel_size
    gpus = tp * pp
    problems: list[Problem] = []
    warnings: list[Problem] = []

    gpu_memory = _gpu_memory_bytes(spec)
    if gpu_memory is None:
        warnings.append(
            Problem(
                "resources.gpu_product",
                (
                    f"'{resources.gpu_product}' is not in the table of GPU products"
                    if resources.gpu_product
                    else "no GPU product is named"
                )
                + ", so GPU memory is not checked; set sizing.gpu_memory_gib (GiB as CUDA "
                "reports it) or a known product: " + ", ".join(sorted(GPU_MEMORY_GIB)),
            )
        )
    usable = int(serving.gpu_memory_utilization * gpu_memory) if gpu_memory else None
    overhead_gib = sizing.overhead_gib
    if overhead_gib is None:
        overhead_gib = OVERHEAD_PARALLEL_GIB if gpus > 1 else OVERHEAD_GIB
    overhead = int(overhead_gib * GIB)
    per_gpu = -(-weights_bytes // gpus) if weights_bytes is not None else None
    if weights_bytes is None:
        warnings.append(
            Problem(
                "sizing.weights_gb",
                "the weights' size is unknown here, so their fit is not checked; declare "
                "sizing.weights_gb (render and the release use the published manifest)",
            )
        )

    shape: KvShape | None = None
    kv_note: str | None = None
    if config is None:
        kv_note = "no config.json (declare sizing.config, or render from published weights)"
    else:
        try:
            shape = kv_shape(config, _flag_value(serving.extra_args, "--kv-cache-dtype"))
        except CannotEstimate as error:
            kv_note = str(error)
    max_model_len = serving.max_model_len or (shape.max_position_embeddings if shape else None)

    room: int | None = None
    if usable is not None and per_gpu is not None:
        room = usable - per_gpu - overhead
        if per_gpu + overhead > usable:
            problems.append(
                Problem(
                    "resources.gpus",
                    f"the weights need {_gib(per_gpu)} per GPU ({_gib(weights_bytes)} over "
                    f"{gpus} GPU(s)) plus about {_gib(overhead)} of vLLM overhead, but "
                    f"{serving.gpu_memory_utilization} × {_gib(gpu_memory)} of a "
                    f"{resources.gpu_product or 'GPU'} gives {_gib(usable)}; "
                    + _more_gpus_advice(spec, weights_bytes or 0, usable, overhead),
                )
            )
    per_token = shape.bytes_per_token_per_gpu(tp, pp) if shape else None
    kv_tokens: int | None = None
    sequences: int | None = None
    if room is not None and per_token is not None and room > 0:
        kv_tokens = room // per_token
        if max_model_len:
            sequences = kv_tokens // max_model_len
            if kv_tokens < max_model_len:
                problems.append(
                    Problem(
                        "serving.max_model_len",
                        f"the KV cache left after the weights holds about {kv_tokens:,} "
                        f"tokens, less than one sequence of max_model_len {max_model_len:,}; "
                        f"vLLM would refuse to start. Lower max_model_len to at most "
                        f"{kv_tokens:,}, raise gpu_memory_utilization, or use more GPUs or "
                        "quantized weights",
                    )
                )
            elif sequences < sizing.min_concurrent_sequences:
                warnings.append(
                    Problem(
                        "serving.max_model_len",
                        f"the KV cache holds about {kv_tokens:,} tokens: only {sequences} "
                        f"sequence(s) of max_model_len {max_model_len:,} at once "
                        f"(sizing.min_concurrent_sequences is "
                        f"{sizing.min_concurrent_sequences}); requests will queue. Shorten "
                        "max_model_len or add GPUs",
                    )
                )
    elif shape is not None and room is None and kv_note is None:
        kv_note = "GPU memory or weights size unknown"

    problems += _placement_problems(spec)
    host_problems, host_warnings = _host_memory(spec, weights_bytes)
    problems += host_problems
    warnings += host_warnings
    return FitReport(
        gpu_product=resources.gpu_product,
        gpu_memory_bytes=gpu_memory,
        gpus=gpus,
        usable_bytes_per_gpu=usable,
        weights_bytes=weights_bytes,
        weights_source=weights_source or "unknown",
        weights_bytes_per_gpu=per_gpu,
        overhead_bytes_per_gpu=overhead,
        kv_room_bytes_per_gpu=room,
        kv_bytes_per_token_per_gpu=per_token,
        kv_tokens=kv_tokens,
        max_model_len=max_model_len,
        concurrent_sequences=sequences,
        kv_note=kv_note,
        problems=problems,
        warnings=warnings,
    )


def _gpu_memory_bytes(spec: ReleaseSpec) -> int | None:
    gib = spec.sizing.gpu_memory_gib
    if gib is None and spec.resources.gpu_product:
        gib = GPU_MEMORY_GIB.get(spec.resources.gpu_product)
    return int(gib * GIB) if gib is not None else None


def _more_gpus_advice(spec: ReleaseSpec, weights_bytes: int, usable: int, overhead: int) -> str:
    """What to change when the weights do not fit: how many GPUs of this product would."""
    free_per_gpu = usable - overhead
    if free_per_gpu <= 0:
        return "raise gpu_memory_utilization or choose a GPU with more memory"
    # weights only; the KV cache needs room on top, so round up to a power of two (TP sizes)
    needed = max(1, math.ceil(weights_bytes / free_per_gpu))
    tp = 1 << (needed - 1).bit_length()
    per_node = spec.resources.gpus_per_node
    where = (
        f"tensor_parallel_size {tp}"
        if tp <= per_node
        else f"{tp} GPUs (tensor_parallel_size {per_node} × pipeline_parallel_size "
        f"{-(-tp // per_node)} across nodes, deployed as a LeaderWorkerSet of "
        f"{-(-tp // per_node)} nodes a replica)"
    )
    return (
        f"use at least {where} of this product, a GPU with more memory, or quantized "
        "(e.g. FP8) weights"
    )


def _placement_problems(spec: ReleaseSpec) -> list[Problem]:
    """A replica wider than one node is a group of pods, one a node (a LeaderWorkerSet,
    k8s.leaderworkerset): its GPUs must split evenly over the group's pods, and each pod hold
    whole tensor-parallel groups — tensor parallelism inside a node, pipeline parallelism
    across nodes."""
    resources, tp = spec.resources, spec.serving.tensor_parallel_size
    size = group_size(spec)
    per_pod, rest = divmod(resources.gpus, size)
    if size == 1 or (rest == 0 and per_pod % tp == 0):
        return []
    return [
        Problem(
            "resources.gpus",
            f"{resources.gpus} GPUs per replica span {size} nodes of {resources.gpus_per_node}: "
            f"a multi-node replica is {size} pods of equal GPUs, each holding whole "
            f"tensor-parallel groups of {tp}, and {resources.gpus} GPUs do not split so. Use "
            f"tensor_parallel_size × pipeline_parallel_size with the pipeline stages spread "
            f"evenly over nodes (e.g. tensor_parallel_size {resources.gpus_per_node} × "
            f"pipeline_parallel_size {size})",
        )
    ]


def _host_memory(
    spec: ReleaseSpec, weights_bytes: int | None
) -> tuple[list[Problem], list[Problem]]:
    """/dev/shm for multi-GPU pods and the pod's memory limit for vLLM's processes and load."""
    resources = spec.resources
    problems: list[Problem] = []
    warnings: list[Problem] = []
    gpus_in_pod = resources.gpus // group_size(spec)  # a multi-node replica: one pod's
    shm = int(parse_quantity(resources.shm_size))
    memory = int(parse_quantity(resources.memory))
    if gpus_in_pod > 1 and shm < MIN_SHM_MULTI_GPU:
        problems.append(
            Problem(
                "resources.shm_size",
                f"{resources.shm_size} of /dev/shm for {gpus_in_pod} GPUs in one pod: NCCL and "
                "vLLM's workers share memory through /dev/shm and fail to start below 1Gi; "
                "set at least 2Gi",
            )
        )
    elif gpus_in_pod > 1 and shm < RECOMMENDED_SHM_MULTI_GPU:
        warnings.append(
            Problem(
                "resources.shm_size",
                f"{resources.shm_size} of /dev/shm for {gpus_in_pod} GPUs; vLLM's Kubernetes "
                "guide mounts 2Gi",
            )
        )
    processes = gpus_in_pod + 1 if gpus_in_pod > 1 else 1
    needed = shm + processes * HOST_BYTES_PER_PROCESS
    if memory < needed:
        problems.append(
            Problem(
                "resources.memory",
                f"{resources.memory} cannot hold /dev/shm ({resources.shm_size}, counted "
                f"against the limit) plus {processes} vLLM process(es) of about "
                f"{_gib(HOST_BYTES_PER_PROCESS)} each; set at least {_gib(needed)}",
            )
        )
    elif weights_bytes is not None:
        # each pod reads its share of the weights through the page cache, which the memory
        # cgroup counts: a smaller limit evicts and re-reads from NFS while loading
        share = weights_bytes * gpus_in_pod // max(1, resources.gpus)
        if memory < needed + share:
            warnings.append(
                Problem(
                    "resources.memory",
                    f"{resources.memory} is less than this pod's share of the weights "
                    f"({_gib(share)}) plus /dev/shm and vLLM's processes; loading reads every "
                    "file through the page cache, which counts against the limit, so the "
                    f"load will evict and re-read from the volume. Consider {_gib(needed + share)}",
                )
            )
    return problems, warnings


def _flag_value(arguments: list[str], flag: str) -> str | None:
    """The value of `flag` in vLLM arguments ('--flag v' or '--flag=v'), or None."""
    for position, argument in enumerate(arguments):
        name, _, value = argument.partition("=")
        if name.replace("_", "-") == flag:
            if value:
                return value
            if position + 1 < len(arguments):
                return arguments[position + 1]
    return None


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / GIB:.1f} GiB"


def refuse_what_cannot_fit(spec: ReleaseSpec, hub: HubClient) -> BeforeDownload:
    """The fit check (k8s/fit.py) on the Hub's listing of a revision about to be downloaded:
    its exact file sizes and its config.json. A model that cannot fit the spec's GPUs is
    refused before the download (hours, for a large one), with what to change; the blocking
    `fits_gpus` check judges the published bytes again afterwards."""

    def check(commit: str, files: list[RemoteFile]) -> None:
        config_file = next((f for f in files if f.path == CONFIG_NAME), None)
        config = hub.read_json(spec.source.repo, commit, config_file) if config_file else None
        report = check_fit(
            spec,
            weight_bytes({f.path: f.size for f in files}),
            config if isinstance(config, dict) else None,
            f"the Hub's listing of {commit[:12]}",
        )
        if not report.fits:
            raise RefusedBeforeDownload(
                f"{spec.source.repo}@{commit[:12]} cannot fit the spec's GPUs; nothing was "
                f"downloaded:\n{report.describe()}"
            )

    return check
