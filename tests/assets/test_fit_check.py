"""The fit check on the weights, run by a real Dagster instance: it passes with the numbers in
its metadata; a model that cannot fit is refused before its download, and published weights
that no longer fit stop the run at the blocking check, before anything after the weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.assets.fit import FIT_CHECK, build_fit_check
from llm_rollout.assets.weights import build_weights_asset
from llm_rollout.pipelines.resources import WeightsStore
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.sandbox_servers import TinyModelHub

DEMO = load_spec(DEMO_SPEC)
KEY = dg.AssetKey(["demo_tiny", "weights"])


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as test_instance:
        yield test_instance


def on_gpu(**resources: object) -> ReleaseSpec:
    changed = DEMO.resources.model_copy(update={"gpu_product": "NVIDIA-L4", **resources})
    return DEMO.model_copy(update={"resources": changed})


def run(
    spec: ReleaseSpec, hub: TinyModelHub, root: Path, instance: dg.DagsterInstance
) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """Materialize weights, the fit check and a step after the weights (as `release` is)."""
    ran: list[str] = []

    @dg.asset(key=dg.AssetKey(["demo_tiny", "after_weights"]), deps=[KEY])
    def after_weights() -> None:
        ran.append("after_weights")

    result = dg.materialize(
        [build_weights_asset(spec), build_fit_check(spec), after_weights],
        resources={"weights_store": WeightsStore(root=str(root), hub_endpoint=hub.url)},
        instance=instance,
        raise_on_error=False,
    )
    return result, ran


def test_published_weights_that_fit_pass_with_their_numbers(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    result, ran = run(on_gpu(), tiny_hub, tmp_path / "weights", instance)
    (check,) = result.get_asset_check_evaluations()
    assert check.asset_check_key == dg.AssetCheckKey(KEY, FIT_CHECK)
    assert check.passed, check.description
    metadata = {name: value.value for name, value in check.metadata.items()}
    assert metadata["commit"] == tiny_hub.commit
    assert metadata["gpu_product"] == "NVIDIA-L4"
    assert metadata["max_model_len"] == 256
    assert metadata["kv_cache_tokens"] > 30_000_000  # 512 bytes a token in ~16 GiB
    assert metadata["problems"] == 0
    assert ran == ["after_weights"]


def test_a_model_that_cannot_fit_is_refused_before_its_download(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # /dev/shm larger than the memory limit leaves nothing for vLLM's processes
    root = tmp_path / "w"
    result, ran = run(on_gpu(memory="2Gi", shm_size="2Gi"), tiny_hub, root, instance)
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "cannot fit the spec's GPUs; nothing was downloaded" in message
    assert "error: resources.memory: 2Gi cannot hold /dev/shm" in message
    assert not list(root.rglob("model.safetensors*"))
    assert ran == []


def test_published_weights_that_no_longer_fit_stop_the_run_before_the_release(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Published while the spec fitted; the spec changed since: the weights are re-verified,
    not downloaded (no check before a download), and the blocking check stops the run."""
    root = tmp_path / "w"
    fitted, _ = run(on_gpu(), tiny_hub, root, instance)
    assert fitted.success
    result, ran = run(on_gpu(memory="2Gi", shm_size="2Gi"), tiny_hub, root, instance)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.description is not None
    assert "error: resources.memory: 2Gi cannot hold /dev/shm" in check.description
    assert ran == []  # blocking: the step after the weights never ran
