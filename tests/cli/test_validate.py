"""`llm-rollout validate`: what a user sees for good and bad specs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from tests.conftest import MODELS_DIR, REPO_ROOT


def test_bundled_specs_validate_through_the_installed_command() -> None:
    command = Path(sys.executable).parent / "llm-rollout"
    result = subprocess.run(
        [str(command), "validate", *map(str, sorted(MODELS_DIR.glob("*.yaml")))],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deepseek-v4.yaml: ok" in result.stdout
    assert "demo-tiny.yaml: ok" in result.stdout


def test_a_folder_validates_every_spec_in_it() -> None:
    result = CliRunner().invoke(cli, ["validate", str(MODELS_DIR)])
    assert result.exit_code == 0
    assert result.output.count(": ok") == 2


def test_bad_specs_print_file_field_message_and_exit_1(
    write_spec: Callable[..., Path],
) -> None:
    bad = write_spec("bad.yaml", name="vllm", serving={"tensor_parallel_size": 4})
    broken = write_spec("broken.yaml", text="name: [unclosed\n")
    good = write_spec("good.yaml")
    result = CliRunner().invoke(cli, ["validate", str(bad), str(broken), str(good)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{bad}: name: 'vllm' is reserved")
    assert lines[1].startswith(f"{bad}: resources.gpus: 1 GPUs per replica")
    assert lines[2].startswith(f"{broken}: (top level): invalid YAML")
    assert len(lines) == 3
    assert "3 problem(s) in 2 of 3 spec file(s)" in result.stderr


def test_two_specs_for_the_same_model_collide(write_spec: Callable[..., Path]) -> None:
    first, second = write_spec("a.yaml"), write_spec("b.yaml")
    result = CliRunner().invoke(cli, ["validate", str(first), str(second)])
    assert result.exit_code == 1
    assert f"{second}: name: 'qwen-small' in namespace 'llm-serving' is also released by" in (
        result.stdout
    )


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: (top level): cannot read: No such file or directory" in result.stdout
