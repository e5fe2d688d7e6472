"""`llm-rollout image render|build`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from llm_rollout.cli.main import cli
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC
from tests.fixtures.registry import LocalRegistry


def test_render_writes_the_context_and_prints_the_tag(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["image", "render", str(DEEPSEEK_SPEC), "--out", str(tmp_path / "ctx")],
    )
    assert result.exit_code == 0, result.output
    assert "tag registry.example.com/llm/deepseek-v4-vllm:0.11.0-" in result.output
    assert (tmp_path / "ctx" / "Dockerfile").exists()


def test_build_with_a_prebuilt_image(registry: LocalRegistry, tmp_path: Path) -> None:
    digest = registry.push_image("vllm/vllm-openai", "v0.32.0")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (DEMO_SPEC)
        .read_text()
        .replace(
            "  builder: none",
            f"  builder: none\n  reference: {registry.host}/vllm/vllm-openai:v0.32.0",
        )
    )
    result = CliRunner().invoke(
        cli, ["image", "build", str(spec)], env={"LLM_ROLLOUT_INSECURE_REGISTRIES": registry.host}
    )
    assert result.exit_code == 0, result.output
    assert f"{registry.host}/vllm/vllm-openai@{digest} (none, prebuilt)" in result.output


def test_build_says_why_it_cannot(private_registry: LocalRegistry, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (DEMO_SPEC)
        .read_text()
        .replace("  builder: none", f"  builder: docker\n  registry: {private_registry.host}/llm")
    )
    result = CliRunner().invoke(
        cli,
        ["image", "build", str(spec)],
        env={"LLM_ROLLOUT_INSECURE_REGISTRIES": private_registry.host},
    )
    assert result.exit_code == 1
    assert "needs credentials" in result.output
