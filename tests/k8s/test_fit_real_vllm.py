"""The KV-cache formula against what real vLLM (0.32, CPU) reports for the tiny model."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from llm_rollout.k8s.fit import GIB, kv_shape
from sandbox.vllm_process import VllmProcess

pytestmark = pytest.mark.real_vllm  # scripts/test.sh runs these in their own lane

# vLLM's CPU worker sizes its cache from VLLM_CPU_KVCACHE_SPACE (GiB), not from
# gpu_memory_utilization, and logs e.g. "CPU KV cache size: 4,194,304 tokens"
# (vllm/v1/core/kv_cache_utils.py). Not the default 1 GiB, so the number must follow it.
KV_SPACE_GIB = 2
REPORTED = re.compile(r"KV cache size: ([\d,]+) tokens")
STARTUP_SECONDS = 240  # the line comes before warm-up: ~15 s alone, more beside other tests


def test_kv_tokens_match_what_vllm_allocates(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    expected = KV_SPACE_GIB * GIB // kv_shape(config).bytes_per_token_per_gpu(1, 1)
    log_path = tmp_path / "vllm.log"
    with log_path.open("wb") as log:
        server = VllmProcess(
            tiny_model_dir, log=log, env={"VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB)}
        ).start()
        try:
            reported = _reported_tokens(server, log_path)
        finally:
            server.stop()
    assert reported == expected == 4_194_304


def _reported_tokens(server: VllmProcess, log_path: Path) -> int:
    """Poll vLLM's log for its KV cache size; stop waiting once it is printed."""
    assert server.process is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        match = REPORTED.search(log_path.read_text(errors="replace"))
        if match:
            return int(match[1].replace(",", ""))
        if server.process.poll() is not None:
            raise AssertionError(
                f"vLLM exited before reporting its KV cache:\n{log_path.read_text()}"
            )
        time.sleep(0.5)
    raise AssertionError(f"vLLM printed no KV cache size in {STARTUP_SECONDS}s")
