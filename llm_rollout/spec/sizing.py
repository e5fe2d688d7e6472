"""The `sizing:` section of a release spec: what the fit check (`k8s/fit.py`) needs to know
before the weights are fetched, and its limits.

`validate` has only the spec, so the spec says how big the weights are and what the model's
attention looks like (`config`: the fields of the model's config.json the estimate reads).
`render`, preflight and the release's asset check replace both by the published folder's
exact bytes (its manifest) and its own config.json.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SizingModel(BaseModel):
    """Base for the sizing section: unknown fields are errors and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Sizing(SizingModel):
    """How big the model is and what the fit check accepts."""

    weights_gb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description=(
            "Total size of the weight files in GB (10^9 bytes, as the Hub shows it), for the "
            "fit check in `validate`; render and the `fits_gpus` check use the published "
            "manifest's exact bytes."
        ),
    )
    config: dict[str, Any] | None = Field(
        None,
        description=(
            "The model's config.json fields the KV-cache estimate reads (architectures, "
            "num_hidden_layers, num_key_value_heads, head_dim, torch_dtype, kv_lora_rank, "
            "qk_rope_head_dim, max_position_embeddings); the published config.json wins."
        ),
    )
    gpu_memory_gib: float | None = Field(
        None,
        gt=0,
        le=4096,
        description=(
            "Memory of one GPU in GiB as CUDA reports it; overrides the table of known "
            "products (docs/sizing.md) for `resources.gpu_product`."
        ),
    )
    overhead_gib: float | None = Field(
        None,
        ge=0,
        le=1024,
        description=(
            "vLLM's memory per GPU besides weights and KV cache (CUDA context, NCCL, CUDA "
            "graphs, the profiling run's activation peak); unset: 4 GiB, 5.5 GiB with "
            "tensor or pipeline parallelism."
        ),
    )
    min_concurrent_sequences: int = Field(
        4,
        ge=1,
        le=100_000,
        description=(
            "The fit check warns when fewer full `max_model_len` sequences fit the KV cache."
        ),
    )
