"""The bundled DeepSeek examples fit their GPUs; the seed's 2 × A100 does not, and says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s.fit import check_fit
from llm_rollout.spec import load_spec
from tests.conftest import EXAMPLES_DIR

DEEPSEEK_V3 = EXAMPLES_DIR / "deepseek-v3.yaml"
DISTILL_70B = EXAMPLES_DIR / "deepseek-r1-distill-llama-70b.yaml"


@pytest.mark.parametrize(
    ("path", "summary"),
    [
        (
            DEEPSEEK_V3,
            "fits: 8 × NVIDIA-H200 (139.8 GiB), weights 80.2 GiB/GPU (sizing.weights_gb), KV "
            "cache 655,733 tokens, 10 sequence(s) of 65,536 tokens",
        ),
        (
            DISTILL_70B,
            "fits: 4 × NVIDIA-A100-SXM4-80GB (79.2 GiB), weights 32.8 GiB/GPU "
            "(sizing.weights_gb), KV cache 452,896 tokens, 13 sequence(s) of 32,768 tokens",
        ),
    ],
)
def test_the_examples_fit_without_warnings(path: Path, summary: str) -> None:
    report = check_fit(load_spec(path))
    assert report.summary() == summary
    assert report.problems == [] and report.warnings == []


def test_deepseek_v3_on_the_seeds_two_a100s_fails_validate_saying_what_to_change(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(DEEPSEEK_V3.read_text())
    data["serving"]["tensor_parallel_size"] = 2
    data["resources"] |= {"gpus": 2, "gpu_product": "NVIDIA-A100-SXM4-80GB", "gpus_per_node": 4}
    undersized = tmp_path / "deepseek-v3-on-2xa100.yaml"
    undersized.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["validate", str(undersized)])
    assert result.exit_code == 1
    assert (
        f"{undersized}: resources.gpus: fit: the weights need 320.8 GiB per GPU (641.7 GiB "
        "over 2 GPU(s)) plus about 5.5 GiB of vLLM overhead, but 0.92 × 79.2 GiB of a "
        "NVIDIA-A100-SXM4-80GB gives 72.9 GiB; use at least 16 GPUs (tensor_parallel_size 4 × "
        "pipeline_parallel_size 4 across nodes, deployed as a LeaderWorkerSet of 4 nodes a "
        "replica) of "
        "this product, a GPU with more memory, or quantized (e.g. FP8) weights"
    ) in result.output


def test_the_examples_validate() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES_DIR)])
    assert result.exit_code == 0, result.output
    assert "deepseek-v3.yaml: ok" in result.output
    assert "deepseek-r1-distill-llama-70b.yaml: ok" in result.output
