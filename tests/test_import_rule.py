"""The product never imports the sandbox (or the tests): the installed package does not ship
them, and `llm-rollout` must start without them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# The packages the wheel installs (pyproject's packages.find); sandbox/, tests/ and bench/
# stay in the source checkout.
PRODUCT_PACKAGES = tuple(
    pattern.rstrip("*")
    for pattern in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
OUTSIDE_THE_PRODUCT = {"sandbox", "tests", "bench"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports: import statements anywhere in it (a lazy import inside
    a function counts) and importlib.import_module / __import__ calls with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else (
                function.id if isinstance(function, ast.Name) else ""
            )  # fmt: skip
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                names.add(str(first.value))
    return names


def test_the_product_packages_are_the_ones_the_wheel_installs() -> None:
    assert PRODUCT_PACKAGES == ("llm_rollout",)
    assert not set(PRODUCT_PACKAGES) & OUTSIDE_THE_PRODUCT


def product_modules() -> list[Path]:
    return sorted(p for package in PRODUCT_PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import sandbox.world\nfrom sandbox import demo\n"
        "def f():\n    from sandbox.demo import Demo\n"
        "import importlib\nimportlib.import_module('sandbox.load')\n"
    )
    assert imported_modules(module) >= {"sandbox.world", "sandbox", "sandbox.demo", "sandbox.load"}


@pytest.mark.parametrize(
    "path", product_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT))
)  # fmt: skip
def test_no_product_module_imports_the_sandbox_or_the_tests(path: Path) -> None:
    outside = {m for m in imported_modules(path) if m.split(".")[0] in OUTSIDE_THE_PRODUCT}
    assert outside == set(), f"{path.relative_to(REPO_ROOT)} imports {sorted(outside)}"


def loaded_by(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `statement`."""
    probe = (
        f"{statement}\nimport json, sys\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_cli_starts_without_the_sandbox_or_dagster() -> None:
    # `llm-rollout --version` and `--help` load the command modules only: no sandbox (it is
    # not installed outside the checkout) and no Dagster (seconds of CPU for nothing)
    loaded = loaded_by("import llm_rollout.cli.main")
    assert not loaded & (OUTSIDE_THE_PRODUCT | {"dagster"})


def test_the_code_location_loads_without_the_sandbox() -> None:
    assert not loaded_by("import llm_rollout.pipelines.definitions") & OUTSIDE_THE_PRODUCT


def test_the_demo_is_a_command_of_the_sandbox_not_of_llm_rollout() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--headless" in result.stdout
    command = Path(sys.executable).parent / "llm-rollout"
    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True)
    assert " demo " not in usage.stdout
