"""The fit check of a model's published weights: a blocking check on the weights asset, so a
rollout run stops before its release step touches a GPU when the weights, vLLM's overhead and
one max_model_len sequence of KV cache cannot fit the spec's GPUs (k8s/fit.py).

It checks the published commit's exact bytes (its manifest) and its own config.json. It sits
on `weights`, not on `release`: a check on the release would run after the release was
applied, and a blocking check stops only what comes after its asset in the run.

No `from __future__ import annotations`: Dagster reads the context annotation at load.
"""

from typing import Any

import dagster as dg

from llm_rollout.assets.naming import asset_key
from llm_rollout.assets.weights import NEVER_MATERIALIZED, published_commit_of
from llm_rollout.k8s.fit import GIB, FitReport, check_fit, weight_bytes
from llm_rollout.pipelines.resources import WeightsStore
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.errors import WeightsError
from llm_rollout.weights.model_files import published_model_files

FIT_CHECK = "fits_gpus"


def build_fit_check(spec: ReleaseSpec) -> dg.AssetChecksDefinition:
    """Blocking check on `<model>/weights`: the published commit fits the spec's GPUs."""
    key = asset_key(spec, "weights")
    gpus = spec.serving.tensor_parallel_size * spec.serving.pipeline_parallel_size

    @dg.asset_check(
        asset=key,
        name=FIT_CHECK,
        blocking=True,
        description=(
            f"The published weights (exact bytes) plus vLLM's overhead fit {gpus} × "
            f"{spec.resources.gpu_product or 'GPU'} at gpu_memory_utilization "
            f"{spec.serving.gpu_memory_utilization}, with KV cache for at least one "
            "max_model_len sequence; /dev/shm and host memory suffice (docs/sizing.md)."
        ),
    )
    def fits_gpus(
        context: dg.AssetCheckExecutionContext, weights_store: WeightsStore
    ) -> dg.AssetCheckResult:
        commit = published_commit_of(context, key)
        if commit is None:
            return dg.AssetCheckResult(passed=False, description=NEVER_MATERIALIZED)
        try:
            files = published_model_files(weights_store.root_path, spec.source.repo, commit)
        except WeightsError as error:
            return dg.AssetCheckResult(passed=False, description=str(error))
        report = check_fit(
            spec, weight_bytes(files.sizes), files.config, f"manifest of {commit[:12]}"
        )
        return dg.AssetCheckResult(
            passed=report.fits,
            description=report.describe(),
            metadata=fit_metadata(report, commit),
        )

    return fits_gpus


def fit_metadata(report: FitReport, commit: str) -> dict[str, Any]:
    """The numbers the UI shows beside the check (absent ones left out)."""
    values: dict[str, Any] = {"commit": commit, "gpus": report.gpus}
    if report.gpu_product:
        values["gpu_product"] = report.gpu_product
    if report.weights_bytes is not None:
        values["weights_bytes"] = dg.MetadataValue.int(report.weights_bytes)
    if report.weights_bytes_per_gpu is not None:
        values["weights_gib_per_gpu"] = round(report.weights_bytes_per_gpu / GIB, 2)
    if report.kv_tokens is not None:
        values["kv_cache_tokens"] = dg.MetadataValue.int(report.kv_tokens)
    if report.concurrent_sequences is not None:
        values["sequences_at_max_model_len"] = report.concurrent_sequences
    if report.max_model_len is not None:
        values["max_model_len"] = report.max_model_len
    if report.kv_note:
        values["kv_cache_not_estimated"] = report.kv_note
    values["problems"] = len(report.problems)
    values["warnings"] = len(report.warnings)
    return values
