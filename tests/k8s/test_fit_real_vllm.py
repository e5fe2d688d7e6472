"""The KV-cache formula against what real vLLM (0.32, CPU) reports for the tiny model: the
session's pair's canary server, started with a KV cache space of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

from llm_rollout.k8s.fit import GIB, kv_shape
from tests.fixtures.sandbox_servers import CANARY_KV_SPACE_GIB, VllmPair

# vLLM's CPU worker sizes its cache from VLLM_CPU_KVCACHE_SPACE (GiB), not from
# gpu_memory_utilization, and logs e.g. "CPU KV cache size: 4,194,304 tokens"
# (vllm/v1/core/kv_cache_utils.py). The pair's canary runs with 2 GiB, stable with 1: the
# number must follow the setting.
REPORTED = re.compile(r"KV cache size: ([\d,]+) tokens")


def test_kv_tokens_match_what_vllm_allocates(
    tiny_model_dir: Path, real_vllm_pair: VllmPair
) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    expected = CANARY_KV_SPACE_GIB * GIB // kv_shape(config).bytes_per_token_per_gpu(1, 1)
    match = REPORTED.search(real_vllm_pair.canary_log.read_text(errors="replace"))
    assert match, real_vllm_pair.canary_log.read_text(errors="replace")[-3000:]
    assert int(match[1].replace(",", "")) == expected == 4_194_304
