"""Shared fixtures: the repository layout and writing spec files for a test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_rollout.spec import ReleaseSpec
from sandbox.merge import merged as merged  # tests import it from here

REPO_ROOT = Path(__file__).resolve().parent.parent
# The bundled example specs: never loaded unless a user copies one into a models folder.
EXAMPLES_DIR = REPO_ROOT / "examples"
# The seed deployment's shape as a test fixture (not a model that fits: see examples/).
DEEPSEEK_SPEC = REPO_ROOT / "tests" / "fixtures" / "deepseek-v4.yaml"
# The demo's own spec lives with the sandbox, outside every models folder.
DEMO_SPEC = REPO_ROOT / "sandbox" / "specs" / "demo-tiny.yaml"
# The specs the tests use, by model name.
SPEC_FILES = {"deepseek-v4": DEEPSEEK_SPEC, "demo-tiny": DEMO_SPEC}

# The smallest spec that is valid: every other field has a default.
MINIMAL_SPEC: dict[str, Any] = {
    "name": "qwen-small",
    "source": {"repo": "Qwen/Qwen3-0.6B"},
    "storage": {"nfs": {"server": "10.0.0.5", "path": "/exports/models"}},
    "serving": {"vllm_version": "0.11.0"},
}


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write the minimal spec, changed by keyword sections, to a YAML file; return its path."""

    def write(filename: str = "model.yaml", text: str | None = None, **changes: Any) -> Path:
        path = tmp_path / filename
        path.write_text(text if text is not None else yaml.safe_dump(merged(MINIMAL_SPEC, changes)))
        return path

    return write


@pytest.hookimpl(tryfirst=True)  # before `-m` picks tests by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the session-wide real vLLM servers are real-vLLM tests too; `late` modules
    (long end-to-end runs) go after everything else (in scripts/test.sh's parallel lanes they
    then overlap the real-vLLM lane's rollbacks rather than its promotion)."""
    for item in items:
        if "real_vllm_pair" in getattr(item, "fixturenames", ()):  # real_vllm uses it too
            item.add_marker(pytest.mark.real_vllm)
    items.sort(key=lambda item: item.get_closest_marker("late") is not None)


pytest_plugins = [
    "tests.fixtures.sandbox_servers",
    "tests.fixtures.cluster",
    "tests.fixtures.registry",
    "tests.fixtures.prometheus",
    "tests.fixtures.postgres",
]


def two_nodes_a_replica(spec: ReleaseSpec, **changes: Any) -> ReleaseSpec:
    """`spec` at TP 4 × PP 2 on nodes of 4 GPUs: each replica a group of two nodes, so its
    releases are LeaderWorkerSets; `changes` replace further top-level fields."""
    return spec.model_copy(
        update={
            "serving": spec.serving.model_copy(
                update={"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
            ),
            "resources": spec.resources.model_copy(update={"gpus": 8, "gpus_per_node": 4}),
            **changes,
        }
    )
