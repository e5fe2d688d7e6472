"""End to end with real vLLM: the tiny model served by the CPU build as sandbox pods, a new
upstream commit rolled out as a canary under steady load through the Service, judged by the
gate sensor on real vLLM metrics in a real Prometheus, and promoted — with the stable
Deployment never below its desired replicas and no request failing."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sandbox.dagster_home import DagsterHome, DagsterProcess
from sandbox.load import LoadGenerator
from sandbox.prometheus import PrometheusMissing
from sandbox.tiny_model import REPO_ID
from sandbox.vllm_process import VllmNotInstalled, vllm_python
from sandbox.world import SandboxWorld
from tests.conftest import MODELS_DIR, merged
from tests.pipelines.orchestra import Orchestra, wait_for, write_models

SUCCESS = dg.DagsterRunStatus.SUCCESS
VLLM_START = 600.0  # a CPU vLLM loads in ~40-60 s alone, far slower beside two others


def demo_spec() -> dict[str, object]:
    base = yaml.safe_load((MODELS_DIR / "demo-tiny.yaml").read_text())
    return merged(
        base,
        {
            "replicas": 1,
            # two CPU servers on a two-core machine differ by far more than 30% from noise
            # alone; the relative budget is exercised precisely with emulated pods
            "gate": {"max_relative_regression": 2.0, "window": "20s", "min_requests": 5},
        },
    )


@pytest.fixture(scope="module")
def orchestra(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Orchestra]:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(str(missing))
    root = tmp_path_factory.mktemp("e2e-vllm")
    models_dir = write_models(root / "models", [demo_spec()])
    world = SandboxWorld(root / "world", tiny_model_dir=tiny_model_dir)
    try:
        world.start()
    except PrometheusMissing as missing:
        pytest.skip(str(missing))
    home = DagsterHome(root / "dagster-home", world.env(models_dir))
    daemon = DagsterProcess.daemon(home, (root / "daemon.log").open("ab")).start()
    running = Orchestra(world, home, daemon, models_dir, root)
    try:
        yield running
    finally:
        running.daemon.stop()
        world.stop()


class StableWatch:
    """Polls the stable Deployment in the background and keeps the lowest availability."""

    def __init__(self, orchestra: Orchestra) -> None:
        self.orchestra = orchestra
        self.lowest: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StableWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            available = self.orchestra.deployment("demo-tiny").status.available_replicas or 0
            self.lowest = available if self.lowest is None else min(self.lowest, available)


def test_a_good_release_goes_from_weights_to_canary_to_promoted_under_load(
    orchestra: Orchestra, tmp_path: Path, tiny_model_dir: Path
) -> None:
    first = orchestra.rollout("demo-tiny")
    assert orchestra.wait_run(first, VLLM_START).status == SUCCESS, orchestra.errors(first)
    stable_release = orchestra.history("demo-tiny").stable

    # upstream publishes a new commit of the model (same weights, a new model card)
    changed = tmp_path / "tiny-llama-v2"
    shutil.copytree(tiny_model_dir, changed)
    (changed / "README.md").write_text("# tiny-llama\n\nA second revision.\n")
    new_commit = orchestra.world.hub.store.commit_folder(REPO_ID, changed)

    service = orchestra.world.service_url("llm-demo", "demo-tiny")
    with LoadGenerator(service, "tiny-llama", rate=1.0) as load, StableWatch(orchestra) as watch:
        second = orchestra.rollout("demo-tiny")
        assert orchestra.wait_run(second).status == SUCCESS, orchestra.errors(second)
        canary = orchestra.history("demo-tiny").canary
        assert canary and canary != stable_release
        promote = wait_for(
            lambda: orchestra.runs("demo_tiny_promote"), VLLM_START + 120, "the gate to promote"
        )[0]
        assert promote.tags["llm-rollout/release"] == canary
        assert orchestra.wait_run(promote.run_id, VLLM_START).status == SUCCESS, orchestra.errors(
            promote.run_id
        )
    history = orchestra.history("demo-tiny")
    assert history.stable == canary and history.canary is None
    assert history.find(canary).weights_commit == new_commit  # type: ignore[union-attr]
    assert orchestra.deployment("demo-tiny", "canary").spec.replicas == 0
    assert watch.lowest is not None and watch.lowest >= 1, "stable dropped below desired"
    assert load.counts.ok > 0 and load.counts.failed == 0, load.counts.errors[:3]
    passes = [
        e
        for e in orchestra.gate_evaluations("demo-tiny")
        if e["release_id"] == canary and e["passed"]
    ]
    assert len(passes) >= 3 and passes[0]["canary_ttft_p99"] > 0  # real vLLM histograms
    assert not orchestra.runs("demo_tiny_rollback")
