"""The weights asset and its blocking check, materialized by a real Dagster instance."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.assets.weights import build_weights_asset, build_weights_check
from llm_rollout.pipelines.resources import WeightsStore
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC, SPEC_FILES
from tests.fixtures.sandbox_servers import TinyModelHub

SPEC = load_spec(DEMO_SPEC)
KEY = dg.AssetKey(["demo_tiny", "weights"])
CHECK = dg.AssetCheckKey(KEY, "manifest_verifies")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as test_instance:
        yield test_instance


def materialize(
    hub: TinyModelHub, root: Path, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [build_weights_asset(SPEC), build_weights_check(SPEC)],
        resources={"weights_store": WeightsStore(root=str(root), hub_endpoint=hub.url)},
        instance=instance,
        raise_on_error=False,
    )


def test_materializing_publishes_and_the_check_passes(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    result = materialize(tiny_hub, tmp_path / "weights", instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("demo_tiny__weights")
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    assert metadata["commit"] == tiny_hub.commit
    assert metadata["files"] == 7
    assert metadata["bytes"] > 1_000_000
    assert str(metadata["manifest"]).endswith(f"{tiny_hub.commit}/llm-rollout-manifest.json")
    (check,) = result.get_asset_check_evaluations()
    assert check.asset_check_key == CHECK
    assert check.passed


def test_a_damaged_published_folder_fails_the_blocking_check(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = tmp_path / "weights"
    assert materialize(tiny_hub, root, instance).success
    (root / "llm-rollout--tiny-llama" / tiny_hub.commit / "unexpected.txt").write_text("x")
    result = dg.materialize(
        [build_weights_check(SPEC)],
        resources={"weights_store": WeightsStore(root=str(root), hub_endpoint=tiny_hub.url)},
        instance=instance,
        raise_on_error=False,
        selection=dg.AssetSelection.checks(CHECK),
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.description is not None and "unexpected.txt" in check.description


def test_a_gated_repo_fails_the_asset_at_once_with_what_to_do(
    tiny_hub: TinyModelHub, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, "hf_token_we_do_not_have")
    result = dg.materialize(
        [build_weights_asset(SPEC)],
        resources={"weights_store": WeightsStore(root=str(tmp_path), hub_endpoint=tiny_hub.url)},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []  # a token problem is not transient: no retry
    assert "set HF_TOKEN" in str(failures[0].event_specific_data)


def test_the_code_location_lists_every_models_weights_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_rollout.pipelines.definitions import load_definitions

    models = tmp_path / "models"
    models.mkdir()
    for path in SPEC_FILES.values():
        shutil.copy(path, models / path.name)
    monkeypatch.setenv("LLM_ROLLOUT_MODELS_DIR", str(models))
    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"demo_tiny/weights", "deepseek_v4/weights"} <= keys
    check_keys = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert ("demo_tiny/weights", "manifest_verifies") in check_keys
