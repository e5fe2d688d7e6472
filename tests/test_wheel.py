"""`pip install llm-rollout` as a platform team would: the built wheel holds the product and
its data files but no sandbox and no tests, and in a clean virtualenv, far from the checkout,
it gives a working CLI and a code location that loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR, REPO_ROOT
from tests.test_import_rule import OUTSIDE_THE_PRODUCT, PRODUCT_PACKAGES

# installing Dagster and the Kubernetes client into a fresh virtualenv takes minutes
pytestmark = [pytest.mark.slow, pytest.mark.late]
# a bundled example, as a new user would start from one
EXAMPLE = sorted(EXAMPLES_DIR.glob("*.yaml"))[0]
INSTALL_TIMEOUT_SECONDS = 1200
COMMAND_TIMEOUT_SECONDS = 300
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".demo", ".dagster_home",
    ".mypy_cache", ".ruff_cache", ".pytest_cache",
)  # fmt: skip


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the source tree (no stale build/ folder in it)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(root / "dist"),
         str(source)], cwd=root, timeout=COMMAND_TIMEOUT_SECONDS)  # fmt: skip
    (built,) = (root / "dist").glob("llm_rollout-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel (and its dependencies from the index)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        cwd=venv.parent, timeout=INSTALL_TIMEOUT_SECONDS)  # fmt: skip
    return venv


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who never cloned the repository: nothing of the checkout on
    the import path, the virtualenv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("LLM_ROLLOUT_MODELS_DIR", None)
    return {**env, **extra}


def test_the_wheel_holds_the_product_and_its_data_but_no_sandbox_or_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
        ".dist-info")}  # fmt: skip
    assert top_level == set(PRODUCT_PACKAGES)
    assert not top_level & OUTSIDE_THE_PRODUCT
    # the data files a non-editable install reads at run time
    assert any(name.startswith("llm_rollout/images/vllm/") for name in names)
    assert any(name.startswith("llm_rollout/monitoring/schemas/") for name in names)
    assert "llm_rollout/k8s/dagster/values.yaml" in names


def test_the_installed_cli_validates_and_renders_an_example(
    installed: Path, tmp_path: Path
) -> None:
    env = clean_env(installed)
    bin_dir = installed / "bin"
    help_text = run([str(bin_dir / "llm-rollout"), "--help"], cwd=tmp_path, env=env).stdout
    assert "validate" in help_text and "render" in help_text
    validated = run([str(bin_dir / "llm-rollout"), "validate", str(EXAMPLE)], cwd=tmp_path, env=env)
    assert f"{EXAMPLE.name}: ok" in validated.stdout
    render = [
        *(str(bin_dir / "llm-rollout"), "render", str(EXAMPLE)),
        *("--out", str(tmp_path / "out"), "--weights-commit", "a" * 40),
        *("--image", "registry.example.com/llm/vllm:1"),
    ]
    run(render, cwd=tmp_path, env=env)
    assert list((tmp_path / "out" / "k8s").glob("*.yaml"))
    no_sandbox = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sandbox"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "No module named 'sandbox'" in no_sandbox.stderr


def test_the_installed_code_location_loads(installed: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(EXAMPLE, models / EXAMPLE.name)
    (tmp_path / "home").mkdir()
    env = clean_env(
        installed, LLM_ROLLOUT_MODELS_DIR=str(models), DAGSTER_HOME=str(tmp_path / "home")
    )
    result = run(
        [str(installed / "bin" / "dagster"), "definitions", "validate",
         "-m", "llm_rollout.pipelines.definitions"],
        cwd=tmp_path, env=env, timeout=COMMAND_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert "Validation successful" in result.stdout + result.stderr
