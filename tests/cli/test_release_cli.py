"""`llm-rollout render` and `llm-rollout status` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from llm_rollout.cli.main import cli
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.lifecycle import Lifecycle
from llm_rollout.k8s.validation import schema_problems
from llm_rollout.spec import load_spec
from llm_rollout.weights.manifest import Manifest
from tests.conftest import DEEPSEEK_SPEC, DEMO_SPEC, REPO_ROOT, SPEC_FILES
from tests.fixtures.cluster import Kube
from tests.k8s.conftest import release

COMMIT = "d" * 40


def test_render_writes_schema_valid_manifests_for_both_specs(tmp_path: Path) -> None:
    for name, extra in (("demo-tiny", []), ("deepseek-v4", ["--image", "reg/x-vllm:1"])):
        out = tmp_path / name
        result = CliRunner().invoke(
            cli,
            [
                "render",
                str(SPEC_FILES[name]),
                "--out",
                str(out),
                "--weights-commit",
                COMMIT,
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        files = sorted((out / "k8s").glob("*.yaml"))
        objects = [yaml.safe_load(f.read_text()) for f in files]
        assert {"Namespace", "Service", "Deployment", "Role"} <= {o["kind"] for o in objects}
        assert schema_problems(objects) == []
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        assert (
            deployment["spec"]["template"]["metadata"]["annotations"][
                "llm-rollout.io/weights-commit"
            ]
            == COMMIT
        )


def test_render_finds_the_published_commit(tmp_path: Path) -> None:
    published = tmp_path / "weights" / "llm-rollout--tiny-llama"
    (published / "refs").mkdir(parents=True)
    (published / "refs" / "main").write_text(COMMIT + "\n")
    (published / COMMIT).mkdir()
    # a published folder: render reads its manifest for the fit check
    Manifest("llm-rollout/tiny-llama", "main", COMMIT, (), "2026-01-01T00:00:00Z").write(
        published / COMMIT
    )
    result = CliRunner().invoke(
        cli,
        [
            "render",
            str(DEMO_SPEC),
            "--out",
            str(tmp_path / "out"),
            "--weights-root",
            str(tmp_path / "weights"),
        ],
    )
    assert result.exit_code == 0, result.output


def test_render_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "render",
            str(DEEPSEEK_SPEC),
            "--out",
            str(tmp_path),
            "--weights-commit",
            COMMIT,
        ],
    )
    assert result.exit_code == 1
    assert "image.builder is 'kaniko', so the image is built: pass --image" in result.output


def test_status_shows_live_releases(kube: Kube) -> None:
    spec = load_spec(DEMO_SPEC)
    lifecycle = Lifecycle(ClusterClient(kube.api), spec)
    first = release(spec, 1)
    lifecycle.first_release(first)
    lifecycle.wait(lifecycle.workload_name(first.release_id))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "llm-rollout"),
            "status",
            str(DEMO_SPEC),
        ],
        env={**os.environ, "KUBECONFIG": str(kube.cluster.kubeconfig)},
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{first.release_id}" in result.stdout and "<- stable" in result.stdout
    assert f"stable  demo-tiny-{first.release_id}: 1/1 available, complete" in result.stdout
