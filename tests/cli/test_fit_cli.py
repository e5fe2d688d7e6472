"""The fit check as a user meets it: `validate` from what a spec declares, `render` from the
published weights' exact bytes and config.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s.fit import weight_bytes
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.manifest import Manifest
from tests.conftest import DEMO_SPEC
from tests.fixtures.sandbox_servers import TinyModelHub

DEEPSEEK_V3_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "num_hidden_layers": 61,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "max_position_embeddings": 163840,
    "torch_dtype": "bfloat16",
}


def deepseek_on(gpus: int, product: str) -> dict[str, object]:
    return {
        "serving": {"tensor_parallel_size": gpus, "max_model_len": 32768},
        "resources": {
            "gpus": gpus,
            "gpu_product": product,
            "memory": "1024Gi",
            "shm_size": "32Gi",
        },
        "sizing": {"weights_gb": 688, "config": DEEPSEEK_V3_CONFIG},
    }


def test_validate_refuses_a_spec_whose_weights_cannot_fit(write_spec: Callable[..., Path]) -> None:
    path = write_spec(**deepseek_on(2, "NVIDIA-A100-SXM4-80GB"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: resources.gpus: fit: the weights need 320.4 GiB per GPU" in result.output
    assert "use at least 16 GPUs" in result.output


def test_validate_accepts_a_spec_that_fits(write_spec: Callable[..., Path]) -> None:
    path = write_spec(**deepseek_on(8, "NVIDIA-H200"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok" in result.output


def test_validate_prints_warnings_without_failing(write_spec: Callable[..., Path]) -> None:
    path = write_spec(resources={"gpu_product": "NVIDIA-Unknown-GPU"})
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: resources.gpu_product: fit: 'NVIDIA-Unknown-GPU' is not in" in (
        result.output
    )


@pytest.fixture
def published(tiny_hub: TinyModelHub, tmp_path: Path) -> tuple[Path, str]:
    """The tiny model fetched from the sandbox Hub and published under a weights root."""
    root = tmp_path / "weights"
    result = fetch_weights(
        WeightsSource(tiny_hub.repo_id, "main"), root, HubClient(endpoint=tiny_hub.url)
    )
    return root, result.commit


def tiny_spec(tmp_path: Path, **resources: object) -> Path:
    data = yaml.safe_load(DEMO_SPEC.read_text())
    data["resources"] |= {"gpu_product": "NVIDIA-L4", **resources}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_render_prints_the_fit_from_the_published_manifest(
    published: tuple[Path, str], tmp_path: Path
) -> None:
    root, commit = published
    arguments = ["render", str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out")]
    arguments += ["--weights-root", str(root)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert (
        f"fit: fits: 1 × NVIDIA-L4 (22.0 GiB), weights 0.0 GiB/GPU (manifest of {commit[:12]})"
        in result.output
    )
    assert "sequence(s) of 256 tokens" in result.output

    as_json = CliRunner().invoke(cli, [*arguments, "--json"])
    assert as_json.exit_code == 0, as_json.output
    fit = json.loads(as_json.stdout)["fit"]
    manifest = Manifest.read(root / "llm-rollout--tiny-llama" / commit)
    exact = weight_bytes({f.path: f.size for f in manifest.files})
    assert fit["weights_bytes"] == exact  # the safetensors file's exact size
    assert fit["kv_bytes_per_token_per_gpu"] == 512  # from the published config.json
    assert fit["fits"] is True


def test_render_refuses_a_release_that_cannot_fit(
    published: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = published
    spec = tiny_spec(tmp_path, shm_size="64Mi", gpus=2, gpus_per_node=2)
    data = yaml.safe_load(spec.read_text())
    data["serving"]["tensor_parallel_size"] = 2
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["render", str(spec), "--out", str(out), "--weights-root", str(root)]
    )
    assert result.exit_code == 1
    assert "error: resources.shm_size: 64Mi of /dev/shm for 2 GPUs" in result.output
    assert "nothing rendered" in result.output
    assert not out.exists()
