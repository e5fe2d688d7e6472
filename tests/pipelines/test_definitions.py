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
