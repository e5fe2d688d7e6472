"""The Dagster code location loads from workspace.yaml, as `dagster dev` would load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


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


def test_code_location_loads_from_workspace_yaml() -> None:
    result = dagster("definitions", "validate", "-w", "workspace.yaml")
    assert result.returncode == 0, result.stderr
    assert "Validation successful for code location llm-rollout" in result.stdout + result.stderr


def test_a_broken_spec_fails_the_code_location_naming_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: vllm\nsource: {repo: a/b}\nstorage: {existing_claim: w}\n"
        "serving: {vllm_version: '0.11.0'}\n"
    )
    result = dagster(
        "definitions",
        "validate",
        "-w",
        "workspace.yaml",
        env={"LLM_ROLLOUT_MODELS_DIR": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "bad.yaml: name: 'vllm' is reserved" in result.stderr + result.stdout


def test_every_model_has_its_graph_jobs_sensor_and_schedule() -> None:
    from pipelines.definitions import build_definitions
    from spec import load_specs, spec_files
    from tests.conftest import MODELS_DIR

    specs = load_specs(spec_files(MODELS_DIR))
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
