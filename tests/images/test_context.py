"""Rendered build contexts: both bases lint clean, and tags are content-addressed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_rollout.images.context import BuildContext, ImageError, render_context
from llm_rollout.spec import ReleaseSpec, load_spec
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC

HADOLINT = str(Path(sys.executable).parent / "hadolint")
DEEPSEEK = load_spec(DEEPSEEK_SPEC)


def with_image(spec: ReleaseSpec, **image: Any) -> ReleaseSpec:
    return spec.model_copy(update={"image": spec.image.model_copy(update=image)})


def variant(**serving: Any) -> BuildContext:
    spec = DEEPSEEK.model_copy(update={"serving": DEEPSEEK.serving.model_copy(update=serving)})
    return render_context(spec)


@pytest.mark.parametrize("base", ["official", "cuda"])
@pytest.mark.parametrize("version", ["0.8.5", "0.11.0"])
def test_both_bases_pass_hadolint_without_warnings(base: str, version: str, tmp_path: Path) -> None:
    spec = with_image(DEEPSEEK, base=base)
    spec = spec.model_copy(
        update={"serving": spec.serving.model_copy(update={"vllm_version": version})}
    )
    folder = render_context(spec).write(tmp_path / "context")
    lint = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", str(folder / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "healthcheck.py",
    ]


def test_the_official_base_keeps_the_versions_entrypoint() -> None:
    dockerfile = render_context(DEEPSEEK).files["Dockerfile"].decode()
    assert "FROM vllm/vllm-openai:v0.11.0" in dockerfile
    assert "ENTRYPOINT" not in dockerfile  # the image's own `vllm serve` stays
    assert 'org.opencontainers.image.source="https://huggingface.co/deepseek-ai/DeepSeek-V4"' in (
        dockerfile
    )
    assert 'io.llm-rollout.vllm-version="0.11.0"' in dockerfile
    cuda = render_context(with_image(DEEPSEEK, base="cuda")).files["Dockerfile"].decode()
    assert 'ENTRYPOINT ["vllm", "serve"]' in cuda
    assert 'pip install --no-cache-dir "vllm==0.11.0"' in cuda
    assert "python${PYTHON_VERSION}" in cuda  # nvidia/cuda ships no Python: installed
    old = variant(vllm_version="0.8.5").spec
    old_cuda = render_context(with_image(old, base="cuda")).files["Dockerfile"].decode()
    assert 'ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server"]' in old_cuda


def test_tags_are_stable_and_change_with_any_input() -> None:
    first, again = render_context(DEEPSEEK), render_context(DEEPSEEK)
    assert first.reference == again.reference
    assert first.reference.startswith("registry.example.com/llm/deepseek-v4-vllm:0.11.0-")
    assert len(first.tag.split("-")[-1]) == 12
    changed = {
        variant(vllm_version="0.11.1").reference,
        render_context(with_image(DEEPSEEK, base="cuda")).reference,
        render_context(
            DEEPSEEK.model_copy(
                update={
                    "rollout": DEEPSEEK.rollout.model_copy(update={"startup_budget_seconds": 1300})
                }
            )
        ).reference,  # healthcheck start period
    }
    assert first.reference not in changed and len(changed) == 3


def test_a_built_image_needs_a_registry() -> None:
    spec = load_spec(DEMO_SPEC)  # builder none, no registry
    with pytest.raises(ImageError, match=r"image\.registry is needed"):
        _ = render_context(spec).reference
