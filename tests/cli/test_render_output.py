"""What `llm-rollout render` writes is safe to read and to `kubectl apply` as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC, EXAMPLES_DIR

COMMIT = "c" * 40
ALIAS = re.compile(r"[&*]id\d+\b")
SPECS = [DEMO_SPEC, *sorted(EXAMPLES_DIR.glob("*.yaml"))]


def render(spec: Path, out: Path) -> None:
    arguments = ["render", str(spec), "--out", str(out), "--weights-commit", COMMIT]
    result = CliRunner().invoke(cli, [*arguments, "--image", "registry.example.com/vllm:1"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_rendered_files_have_no_yaml_anchors(spec: Path, tmp_path: Path) -> None:
    # shared dicts (labels, a probe used three times) came out as &id001 … *id001
    render(spec, tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".yaml", ".yml")]
    assert files
    for path in files:
        assert not ALIAS.search(path.read_text()), path


def test_dagster_rbac_has_no_yaml_anchors() -> None:
    result = CliRunner().invoke(cli, ["dagster-rbac", str(EXAMPLES_DIR)])
    assert result.exit_code == 0, result.output
    assert not ALIAS.search(result.output)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_applying_the_rendered_release_starts_one_deployment_and_no_canary(
    spec: Path, tmp_path: Path
) -> None:
    # `kubectl apply -f out/k8s` installs the release; a canary of the same release beside
    # it was an extra GPU pod serving nothing new
    render(spec, tmp_path)
    documents = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "k8s").glob("*"))]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    model = load_spec(spec)
    replicas = deployments[0]["spec"].get("replicas")
    expected = model.autoscaling.min if model.autoscaling else model.replicas
    assert replicas in (None, expected)


def test_render_and_plan_explain_weights_commit_and_image_alike() -> None:
    def option_help(command: str) -> str:
        return CliRunner().invoke(cli, [command, "--help"], terminal_width=400).output

    render_help, plan_help = option_help("render"), option_help("plan")
    for text in (
        "Give this or --weights-root.",
        "Required when the spec's image.builder builds one",
    ):
        assert text in render_help and text in plan_help


def test_a_replica_wider_than_a_node_renders_a_leaderworkerset_instead_of_a_deployment(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(DEMO_SPEC.read_text())
    data["serving"] |= {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
    data["resources"] |= {"gpus": 8, "gpus_per_node": 4, "memory": "32Gi", "shm_size": "2Gi"}
    wide = tmp_path / "wide.yaml"
    wide.write_text(yaml.safe_dump(data))
    render(wide, tmp_path / "out")
    documents = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "out/k8s").glob("*"))]
    kinds = [d["kind"] for d in documents]
    assert "Deployment" not in kinds and kinds.count("LeaderWorkerSet") == 1
    (lws,) = (d for d in documents if d["kind"] == "LeaderWorkerSet")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert schema_problems(documents) == []
    role = next(d for d in documents if d["kind"] == "Role")
    assert any("leaderworkersets/scale" in rule["resources"] for rule in role["rules"])
