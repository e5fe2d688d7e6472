"""The release spec's fields, defaults and the bundled model specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_rollout.spec import ReleaseSpec, load_spec, load_specs, spec_files
from llm_rollout.spec.quantity import parse_duration_seconds, parse_quantity
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC, EXAMPLES_DIR, MINIMAL_SPEC


def test_bundled_specs_are_valid() -> None:
    examples = load_specs(spec_files(EXAMPLES_DIR))
    assert {spec.name for spec in examples} == {"deepseek-v3", "deepseek-r1-distill-70b"}
    assert load_spec(DEMO_SPEC).name == "demo-tiny"


def test_deepseek_spec_reproduces_the_seed_deployment() -> None:
    spec = load_spec(DEEPSEEK_SPEC)
    assert spec.resources.gpus == 2
    assert spec.serving.tensor_parallel_size == 2
    assert spec.resources.gpu_product == "NVIDIA-A100-SXM4-80GB"
    assert spec.serving.max_model_len == 32768
    assert spec.serving.enable_prefix_caching
    assert spec.storage.nfs is not None
    assert spec.autoscaling is not None
    assert (spec.autoscaling.min, spec.autoscaling.max) == (2, 6)
    assert spec.rollout.max_unavailable == 0


def test_minimal_spec_gets_safe_defaults() -> None:
    spec = ReleaseSpec.model_validate(MINIMAL_SPEC)
    assert spec.namespace == "llm-serving"
    assert spec.source.revision == "main"
    assert spec.rollout.strategy == "canary"
    assert spec.rollout.max_unavailable == 0
    assert spec.rollout.max_surge == 1
    assert spec.image.builder == "none"
    assert spec.resources.gpus == 1
    assert spec.resources.tolerations[0].key == "nvidia.com/gpu"
    assert spec.served_model_name == "qwen-small"
    assert spec.gate.window_seconds == 300
    assert spec.autoscaling is None


def test_spec_is_immutable() -> None:
    spec = ReleaseSpec.model_validate(MINIMAL_SPEC)
    with pytest.raises(ValueError):
        spec.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "value"),
    [("8", 8), ("500m", 0.5), ("16Gi", 16 * 2**30), ("1.5G", 1.5e9), ("2Ki", 2048)],
)
def test_kubernetes_quantities(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == value


@pytest.mark.parametrize("text", ["64GB", "1.5.0", "", "-1", "Gi"])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_durations() -> None:
    assert parse_duration_seconds("30s") == 30
    assert parse_duration_seconds("5m") == 300
    assert parse_duration_seconds("2h") == 7200


def test_a_spec_path_that_is_a_folder_is_reported(tmp_path: Path) -> None:
    from llm_rollout.spec import SpecFileError

    with pytest.raises(SpecFileError, match="cannot read"):
        load_spec(tmp_path)
