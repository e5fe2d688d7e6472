"""The image asset materialized by a real Dagster instance against a real registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.assets.image import build_image_asset
from llm_rollout.images.context import render_context
from llm_rollout.pipelines.resources import ImageBuilder
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC, SPEC_FILES
from tests.fixtures.registry import LocalRegistry

DEMO = load_spec(DEMO_SPEC)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as test_instance:
        yield test_instance


def test_the_image_asset_records_reference_digest_and_hash(
    registry: LocalRegistry, instance: dg.DagsterInstance
) -> None:
    spec = DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "docker", "registry": f"{registry.host}/llm"}
            )
        }
    )
    context = render_context(spec)
    repository, tag = context.reference.split("/", 1)[1].rsplit(":", 1)
    digest = registry.push_image(repository, tag)  # built before: the asset skips the build
    result = dg.materialize(
        [build_image_asset(spec)],
        resources={"image_builder": ImageBuilder(insecure_registries=[registry.host])},
        instance=instance,
    )
    (materialization,) = result.asset_materializations_for_node("demo_tiny__image")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["reference"] == context.reference
    assert metadata["digest"] == digest
    assert metadata["context_hash"] == context.content_hash
    assert (metadata["builder"], metadata["skipped_build"]) == ("docker", True)
    assert metadata["vllm_version"] == "0.32.0"


def test_a_registry_login_problem_fails_the_asset_without_retries(
    private_registry: LocalRegistry, instance: dg.DagsterInstance
) -> None:
    spec = DEMO.model_copy(
        update={
            "image": DEMO.image.model_copy(
                update={"builder": "docker", "registry": f"{private_registry.host}/llm"}
            )
        }
    )
    result = dg.materialize(
        [build_image_asset(spec)],
        resources={"image_builder": ImageBuilder(insecure_registries=[private_registry.host])},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in events
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "needs credentials" in str(failure.event_specific_data)


def test_the_code_location_has_an_image_asset_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_rollout.pipelines.definitions import load_definitions

    models = tmp_path / "models"
    models.mkdir()
    for path in SPEC_FILES.values():
        shutil.copy(path, models / path.name)
    monkeypatch.setenv("LLM_ROLLOUT_MODELS_DIR", str(models))
    defs = load_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"demo_tiny/image", "deepseek_v4/image"} <= keys
