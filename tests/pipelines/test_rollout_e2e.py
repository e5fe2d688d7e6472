"""End to end, with emulated vLLM pods: the real Dagster daemon ticks the gate and failure
sensors and runs the queue, runs are launched with `dagster job launch`, releases go to the
sandbox cluster over HTTP, and the gate reads a real Prometheus that discovers the pods.

Every model has its own namespace, so the scenarios share one world, one daemon and one code
server (tests/pipelines/orchestra.py); each model's first release is installed at the start
(two by rollout runs, the rest through the library). The scenarios then make their first move
at once (`started`) and go on side by side, each test waiting only for its own outcome. The
ones that stop the daemon or Prometheus are test_rollout_e2e_disruptions.py's, in a world of
their own (scripts/test.sh runs the two modules side by side)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from llm_rollout.k8s.history import History
from llm_rollout.pipelines.definitions import build_definitions
from llm_rollout.pipelines.resources import KubernetesCluster, WeightsStore
from sandbox.cluster.cluster import NodeSpec
from sandbox.tiny_model import REPO_ID
from tests.pipelines.orchestra import (
    EMULATOR,
    LAUNCHERS,
    RUN_TIMEOUT,
    Orchestra,
    emulated_spec,
    orchestrated,
    wait_for,
)

# its daemon and ~10 pods: after the quick tests
pytestmark = [pytest.mark.late, pytest.mark.daemon]

NODES = tuple(NodeSpec(f"gpu-node-{i}", gpus=4) for i in range(1, 5))
SUCCESS = dg.DagsterRunStatus.SUCCESS
MODELS = [
    emulated_spec("e2e-bad"),
    emulated_spec("e2e-stuck"),
    emulated_spec("e2e-rolling", rollout={"strategy": "rolling"}),
    emulated_spec("e2e-refresh", refresh={"cron": "0 3 * * *", "auto_rollout": True}),
    emulated_spec("e2e-matall"),
    emulated_spec("e2e-bake", gate={"bake_seconds": 60}),
    emulated_spec("e2e-early"),
]
# the first install shown by live; the refresh schedule reads the weights' commit
INSTALLED_BY_RUN = ("e2e-bad", "e2e-refresh")
INSTALLED_BY_LIBRARY = tuple(m["name"] for m in MODELS if m["name"] not in INSTALLED_BY_RUN)


@pytest.fixture(scope="module")
def orchestra(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Orchestra]:
    with orchestrated(
        tmp_path_factory.mktemp("e2e"),
        tiny_model_dir,
        NODES,
        MODELS,
        INSTALLED_BY_RUN,
        INSTALLED_BY_LIBRARY,
    ) as running:
        yield running


@dataclass
class Started:
    """A scenario's first move, and what it saw of the model before making it."""

    stable_before: str | None
    generation: int
    run_id: str = ""
    materialized: Future[MaterializedAll] | None = None


@dataclass
class MaterializedAll:
    """*Materialize all* with a bad image, then the promote job launched by hand at once."""

    result: subprocess.CompletedProcess[str]
    history: History  # right after the materialization
    promote_run_id: str
    stable_after_promote: str | None


def materialize_all_then_promote(orchestra: Orchestra) -> MaterializedAll:
    result = orchestra.materialize_all("e2e-matall", image=f"{EMULATOR}:errors")
    history = orchestra.history("e2e-matall")
    promote = orchestra.launch("e2e_matall_promote")  # while the canary is being gated
    orchestra.wait_run(promote)
    return MaterializedAll(result, history, promote, orchestra.history("e2e-matall").stable)


@pytest.fixture(scope="module")
def started(orchestra: Orchestra) -> Iterator[dict[str, Started]]:
    """The first move of every scenario that leaves the daemon and Prometheus alone, made at
    once: their runs, gates and sensors then go on side by side (each in its own namespace)."""

    def start(name: str, image: str | None = None, revision: str | None = None) -> Started:
        stable = orchestra.history(name).stable
        generation = orchestra.deployment(name).status.observed_generation
        return Started(stable, generation, orchestra.rollout(name, image, revision))

    with ThreadPoolExecutor(max_workers=LAUNCHERS) as pool:
        matall = Started(
            orchestra.history("e2e-matall").stable,
            orchestra.deployment("e2e-matall").status.observed_generation,
            # *Materialize all* runs in a `dagster asset materialize` process until it is done
            materialized=pool.submit(materialize_all_then_promote, orchestra),
        )
        moves = {
            "bad": pool.submit(start, "e2e-bad", f"{EMULATOR}:slow_decoding"),
            "stuck": pool.submit(start, "e2e-stuck", "registry.sandbox.local/no-such-image:1"),
            "rolling": pool.submit(start, "e2e-rolling", "registry.sandbox.local/no-such-image:2"),
            "early": pool.submit(start, "e2e-early", None, "no-such-branch"),
            "bake": pool.submit(start, "e2e-bake", f"{EMULATOR}:healthy-v2"),
        }
        yield {"matall": matall, **{name: move.result() for name, move in moves.items()}}


def test_the_first_release_installed_as_stable_is_what_the_live_asset_shows(
    orchestra: Orchestra,
) -> None:
    stable = orchestra.history("e2e-bad").stable
    event = orchestra.instance.get_latest_materialization_event(dg.AssetKey(["e2e_bad", "live"]))
    assert event is not None and event.asset_materialization is not None
    live = event.asset_materialization
    assert live.metadata["release_id"].value == stable
    assert live.metadata["previous_release_id"].value == "none"
    # the UI lists every release Deployment of the model with its replicas
    assert f"| e2e-bad-{stable} | stable | 1 / 1 |" in live.metadata["deployments"].value
    assert "installed as stable" in (live.description or "")
    # What the UI's "Unsynced" badge reads: live recorded after the release it serves.
    graph = build_definitions([orchestra.spec("e2e-bad")]).resolve_asset_graph()
    instance = orchestra.instance
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    status = resolver.get_status(dg.AssetKey(["e2e_bad", "live"]))
    causes = resolver.get_stale_causes(dg.AssetKey(["e2e_bad", "live"]))
    assert status == StaleStatus.FRESH, [cause.reason for cause in causes]


def test_a_bad_release_is_rolled_back_by_the_gate_and_stable_is_untouched(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    stable_before, pods_before = started["bad"].stable_before, started["bad"].generation
    run_id = started["bad"].run_id  # image: slow decoding
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    canary = orchestra.released(run_id)

    rollback = wait_for(
        lambda: orchestra.runs("e2e_bad_rollback"), 120, "the gate sensor to launch a rollback"
    )[0]
    assert rollback.tags["llm-rollout/release"] == canary
    assert "failing windows in a row" in str(rollback.run_config)
    assert orchestra.wait_run(rollback.run_id).status == SUCCESS, orchestra.errors(rollback.run_id)

    history = orchestra.history("e2e-bad")
    assert history.canary is None and history.stable == stable_before
    assert orchestra.deployment("e2e-bad", canary).spec.replicas == 0
    assert orchestra.deployment("e2e-bad").status.observed_generation == pods_before
    failing = [e for e in orchestra.gate_evaluations("e2e-bad") if e["release_id"] == canary]
    assert failing and not failing[0]["passed"]
    assert failing[0]["phase"] == "RollingBack" and "itl" in failing[0]["measurements"]
    assert "itl_mean" in failing[0]["chart"] and "canary" in failing[0]["chart"]
    assert not orchestra.runs("e2e_bad_promote")


def test_a_release_with_an_unknown_image_stalls_and_is_rolled_back_with_the_reason(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    stable_before, run_id = started["stuck"].stable_before, started["stuck"].run_id
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)

    rollback = wait_for(
        lambda: orchestra.runs("e2e_stuck_rollback"), 150, "a rollback of the stalled canary"
    )[0]
    assert "stalled" in str(rollback.run_config)
    assert "no-such-image" in str(rollback.run_config) or "ImagePull" in str(rollback.run_config)
    assert orchestra.wait_run(rollback.run_id).status == SUCCESS, orchestra.errors(rollback.run_id)
    history = orchestra.history("e2e-stuck")
    assert history.canary is None and history.stable == stable_before
    assert orchestra.deployment("e2e-stuck").status.available_replicas == 1


def test_a_failed_rolling_update_is_rolled_back_by_the_failure_sensor(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    stable_before, run_id = started["rolling"].stable_before, started["rolling"].run_id
    run = orchestra.wait_run(run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert "did not complete" in orchestra.errors(run_id)
    rollback = wait_for(
        lambda: orchestra.runs("e2e_rolling_rollback"), 90, "the controller's rollback"
    )[0]
    assert "rolling update did not complete" in str(rollback.run_config)
    assert orchestra.wait_run(rollback.run_id).status == SUCCESS, orchestra.errors(rollback.run_id)
    assert orchestra.history("e2e-rolling").stable == stable_before
    stable = orchestra.deployment("e2e-rolling")
    assert stable.status.available_replicas == 1 and stable.status.updated_replicas == 1


def test_a_rollout_failing_before_any_cluster_write_is_not_rolled_back(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    run_id = started["early"].run_id  # revision: no-such-branch
    assert orchestra.wait_run(run_id).status == dg.DagsterRunStatus.FAILURE
    assert "no-such-branch" in orchestra.errors(run_id)
    skipped = wait_for(
        lambda: [
            t
            for t in orchestra.sensor_ticks("rollback_failed_rollouts")
            if run_id in (t.skip_reason or "")
        ],
        60,
        "the failure sensor to pass over the run",
    )
    assert "before changing the cluster" in (skipped[0].skip_reason or "")
    assert not orchestra.runs("e2e_early_rollback")
    assert orchestra.history("e2e-early").stable == started["early"].stable_before


def test_the_refresh_schedule_launches_a_rollout_only_for_a_new_upstream_commit(
    orchestra: Orchestra, tmp_path: Path, tiny_model_dir: Path
) -> None:
    defs = build_definitions([orchestra.spec("e2e-refresh")])
    schedule = defs.get_schedule_def("e2e_refresh_refresh")
    store = WeightsStore(
        root=str(orchestra.world.weights_root), hub_endpoint=orchestra.world.hub.url
    )
    kubernetes = KubernetesCluster(kubeconfig=str(orchestra.world.cluster.kubeconfig))
    resources = {"weights_store": store, "kubernetes": kubernetes}

    def tick() -> dg.ScheduleExecutionData:
        with (
            orchestra.home.instance() as instance,
            dg.build_schedule_context(instance, resources=resources) as context,
        ):
            return schedule.evaluate_tick(context)

    unchanged = tick()
    assert not unchanged.run_requests
    assert "nothing new" in (unchanged.skip_message or "")

    changed = tmp_path / "tiny-llama-v2"
    shutil.copytree(tiny_model_dir, changed)
    (changed / "README.md").write_text("# tiny-llama\n\nA new upstream revision.\n")
    new_commit = orchestra.world.hub.store.commit_folder(REPO_ID, changed)
    requested = tick().run_requests or []
    assert len(requested) == 1 and requested[0].run_key == f"e2e-refresh:{new_commit}"
    assert requested[0].job_name in (None, "e2e_refresh_rollout")
    run_id = orchestra.home.launch(
        "e2e_refresh_rollout", requested[0].run_config, dict(requested[0].tags)
    )
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    history = orchestra.history("e2e-refresh")
    assert history.canary and history.find(history.canary).weights_commit == new_commit  # type: ignore[union-attr]
    assert not tick().run_requests  # the new commit is now the known one


def test_materialize_all_with_a_bad_release_leaves_stable_untouched_and_rolls_it_back(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    stable_before, generation = started["matall"].stable_before, started["matall"].generation
    assert started["matall"].materialized is not None  # image: every request fails
    done = started["matall"].materialized.result(timeout=2 * RUN_TIMEOUT)
    output = done.result.stdout + done.result.stderr
    assert done.result.returncode == 0, output[-3000:]
    assert "not promoting" in output, output[-3000:]  # live saw no decision to carry out
    canary = done.history.canary
    assert canary and done.history.stable == stable_before

    # the promote job by hand, without a reason, did not promote either
    promote = done.promote_run_id
    assert orchestra.run(promote).status == SUCCESS, orchestra.errors(promote)
    assert done.stable_after_promote == stable_before

    rollback = wait_for(
        lambda: orchestra.runs("e2e_matall_rollback"), 150, "the controller's rollback"
    )[0]
    assert orchestra.wait_run(rollback.run_id).status == SUCCESS, orchestra.errors(rollback.run_id)
    history = orchestra.history("e2e-matall")
    assert history.stable == stable_before and history.canary is None
    assert orchestra.deployment("e2e-matall").status.observed_generation == generation
    record = orchestra.record("e2e-matall")
    assert (record.release_id, record.phase.value) == (canary, "RolledBack")
    rejected = history.find(canary)
    assert rejected is not None and "success_rate" in rejected.rejected  # not retried by itself
    live = dg.AssetKey(["e2e_matall", "live"])
    latest = orchestra.instance.get_latest_materialization_event(live)
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["release_id"].value == stable_before


def test_the_bake_rolls_back_a_promoted_release_that_turns_bad(
    orchestra: Orchestra, started: dict[str, Started]
) -> None:
    stable_before, run_id = started["bake"].stable_before, started["bake"].run_id
    assert orchestra.wait_run(run_id).status == SUCCESS, orchestra.errors(run_id)
    canary = orchestra.released(run_id)
    promote = wait_for(lambda: orchestra.runs("e2e_bake_promote"), 150, "the promotion")[0]
    assert orchestra.wait_run(promote.run_id).status == SUCCESS, orchestra.errors(promote.run_id)
    assert orchestra.history("e2e-bake").stable == canary
    assert orchestra.record("e2e-bake").phase.value == "Baking"

    # the new stable starts failing requests after its promotion
    assert canary is not None
    urls = orchestra.pod_urls("e2e-bake", canary)
    assert urls, "no running stable pod of the promoted release"
    for url in urls:
        requests.post(f"{url}/_scenario", json={"scenario": "errors"}, timeout=10)
    rollback = wait_for(lambda: orchestra.runs("e2e_bake_rollback"), 150, "the bake's rollback")[0]
    assert "the bake caught" in str(rollback.run_config)
    assert orchestra.wait_run(rollback.run_id).status == SUCCESS, orchestra.errors(rollback.run_id)
    assert orchestra.history("e2e-bake").stable == stable_before
    assert orchestra.record("e2e-bake").phase.value == "RolledBack"
