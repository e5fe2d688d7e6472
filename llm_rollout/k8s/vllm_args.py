"""The vLLM server arguments for a spec, as the chosen vLLM version expects them.

The official `vllm/vllm-openai` image's entrypoint is `vllm serve` since 0.9 (the model is a
positional argument) and `python3 -m vllm.entrypoints.openai.api_server` before (`--model`).
We pass arguments only, so the image's own entrypoint runs.
"""

from __future__ import annotations

from llm_rollout.k8s.labels import HTTP_PORT
from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.schema import Serving

# First release whose image entrypoint is `vllm serve`.
SERVE_ENTRYPOINT_SINCE = (0, 9, 0)
# `--shutdown-timeout` (on SIGTERM, refuse new requests and let in-flight ones finish for up
# to that many seconds) was added by vllm-project/vllm#34730 (Feb 2026, part of RFC #24885),
# reverted by #36628 and re-landed by #36666 (merged 2026-03-10). The first release whose CLI
# reference lists it is v0.18.0 (docs.vllm.ai/en/v0.18.0/cli/serve/); no earlier release is
# verified to have it, and an unknown flag stops `vllm serve` at start, so older versions get
# no flag and the preStop delay is their only drain. Checked in 0.32.0's
# vllm/engine/arg_utils.py (`shutdown_timeout: int = 0`).
SHUTDOWN_TIMEOUT_SINCE = (0, 18, 0)


def uses_serve_entrypoint(serving: Serving) -> bool:
    """Whether the official image of this version runs `vllm serve`."""
    return serving.version_tuple >= SERVE_ENTRYPOINT_SINCE


def vllm_args(spec: ReleaseSpec, model_path: str) -> list[str]:
    """Arguments to the image's entrypoint that serve `model_path` as the spec says."""
    serving = spec.serving
    model = [model_path] if uses_serve_entrypoint(serving) else ["--model", model_path]
    args = [
        *model,
        "--served-model-name",
        spec.served_model_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(HTTP_PORT),
        "--tensor-parallel-size",
        str(serving.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(serving.pipeline_parallel_size),
        "--gpu-memory-utilization",
        str(serving.gpu_memory_utilization),
    ]
    if serving.max_model_len is not None:
        args += ["--max-model-len", str(serving.max_model_len)]
    args.append(
        "--enable-prefix-caching" if serving.enable_prefix_caching else "--no-enable-prefix-caching"
    )
    if serving.version_tuple >= SHUTDOWN_TIMEOUT_SINCE:
        args += ["--shutdown-timeout", str(serving.shutdown_timeout_seconds)]
    return [*args, *serving.extra_args]
