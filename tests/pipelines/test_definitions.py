"""The Dagster code location loads from workspace.yaml, as `dagster dev` would load it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.pipelines.definitions import build_definitions
from llm_rollout.pipelines.specs import BrokenSpecError, load_models
from llm_rollout.spec import SpecFileError
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC, REPO_ROOT, SPEC_FILES


def dagster(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "dagster"
    return subprocess.run(
        [str(command), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def test_code_location_loads_from_workspace_yaml(tmp_path: Path) -> None:
    shutil.copy(DEEPSEEK_SPEC, tmp_path / "deepseek-v4.yaml")
    result = dagster(
        "definitions", "validate", "-w", "workspace.yaml",
        env={"LLM_ROLLOUT_MODELS_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Validation successful for code location llm-rollout" in result.stdout + result.stderr


def test_the_repository_loads_no_model_by_default() -> None:
    # examples/ and the demo's spec are never loaded: the default models/ folder holds no
    # spec, so a code location started without LLM_ROLLOUT_MODELS_DIR fails naming it
    env = {k: v for k, v in os.environ.items() if k != "LLM_ROLLOUT_MODELS_DIR"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-w", "workspace.yaml"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert str(REPO_ROOT / "models") in output
    assert "no spec files" in output


BROKEN = (
    "name: vllm\nsource: {repo: a/b}\nstorage: {existing_claim: w}\n"
    "serving: {vllm_version: '0.11.0'}\n"
)


def models_folder(tmp_path: Path) -> Path:
    """A models folder with the demo spec and a broken one beside it."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(DEMO_SPEC, folder / "demo-tiny.yaml")
    (folder / "bad.yaml").write_text(BROKEN)
    return folder


def test_a_broken_spec_disables_only_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = models_folder(tmp_path)
    monkeypatch.setenv("LLM_ROLLOUT_MODELS_DIR", str(folder))
    from llm_rollout.pipelines.definitions import load_definitions

    defs = load_definitions()
    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    # the good model keeps its gate sensor, jobs and assets
    assert repository.has_sensor_def("demo_tiny_gate")
    assert repository.has_job("demo_tiny_rollout")
    # the broken one is a failing sensor named after its file, reporting file:line: field
    sensor = repository.get_sensor_def("broken_spec__bad_yaml")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    expected = f"{folder / 'bad.yaml'}:1:1: name: 'vllm' is reserved"
    assert expected in (sensor.description or "")
    with pytest.raises(BrokenSpecError, match="its model is disabled") as caught:
        sensor(dg.build_sensor_context())
    assert expected in str(caught.value)
    assert "llm-rollout validate" in str(caught.value)


def test_two_specs_for_one_model_disable_the_second_file(tmp_path: Path) -> None:
    folder = models_folder(tmp_path)
    shutil.copy(folder / "demo-tiny.yaml", folder / "zz-copy.yaml")
    models = load_models(folder)
    assert [spec.name for spec in models.specs] == ["demo-tiny"]
    assert sorted(b.path.name for b in models.broken) == ["bad.yaml", "zz-copy.yaml"]
    defs = build_definitions(models.specs, models.broken)
    assert defs.get_repository_def().has_sensor_def("broken_spec__zz_copy_yaml")


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_missing_or_empty_models_folder_fails_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LLM_ROLLOUT_MODELS_DIR", str(tmp_path / folder))
    from llm_rollout.pipelines.definitions import load_definitions

    with pytest.raises(SpecFileError, match=str(tmp_path / folder)):
        load_definitions()


def test_the_code_location_loads_with_a_broken_spec(tmp_path: Path) -> None:
    result = dagster(
        "definitions",
        "validate",
        "-w",
        "workspace.yaml",
        env={"LLM_ROLLOUT_MODELS_DIR": str(models_folder(tmp_path))},
    )
    assert result.returncode == 0, result.stderr
    assert "Validation successful for code location llm-rollout" in result.stdout + result.stderr


def test_every_model_has_its_graph_jobs_sensor_and_schedule() -> None:
    from llm_rollout.pipelines.definitions import build_definitions
    from llm_rollout.spec import load_specs

    specs = load_specs(list(SPEC_FILES.values()))
    defs = build_definitions(specs)
    repository = defs.get_repository_def()
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for spec in specs:
        group = spec.name.replace("-", "_")
        assert {f"{group}/{stage}" for stage in ("weights", "image", "release", "live")} <= keys
        for job in ("rollout", "promote", "rollback", "refresh_weights"):
            assert repository.has_job(f"{group}_{job}")
        rollout = repository.get_job(f"{group}_rollout")
        assert rollout.tags["llm-rollout/deploy"] == spec.name
        assert "dagster/max_runtime" in rollout.tags
        assert repository.get_sensor_def(f"{group}_gate").minimum_interval_seconds == (
            spec.gate.interval_seconds
        )
        assert repository.has_schedule_def(f"{group}_refresh") == (spec.refresh.cron is not None)
    assert repository.get_sensor_def("rollback_failed_rollouts")
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("demo_tiny/release", "gate") in checks
